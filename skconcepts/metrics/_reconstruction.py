"""Reconstruction quality: R² and relative error of a reconstruction."""

import numpy as np
from sklearn.utils.validation import check_array

__all__ = ["reconstruction_r2", "relative_error"]


def _pair(X, X_hat):
    X = check_array(X, dtype=[np.float64, np.float32])
    X_hat = check_array(X_hat, dtype=[np.float64, np.float32])
    if X.shape != X_hat.shape:
        raise ValueError(
            f"X and X_hat must have the same shape; got {X.shape} and {X_hat.shape}."
        )
    return X, X_hat


def reconstruction_r2(X, X_hat):
    """Reconstruction R^2: ``1 - ||X - X_hat||^2 / ||X - mean(X)||^2``.

    The mean is taken per feature (column), so a reconstruction that only
    predicts the mean activation scores 0.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Original activations.
    X_hat : array-like of shape (n_samples, n_features)
        Reconstruction.

    Returns
    -------
    r2 : float

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import reconstruction_r2
    >>> X = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> reconstruction_r2(X, X)
    1.0
    >>> reconstruction_r2(X, np.full_like(X, 0.0) + X.mean(axis=0))
    0.0
    """
    X, X_hat = _pair(X, X_hat)
    sse = float(np.sum((X.astype(np.float64) - X_hat) ** 2))
    sst = float(np.sum((X - X.mean(axis=0, dtype=np.float64)) ** 2))
    if sst == 0.0:
        return 1.0 if sse == 0.0 else 0.0
    return 1.0 - sse / sst


def relative_error(X, X_hat):
    """Relative Frobenius error ``||X - X_hat||_F / ||X||_F``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Original activations.
    X_hat : array-like of shape (n_samples, n_features)
        Reconstruction.

    Returns
    -------
    err : float

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import relative_error
    >>> relative_error(np.ones((2, 2)), np.zeros((2, 2)))
    1.0
    """
    X, X_hat = _pair(X, X_hat)
    num = np.linalg.norm(X.astype(np.float64) - X_hat)
    den = np.linalg.norm(X.astype(np.float64))
    return float(num / den) if den > 0 else float(num)
