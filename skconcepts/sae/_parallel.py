"""Data-parallel state of the SAE engine (``torch.distributed``).

:class:`_DataParallel` holds what the engine needs in every process of a
data-parallel fit: the rank's share of each global batch, the gradient
all-reduce, the sums and gathers of the terms computed on the global batch,
and the per-epoch reductions of ``history_``. :func:`data_parallel` is the
public context manager (re-exported by :mod:`skconcepts.distributed`); the
engine reads :func:`current` once when a fit starts, keeps the context on its
session (``session.dp``) and passes it explicitly to the sparsity rules and
loss terms that need the global batch (BatchTopK's selection, AuxK, the
Iso-Energy means). Nothing here imports the engine.
"""

import contextlib

import torch
import torch.distributed

__all__ = ["current", "data_parallel"]

_CURRENT = []


def _dist():
    return torch.distributed


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
        dist = _dist()
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(out, t.contiguous(), group=self.group)
        return torch.cat(out)

    def any(self, mask):
        """Element-wise OR of a boolean tensor over ranks."""
        dist = _dist()
        m = mask.to(torch.int32)
        dist.all_reduce(m, op=dist.ReduceOp.MAX, group=self.group)
        return m > 0

    def reduce_epoch(self, n_seen, sse, l0, sums, fired):
        """Sum the epoch statistics of ``history_`` over ranks."""
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
