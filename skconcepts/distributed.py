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
process. This module is the public entry point (:func:`fit_distributed`,
:func:`data_parallel` and ``python -m skconcepts.distributed``); the
data-parallel state lives in :mod:`skconcepts.sae._parallel`, which the engine
keeps on its training session and passes to the sparsity rules and loss terms.
Inside :func:`data_parallel` the engine does three things:

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
import json
import numbers
import os

from .sae._engine import _BaseSAE

# _DataParallel and current are re-exported for custom loops and tests
from .sae._parallel import _DataParallel, current, data_parallel  # noqa: F401

__all__ = ["data_parallel", "fit_distributed"]


def _dist():
    import torch.distributed as dist

    return dist


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
