"""Streamed PCA, truncated SVD and FastICA of data larger than memory.

Each function reads ``X`` (an array, a memmap or any row-sliceable array)
by row batches of ``batch_rows`` rows, accumulates its sufficient statistics
in float64 (the per-feature mean and the Gram matrix ``X^T X``: ``O(d^2)``
memory, never ``O(n d)``) and returns the *fitted scikit-learn estimator*
(:class:`~sklearn.decomposition.PCA`, :class:`~sklearn.decomposition.TruncatedSVD`,
:class:`~sklearn.decomposition.FastICA`) with the attributes scikit-learn
would have set, so ``transform`` / ``inverse_transform`` are scikit-learn's.
:class:`~skconcepts.erasure.TaCoEraser` uses them on on-disk data.

Every pass over ``X`` draws a progress bar (one step per batch) under the
package's policy (:mod:`skconcepts._progress`: ``verbose``,
``SKCONCEPTS_PROGRESS``; never in tests unless asked).
"""

import numpy as np
from sklearn.decomposition import PCA, FastICA, TruncatedSVD

from .._backend import gen_batches_idx
from .._progress import progress

__all__ = ["STREAMED", "streamed_ica", "streamed_pca", "streamed_svd"]


def _pass(n, batch_rows, desc, verbose):
    """The row slices of one pass over ``n`` rows, behind a progress bar."""
    slices = list(gen_batches_idx(n, batch_rows))
    return progress(slices, desc=desc, unit="batch", verbose=verbose)


def streamed_moments(X, batch_rows, *, verbose=0, desc="streamed moments"):
    """Per-feature mean and Gram matrix ``X^T X`` of ``X`` in one streamed pass.

    Row batches of ``batch_rows`` rows are read in turn and accumulated in
    float64: ``O(n_features^2)`` memory, never ``O(n_samples n_features)``.
    """
    n, d = X.shape
    total = np.zeros(d)
    gram = np.zeros((d, d))
    for sl in _pass(n, batch_rows, desc, verbose):
        xb = np.asarray(X[sl], dtype=np.float64)
        total += xb.sum(axis=0)
        gram += xb.T @ xb
    return total / n, gram


def top_eigh(M, k):
    """Top ``k`` eigenpairs of the symmetric ``M``, scikit-learn's sign convention.

    Eigenvalues are returned in decreasing order and clipped at 0; each
    eigenvector (a row) has its largest-magnitude entry positive, as
    ``svd_flip(..., u_based_decision=False)`` gives.
    """
    evals, evecs = np.linalg.eigh(M)
    order = np.argsort(evals)[::-1]
    evals = np.clip(evals[order], 0.0, None)
    V = evecs[:, order].T
    V *= np.sign(V[np.arange(len(V)), np.argmax(np.abs(V), axis=1)])[:, None]
    return evals, V[:k]


def streamed_pca(X, k, batch_rows, seed, *, verbose=0):
    """A fitted :class:`~sklearn.decomposition.PCA` computed by streaming ``X``.

    One pass over row batches accumulates the per-feature sum and the Gram
    matrix ``X^T X`` in float64 (``O(d^2)`` memory, never ``O(n d)``); the
    top ``k`` eigenvectors of the covariance are the principal axes. The
    signs follow scikit-learn's convention (largest-magnitude loading of
    each axis positive), so this is exactly PCA up to rounding (the
    ``svd_solver="full"`` solution); scikit-learn's randomized solver, which
    PCA picks for large ``X``, agrees to its own approximation. ``verbose``:
    the progress bar of the pass (see :mod:`skconcepts._progress`).
    """
    n, d = X.shape
    mean, gram = streamed_moments(X, batch_rows, verbose=verbose, desc="streamed PCA")
    cov = (gram - n * np.outer(mean, mean)) / max(1, n - 1)
    evals, V = top_eigh(cov, d)
    pca = PCA(n_components=k, random_state=seed)
    pca.n_features_in_ = d
    pca.n_samples_ = n
    pca.n_components_ = k
    pca.mean_ = mean.astype(X.dtype)
    pca.components_ = V[:k].astype(X.dtype)
    pca.explained_variance_ = evals[:k].astype(X.dtype)
    tot = evals.sum()
    ratio = evals / tot if tot > 0 else np.zeros_like(evals)
    pca.explained_variance_ratio_ = ratio[:k].astype(X.dtype)
    pca.singular_values_ = np.sqrt(evals[:k] * max(1, n - 1)).astype(X.dtype)
    rest = evals[k:]
    pca.noise_variance_ = float(rest.mean()) if rest.size else 0.0
    return pca


