"""Streaming statistics shared by the estimators.

:class:`R2Accumulator` is the one reconstruction-R^2 of the package:
``1 - SSE / SST`` over row batches, in float64 on the device of the batches,
with ``SSE = ||X - X_hat||^2`` and ``SST = ||X - mean(X)||^2``. The mean is
either known beforehand (``mean=``: the exact centred sum, one pass over the
rows for the mean and one for the sums) or unknown (per-feature sums and sums
of squares, ``SST = sum(s2 - s1^2 / n)``: one pass, no more than one batch
held). ``ConceptExtractor.score``, the SAE engine's fit metrics and its
validation R^2 all use it; :func:`skconcepts.metrics.reconstruction_r2` may
too.
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
            self.s1 = self.s2 = None
            self._sst = None
        else:
            self.mean = torch.as_tensor(mean, dtype=torch.float64, device=device)
            self._sst = torch.zeros((), dtype=torch.float64, device=device)

    def update(self, x, x_hat):
        """Add a batch: the rows ``x`` and their reconstruction ``x_hat``.

        Call it under ``torch.no_grad()`` (the batched passes do).
        """
        torch = _torch()
        x64 = x.double()
        self.sse += ((x64 - x_hat.double()) ** 2).sum()
        if self.mean is not None:
            self._sst += ((x64 - self.mean) ** 2).sum()
        else:
            if self.s1 is None:
                d = x.shape[1]
                self.s1 = torch.zeros(d, dtype=torch.float64, device=self.device)
                self.s2 = torch.zeros(d, dtype=torch.float64, device=self.device)
            self.s1 += x64.sum(0)
            self.s2 += (x64 * x64).sum(0)
        self.n_rows += int(x.shape[0])

    @property
    def sst(self):
        """``||X - mean(X)||^2`` of the rows seen (a float)."""
        if self.mean is not None:
            return float(self._sst)
        if self.s1 is None:
            return 0.0
        m = max(1, self.n_rows)
        return float((self.s2 - self.s1 * self.s1 / m).clamp_min(0).sum())

    def score(self):
        """The R^2 of the rows seen (1.0 / 0.0 for constant rows)."""
        return r2_from_sums(self.sse, self.sst)
