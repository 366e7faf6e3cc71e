"""Data-parallel training of sparse autoencoders with ``torch.distributed``.

Launch one process per device with ``torchrun`` (or any launcher that
initialises ``torch.distributed``) and call :func:`fit_distributed` in every
process with the same estimator and the same data::

    # train.py -- torchrun --nproc-per-node=4 train.py
    import numpy as np, torch.distributed as dist
    from skconcepts import TopKSAE
    from skconcepts.distributed import fit_distributed

    dist.init_process_group("nccl")          # "gloo" on CPUs
    X = np.load("activations.npy", mmap_mode="r")
    sae = fit_distributed(TopKSAE(4096, 32, random_state=0), X)
    if dist.get_rank() == 0:
        joblib.dump(sae, "sae.joblib")

The SAE engine (:mod:`skconcepts.sae._engine`) runs its usual loop in every
process. Inside :func:`data_parallel` it asks this module for three things:

* **rank-sharded batches**: every rank draws the same global batch (the same
  seeded generator, hence ``random_state`` must be an int) and keeps its
  contiguous share, ``batch[rank * B // W : (rank + 1) * B // W]``;
* **gradient all-reduce**: each rank's loss (a mean over its share) is
  weighted by ``B_rank / B`` and the gradients are summed over ranks, which is
  exactly the gradient of the mean loss over the global batch, whatever the
  share sizes (a short last batch included);
* **synchronised statistics**: the atoms that fired in a step (dead-atom
  counters of AuxK) and the per-epoch sums of ``history_``.

* **global batch terms**: what is not a mean over rows is computed on the
  global batch: BatchTopK's batch-wide selection (the ``top_k * B``-th
  largest pre-activation of the whole batch, from an all-gather of each
  share's candidates), the AuxK ratio and the Iso-Energy per-modality means
  (sums over ranks that are differentiable through each rank's own part).
  A rank whose share of a batch is empty still takes part in the step.

So ``W`` processes with batches of ``B / W`` rows train the same model as one
process with batches of ``B`` rows, up to floating-point rounding, for every
rule and loss of the engine (TopK, BatchTopK, ReLU, JumpReLU, AuxK,
archetypal dictionaries, ``AlignedSAE(alignment="energy")``). The paired
cosine alignment (``alignment="cosine"``) needs both rows of a pair on one
rank and is refused.
"""

import argparse
import contextlib
import json
import numbers
import os

__all__ = ["data_parallel", "fit_distributed"]

_CURRENT = []


def _dist():
    import torch.distributed as dist

    return dist


class _DataParallel:
    """The hooks the SAE engine calls during distributed training."""

    def __init__(self, group=None):
        dist = _dist()
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "Distributed training needs torch.distributed to be initialised "
                "(torch.distributed.init_process_group, e.g. under torchrun)."
            )
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.batch_rows = 0

    def shard(self, idx):
        """This rank's contiguous share of a global batch of row indices."""
        n = int(idx.numel())
        self.batch_rows = n
        lo = n * self.rank // self.world_size
        hi = n * (self.rank + 1) // self.world_size
        return idx[lo:hi]

    def weight(self, n_local):
        """Loss weight of this rank's share: ``n_local / n_global``."""
        return n_local / max(1, self.batch_rows)

    def all_reduce_grads(self, module):
        """Sum the (weighted) gradients over ranks, in one flat buffer."""
        import torch

        dist = _dist()
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            return
        ref = params[0]
        has = torch.tensor(
            [p.grad is not None for p in params], dtype=ref.dtype, device=ref.device
        )
        flat = torch.cat(
            [
                (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                for p in params
            ]
            + [has]
        )
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group)
        has = flat[-len(params) :] > 0
        offset = 0
        for p, present in zip(params, has.tolist(), strict=True):
            n = p.numel()
            if present:
                p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def global_sum(self, t):
        """``t`` summed over ranks, differentiable through this rank's ``t`` only.

        The value is the sum over ranks; the gradient flows into this rank's
        own contribution (the others' enter as constants). A loss term built
        from such sums has the global batch's value on every rank, and the
        all-reduce of the gradients then adds the ranks' contributions: the
        gradient of the global term. Used for the terms that are not a mean
        over rows (the AuxK ratio, the Iso-Energy per-modality means).
        """
        dist = _dist()
        total = t.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=self.group)
        return t + (total - t.detach())

    def all_gather(self, t):
        """Concatenation over ranks of a tensor of the same shape on every rank."""
        import torch

        dist = _dist()
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(out, t.contiguous(), group=self.group)
        return torch.cat(out)

    def any(self, mask):
        """Element-wise OR of a boolean tensor over ranks."""
        import torch

        dist = _dist()
        m = mask.to(torch.int32)
        dist.all_reduce(m, op=dist.ReduceOp.MAX, group=self.group)
        return m > 0

    def reduce_epoch(self, n_seen, sse, l0, sums, fired):
        """Sum the epoch statistics of ``history_`` over ranks."""
        import torch

        dist = _dist()
        names = sorted(sums)
        vals = [float(n_seen), sse, l0] + [sums[k] for k in names]
        t = torch.stack(
            [torch.as_tensor(v, dtype=torch.float64, device=sse.device) for v in vals]
        )
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)
        fired = self.any(fired)
        return int(t[0]), t[1], t[2], dict(zip(names, t[3:], strict=True)), fired