def streamed_svd(X, k, batch_rows, seed, *, verbose=0):
    """A fitted :class:`~sklearn.decomposition.TruncatedSVD` by streaming ``X``.

    The right singular vectors of ``X`` (no centring) are the top
    eigenvectors of the streamed Gram matrix ``X^T X``; the singular values
    are the square roots of its eigenvalues. Attributes follow
    :class:`~sklearn.decomposition.TruncatedSVD` (``explained_variance_`` is
    the population variance of each projection, as there).
    """
    n, d = X.shape
    mean, gram = streamed_moments(X, batch_rows, verbose=verbose, desc="streamed SVD")
    evals, V = top_eigh(gram, k)
    cov0 = gram / n - np.outer(mean, mean)  # population covariance
    svd = TruncatedSVD(n_components=k, algorithm="arpack", random_state=seed)
    svd.n_features_in_ = d
    svd.components_ = V.astype(X.dtype)
    exp_var = np.einsum("kd,de,ke->k", V, cov0, V)
    svd.explained_variance_ = exp_var.astype(X.dtype)
    full = np.trace(cov0)
    ratio = exp_var / full if full > 0 else np.zeros_like(exp_var)
    svd.explained_variance_ratio_ = ratio.astype(X.dtype)
    svd.singular_values_ = np.sqrt(evals[:k]).astype(X.dtype)
    return svd


def streamed_ica(X, k, batch_rows, seed, *, verbose=0):
    """A fitted :class:`~sklearn.decomposition.FastICA` (unit-variance) by streaming.

    The whitening is the streamed PCA (``O(d^2)`` memory); the whitened codes
    ``Z`` (``n x k``, the size of the concept codes) are built by row batches
    and FastICA runs on them without further whitening. The unmixing is then
    composed with the whitening and rescaled to unit-variance sources, as
    ``FastICA(whiten="unit-variance")`` stores it, so ``transform`` and
    ``inverse_transform`` behave as scikit-learn's.
    """
    n, d = X.shape
    pca = streamed_pca(X, k, batch_rows, seed, verbose=verbose)
    lam = np.asarray(pca.explained_variance_, dtype=np.float64)
    lam = np.maximum(lam, 1e-12 * max(float(lam.max(initial=0.0)), 1e-300))
    mean = np.asarray(pca.mean_, dtype=np.float64)
    K = np.asarray(pca.components_, dtype=np.float64) / np.sqrt(lam)[:, None]
    Z = np.concatenate(
        [
            (np.asarray(X[sl], dtype=np.float64) - mean) @ K.T
            for sl in _pass(n, batch_rows, "streamed ICA: whitening", verbose)
        ]
    )
    inner = FastICA(whiten=False, random_state=seed).fit(Z)
    Wu = inner.components_
    S_std = np.std(Z @ Wu.T, axis=0)
    Wu = Wu / np.where(S_std > 0, S_std, 1.0)[:, None]
    ica = FastICA(n_components=k, whiten="unit-variance", random_state=seed)
    ica.n_features_in_ = d
    ica.n_iter_ = inner.n_iter_
    unmixing = Wu @ K
    ica.components_ = unmixing.astype(X.dtype)
    ica.mixing_ = np.linalg.pinv(unmixing).astype(X.dtype)
    ica.mean_ = pca.mean_
    ica.whitening_ = K.astype(X.dtype)
    ica._unmixing = Wu.astype(X.dtype)
    return ica


STREAMED = {"pca": streamed_pca, "svd": streamed_svd, "ica": streamed_ica}
