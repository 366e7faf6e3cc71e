"""Shared machinery of the NMF family: parameters, regularisation, transform."""

import math

from .._backend import default_batch_size, torch_dtype
from .._compat import Integral, Interval, Real, StrOptions
from ..base import DEVICE_CONSTRAINT, ConceptExtractor
from ._solvers import Rows, gram_reg, is_memmap, nnls_codes


class _BaseNMF(ConceptExtractor):
    """Base of the NMF family (NMF, Semi-NMF and Convex-NMF concepts).

    Holds the parameters they share, scikit-learn's scaling of the
    regularisation, and the row-independent non-negative least-squares
    ``transform`` used by all three (:func:`~._solvers.nnls_codes`).
    """

    _parameter_constraints: dict = {
        "n_concepts": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "alpha_W": [Interval(Real, 0, None, closed="left")],
        "alpha_H": [Interval(Real, 0, None, closed="left"), StrOptions({"same"})],
        "l1_ratio": [Interval(Real, 0, 1, closed="both")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "device": DEVICE_CONSTRAINT,
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # ----------------------------------------------------------- helpers
    def _regularization(self, n_samples, n_features):
        """``(l1_U, l2_U, l1_W, l2_W)`` scaled as scikit-learn's ``NMF``.

        ``alpha_W`` weighs the codes (scikit-learn's ``W``) and is multiplied
        by ``n_features``; ``alpha_H`` weighs the concepts (scikit-learn's
        ``H``) and is multiplied by ``n_samples``; ``l1_ratio`` splits each
        between the L1 and the (halved, squared) L2 penalty.
        """
        alpha_U = float(self.alpha_W)
        alpha_W = alpha_U if self.alpha_H == "same" else float(self.alpha_H)
        r = float(self.l1_ratio)
        return (
            n_features * alpha_U * r,
            n_features * alpha_U * (1.0 - r),
            n_samples * alpha_W * r,
            n_samples * alpha_W * (1.0 - r),
        )

    def _rows(self, X, X_in, device):
        """Row access for ``fit``: streamed with ``batch_size`` or for a memmap."""
        bs = self.batch_size
        if bs is None and (is_memmap(X_in) or is_memmap(X)):
            # batches of about 16 MB, read into one reusable buffer
            bs = default_batch_size(
                X.shape[1], budget_bytes=16 * 2**20, itemsize=X.dtype.itemsize
            )
        return Rows(X, device, torch_dtype(X.dtype), bs)

    def _set_fit_result(self, rows, Ut, W, n_iter, X_dtype):
        from .._backend import to_numpy

        self.components_ = to_numpy(W, X_dtype)
        self.n_iter_ = int(n_iter)
        self.reconstruction_err_ = float(math.sqrt(rows.residual_sq(Ut, W)))

    # --------------------------------------------------------- transform
    def _device_state(self, device, dtype):
        import torch

        W = torch.as_tensor(self.components_, dtype=dtype, device=device)
        _, l2_U, _, _ = self._regularization(1, self.n_features_in_)
        G = gram_reg(W, l2_U)
        return {"components": W, "gram": G, "gram_pinv": torch.linalg.pinv(G)}

    def _encode(self, Xb, state):
        l1_U, _, _, _ = self._regularization(1, self.n_features_in_)
        return nnls_codes(
            Xb,
            state["components"],
            state["gram"],
            state["gram_pinv"],
            l1=l1_U,
            max_iter=self.max_iter,
            tol=self.tol,
        ).T