def current():
    """The active data-parallel context of this process, or None."""
    return _CURRENT[-1] if _CURRENT else None


@contextlib.contextmanager
def data_parallel(group=None):
    """Train the SAEs data-parallel over the ranks of ``group`` inside the block.

    Every ``fit`` / ``partial_fit`` of a skconcepts sparse autoencoder run in
    the block (in every process of the group, with the same data and
    parameters) shards its batches over the ranks and all-reduces its
    gradients. See the module documentation.

    Parameters
    ----------
    group : torch.distributed.ProcessGroup or None, default=None
        The process group (None: the default group).

    Yields
    ------
    context : object
        With ``rank`` and ``world_size``.

    Raises
    ------
    RuntimeError
        If ``torch.distributed`` is not initialised.

    Examples
    --------
    See :func:`fit_distributed`; ``fit_distributed(sae, X, partial=True)`` is
    ``with data_parallel(): sae.partial_fit(X)``.
    """
    ctx = _DataParallel(group)
    _CURRENT.append(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.pop()


def fit_distributed(estimator, X, y=None, *, partial=False, group=None):
    """Fit a sparse autoencoder data-parallel over the ranks of ``torch.distributed``.

    Call it in every process (e.g. under ``torchrun``) with the same
    estimator parameters and the same ``X`` (a memmap on shared storage: each
    rank reads only its share of every batch). The fitted estimator is the
    same on every rank and equals, up to floating-point rounding, the
    single-process fit with the same ``batch_size`` (see the module
    documentation for the losses where this holds exactly).

    On CUDA, each process uses ``cuda:LOCAL_RANK`` when the estimator's
    ``device`` is ``"auto"`` or ``"cuda"`` (``torch.cuda.set_device`` is
    called with the ``LOCAL_RANK`` environment variable set by ``torchrun``).

    Parameters
    ----------
    estimator : skconcepts sparse autoencoder
        ``TopKSAE``, ``ArchetypalSAE`` or any SAE of the shared engine, with
        an int ``random_state`` (every rank must draw the same batches).
    X : array-like of shape (n_samples, n_features)
        Training data, the same on every rank.
    y : array-like or None, default=None
        Passed to ``fit`` (e.g. the modality of ``AlignedSAE``).
    partial : bool, default=False
        Call ``partial_fit`` instead of ``fit``.
    group : torch.distributed.ProcessGroup or None, default=None
        The process group (None: the default group).

    Returns
    -------
    estimator : estimator
        The fitted estimator (identical on every rank).

    Raises
    ------
    RuntimeError
        If ``torch.distributed`` is not initialised.
    ValueError
        If ``random_state`` is not an int, or the estimator does not use the
        SAE training engine.

    See Also
    --------
    data_parallel : The context manager, for custom loops of ``partial_fit``.

    Examples
    --------
    One process here (``torchrun`` starts several and sets the rendezvous):

    >>> import tempfile, numpy as np, torch.distributed as dist
    >>> from skconcepts import TopKSAE
    >>> from skconcepts.distributed import fit_distributed
    >>> store = tempfile.NamedTemporaryFile(delete=False).name
    >>> dist.init_process_group("gloo", init_method=f"file://{store}",
    ...                         rank=0, world_size=1)
    >>> X = np.random.RandomState(0).rand(200, 8)
    >>> sae = TopKSAE(16, 4, max_epochs=2, batch_size=50, device="cpu",
    ...               random_state=0)
    >>> ddp = fit_distributed(sae, X)
    >>> dist.destroy_process_group()
    >>> ref = TopKSAE(16, 4, max_epochs=2, batch_size=50, device="cpu",
    ...               random_state=0).fit(X)
    >>> bool(np.allclose(ddp.components_, ref.components_))
    True
    """
    from .sae._engine import _BaseSAE

    if not isinstance(estimator, _BaseSAE):
        raise ValueError(
            f"fit_distributed trains the SAEs of skconcepts; got "
            f"{type(estimator).__name__}. Use joblib / Dask (see the scale guide) "
            "to parallelise other estimators."
        )
    rs = estimator.get_params().get("random_state")
    if not isinstance(rs, numbers.Integral) or isinstance(rs, bool):
        raise ValueError(
            "fit_distributed needs an int random_state (got "
            f"{rs!r}): every rank must draw the same batches."
        )
    import torch

    dev = str(estimator.get_params().get("device", "auto"))
    if dev in ("auto", "cuda") and torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    with data_parallel(group):
        if partial:
            return estimator.partial_fit(X, y)
        return estimator.fit(X, y)


def main(argv=None):
    """``torchrun ... -m skconcepts.distributed``: fit an SAE on a .npy file.

    Every rank memory-maps ``data`` (and loads ``--target``, the ``y`` of
    ``fit``, e.g. the modality of ``AlignedSAE``), fits the estimator with
    :func:`fit_distributed`, and rank 0 writes it with ``joblib.dump``.

    Parameters
    ----------
    argv : list of str or None, default=None
        The command-line arguments (None: ``sys.argv[1:]``): ``data output
        [--estimator NAME] [--params JSON] [--target PATH] [--backend NAME]``.
    """
    import joblib
    import numpy as np
    import torch

    import skconcepts

    parser = argparse.ArgumentParser(
        prog="python -m skconcepts.distributed",
        description="Data-parallel SAE training (run under torchrun).",
    )
    parser.add_argument("data", help=".npy file of activations (memory-mapped)")
    parser.add_argument("output", help="where rank 0 writes the fitted model")
    parser.add_argument("--estimator", default="TopKSAE")
    parser.add_argument(
        "--params", default="{}", help="JSON parameters, e.g. '{\"n_concepts\": 4096}'"
    )
    parser.add_argument(
        "--target",
        default=None,
        help=".npy file of targets passed to fit as y (e.g. AlignedSAE's modality)",
    )
    parser.add_argument(
        "--backend", default=None, help="nccl (default with CUDA) or gloo"
    )
    args = parser.parse_args(argv)
    dist = _dist()
    backend = args.backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend)
    try:
        params = {"random_state": 0, **json.loads(args.params)}
        est = getattr(skconcepts, args.estimator)(**params)
        y = None if args.target is None else np.load(args.target)
        fit_distributed(est, np.load(args.data, mmap_mode="r"), y)
        if dist.get_rank() == 0:
            joblib.dump(est, args.output)
            print(f"wrote {args.output}: R2 {est.reconstruction_r2_:.4f}")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover
    main()
