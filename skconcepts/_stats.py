"""Streaming statistics shared by the estimators.

:class:`R2Accumulator` is the one reconstruction-R^2 of the package:
``1 - SSE / SST`` over row batches, in float64 on the device of the batches,
with ``SSE = ||X - X_hat||^2`` and ``SST = ||X - mean(X)||^2``. The mean is
either known beforehand (``mean=``: the exact centred sum, one pass over the
rows for the mean and one for the sums) or unknown (per-feature running means
and centred sums of squares merged batch by batch with Chan et al.'s update:
one pass, no more than one batch held, no cancellation of large raw sums).
``ConceptExtractor.score``, the SAE engine's fit metrics and its validation
R^2, and the command line's ``evaluate`` all use it.
"""

from ._backend import _torch

__all__ = ["R2Accumulator", "r2_from_sums"]


def r2_from_sums(sse, sst):
    """``1 - sse / sst``; 1.0 (perfect) or 0.0 when ``sst`` is 0."""
    sse, sst = float(sse), float(sst)
    if sst == 0.0:
        return 1.0 if sse == 0.0 else 0.0
    return 1.0 - sse / sst


class R2Accumulator:
    """Reconstruction R^2 accumulated over row batches (float64).

    Parameters
    ----------
    device : torch.device
        Where the sums live (the device of the batches).
    mean : array-like of shape (n_features,) or None, default=None
        The per-feature mean of all rows when known (exact centred sums);
        None: streamed per-feature sums and sums of squares.

    Examples
    --------
    >>> import torch
    >>> acc = R2Accumulator("cpu")
    >>> x = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    >>> acc.update(x, x + 0.5)
    >>> acc.score()
    0.75
    """

    def __init__(self, device, mean=None):
        torch = _torch()
        self.device = device
        self.sse = torch.zeros((), dtype=torch.float64, device=device)
        self.n_rows = 0
        if mean is None:
            self.mean = None
            self._run_mean = self._run_m2 = None  # Chan et al.'s running sums
            self._sst = None
        else:
            self.mean = torch.as_tensor(mean, dtype=torch.float64, device=device)
            self._sst = torch.zeros((), dtype=torch.float64, device=device)

    def update(self, x, x_hat):
        """Add a batch: the rows ``x`` and their reconstruction ``x_hat``.

        Call it under ``torch.no_grad()`` (the batched passes do).
        """
        x64 = x.double()
        self.sse += ((x64 - x_hat.double()) ** 2).sum()
        nb = int(x.shape[0])
        if self.mean is not None:
            self._sst += ((x64 - self.mean) ** 2).sum()
        elif nb:
            mb = x64.mean(0)
            m2b = ((x64 - mb) ** 2).sum(0)
            if self._run_mean is None:
                self._run_mean, self._run_m2 = mb, m2b
            else:
                n, total = self.n_rows, self.n_rows + nb
                delta = mb - self._run_mean
                self._run_m2 = self._run_m2 + m2b + delta * delta * (n * nb / total)
                self._run_mean = self._run_mean + delta * (nb / total)
        self.n_rows += nb

    @property
    def sst(self):
        """``||X - mean(X)||^2`` of the rows seen (a float)."""
        if self.mean is not None:
            return float(self._sst)
        if self._run_m2 is None:
            return 0.0
        return float(self._run_m2.sum())

    def score(self):
        """The R^2 of the rows seen (1.0 / 0.0 for constant rows)."""
        return r2_from_sums(self.sse, self.sst)
