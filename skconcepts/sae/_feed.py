"""The data feed of the SAE engine: device chunks, epoch batches, init sample.

:class:`_Feed` holds the policy of one fit (built by
``_BaseSAE._feed()`` from the engine's knobs, read at call time):

- **chunks**: an in-memory array that fits the device budget (or that the
  CPU can use in place) is one chunk, moved once; a larger one is cut into
  contiguous chunks of whole batches of at most the budget; an on-disk array
  (a NumPy memmap, or what :func:`skconcepts._io.as_memmap` made of a zarr /
  HDF5 / dask array) with more rows than one streaming chunk is *streamed*:
  chunks of ``max(batch_size, min(budget // row_bytes, stream_batches *
  batch_size))`` rows, so the anonymous memory of the fit is bounded by a
  small multiple of the batch;
- **epoch batches** (:meth:`_Feed.iter_epoch`): the chunk order and, inside
  each chunk, the estimator's batch sampler (``_batch_indices``) draw from
  the session's seeded CPU generator; batches are gathered from the tensors
  already on the device (no ``DataLoader``); under data parallelism each rank
  keeps its share of every batch (``session.dp.shard``);
- **initialisation sample** (:meth:`_Feed.init_sample`) and its total
  variance (:func:`data_var`, centred by row blocks that fit
  ``working_memory``).
"""

import numpy as np
import torch

from .._backend import to_tensor, working_memory_bytes
from .._io import is_on_disk


def data_var(X_init):
    """Total variance ``mean_i ||x_i - mean||^2`` of a device sample.

    Centred by row blocks that fit scikit-learn's ``working_memory`` (the
    block and its square) into one vector of row sums: no centred copy of
    the sample, and the per-row sums, hence the result, are those of the
    full-size computation.
    """
    n = X_init.shape[0]
    mean = X_init.mean(dim=0)
    row_bytes = 2 * max(1, X_init.shape[1] * X_init.element_size())
    step = max(1, working_memory_bytes() // row_bytes)
    row_sq = torch.empty(n, dtype=X_init.dtype, device=X_init.device)
    for start in range(0, n, step):
        cb = X_init[start : start + step] - mean
        row_sq[start : start + step] = (cb * cb).sum(1)
    return float(row_sq.mean())


class _Feed:
    """How one fit reads its data (see the module documentation).

    Parameters
    ----------
    batch_size : int
        The training minibatch.
    budget : int
        Bytes of training data kept on the device at once.
    stream_batches : int
        Batches per device chunk of a streamed on-disk array.
    init_samples : int
        Rows of the initialisation sample (at most).
    """

    def __init__(self, batch_size, budget, stream_batches, init_samples):
        self.batch_size = int(batch_size)
        self.budget = int(budget)
        self.stream_batches = int(stream_batches)
        self.init_samples = int(init_samples)

    def streams(self, X):
        """Whether ``X`` is an on-disk array larger than one streaming chunk.

        Such an array is fitted with bounded memory: device chunks of
        ``stream_batches`` batches, an initialisation sample of at most one
        chunk, and streamed statistics. A memmap of at most one chunk is
        fitted exactly as the same array in memory.
        """
        if not is_on_disk(X):
            return False
        return X.shape[0] > self.stream_chunk_rows(X)

    def stream_chunk_rows(self, X):
        bs = self.batch_size
        row_bytes = max(1, X.shape[1] * X.dtype.itemsize)
        rows = min(self.budget // row_bytes, self.stream_batches * bs)
        return max(bs, rows // bs * bs)

    def chunk_rows(self, X, device):
        """Rows per device chunk of ``X`` (all of them when it fits)."""
        n = X.shape[0]
        in_place = (
            device.type == "cpu"
            and not isinstance(X, np.memmap)
            and X.flags.writeable
            and X.flags.c_contiguous
        )
        if self.streams(X):
            return self.stream_chunk_rows(X)
        if in_place or X.nbytes <= self.budget:
            return n
        row_bytes = max(1, X.nbytes // max(1, n))
        rows = max(1, self.budget // row_bytes)
        return max(self.batch_size, rows // self.batch_size * self.batch_size)

    def init_sample(self, X, generator, device, dtype):
        """The device sample that initialises a fit (b_pre, scale, k-means)."""
        n = X.shape[0]
        if self.streams(X):
            # at most one chunk of rows, drawn with O(m) memory (no
            # permutation of all n rows; duplicates are dropped) and copied
            # once from the file
            m = min(self.init_samples, self.stream_chunk_rows(X))
            draw = torch.randint(n, (m,), generator=generator).numpy()
            return to_tensor(np.asarray(X[np.unique(draw)]), device, dtype)
        if n <= self.init_samples:
            rows = slice(None)
        else:
            perm = torch.randperm(n, generator=generator)[: self.init_samples]
            rows = np.sort(perm.numpy())
        return to_tensor(X[rows], device, dtype)

    def iter_epoch(self, X, side, session, chunk_rows, train_mask, cache, sampler):
        """Yield ``(x_batch, side_batch)`` for one epoch.

        ``sampler(n_rows, side, generator)`` is the estimator's batch sampler
        (``_batch_indices``); ``cache`` keeps the one chunk of a fit whose
        data is a single chunk between epochs.
        """
        n = X.shape[0]
        starts = list(range(0, n, chunk_rows))
        order = torch.randperm(len(starts), generator=session.generator).tolist()
        dev, dt = session.device, session.dtype
        for c in order:
            sl = slice(starts[c], min(starts[c] + chunk_rows, n))
            if cache.get("slice") == sl:
                Xd, sd, local = cache["X"], cache["side"], cache["local"]
            else:
                Xd = to_tensor(X[sl], dev, dt)
                sd = {
                    k: torch.as_tensor(np.asarray(v[sl]), device=dev)
                    for k, v in side.items()
                }
                local = None
                if train_mask is not None:
                    local = torch.as_tensor(np.flatnonzero(train_mask[sl]), device=dev)
                    if local.numel() == 0:
                        continue
                if len(starts) == 1:
                    cache.update(slice=sl, X=Xd, side=sd, local=local)
            if local is not None:
                sd_l = {k: v[local] for k, v in sd.items()}
                n_rows = local.numel()
            else:
                sd_l, n_rows = sd, Xd.shape[0]
            for idx in sampler(n_rows, sd_l, session.generator):
                idx = idx.to(dev)
                if session.dp is not None:  # this rank's share of the batch
                    idx = session.dp.shard(idx)
                rows = idx if local is None else local[idx]
                yield Xd[rows], {k: v[idx] for k, v in sd_l.items()}
            # release this chunk before the next one is read (one chunk held)
            Xd = sd = sd_l = local = rows = None
