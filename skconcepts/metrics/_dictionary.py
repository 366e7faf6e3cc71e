"""Sparse codes and dictionaries: sparsity, dead atoms, stability, recovery."""

import numpy as np
from sklearn.utils.validation import check_array

__all__ = [
    "atom_recovery",
    "dead_fraction",
    "dictionary_stability",
    "mean_l0",
]


def mean_l0(codes):
    """Mean number of non-zero codes per sample.

    Parameters
    ----------
    codes : array-like of shape (n_samples, n_concepts)
        Concept codes, e.g. the output of a sparse autoencoder's ``transform``.

    Returns
    -------
    l0 : float

    Examples
    --------
    >>> from skconcepts.metrics import mean_l0
    >>> mean_l0([[0.0, 1.0, 2.0], [0.0, 0.0, 3.0]])
    1.5
    """
    codes = check_array(codes, dtype=[np.float64, np.float32])
    return float(np.count_nonzero(codes) / codes.shape[0])


def dead_fraction(codes):
    """Share of concepts whose code is zero on every sample (dead atoms).

    Parameters
    ----------
    codes : array-like of shape (n_samples, n_concepts)
        Concept codes.

    Returns
    -------
    fraction : float
        In ``[0, 1]``.

    Examples
    --------
    >>> from skconcepts.metrics import dead_fraction
    >>> dead_fraction([[0.0, 1.0, 0.0], [0.0, 2.0, 3.0]])
    0.3333333333333333
    """
    codes = check_array(codes, dtype=[np.float64, np.float32])
    return float(1.0 - np.count_nonzero(np.any(codes != 0, axis=0)) / codes.shape[1])


def _unit(X):
    """Rows of ``X`` scaled to unit norm (zero rows left at zero)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def _unit_rows(D, name):
    D = check_array(D, dtype=[np.float64, np.float32], input_name=name)
    return _unit(D.astype(np.float64))


def _cosines(D1, D2):
    A, B = _unit_rows(D1, "D1"), _unit_rows(D2, "D2")
    if A.shape[1] != B.shape[1]:
        raise ValueError(
            f"D1 and D2 must have the same number of features (columns); got "
            f"{A.shape[1]} and {B.shape[1]}."
        )
    return A @ B.T


def dictionary_stability(D1, D2, *, return_matching=False):
    """Mean cosine of the atoms of two dictionaries matched one to one.

    Rows are normalised, the cosine matrix ``D1 D2^T`` is computed and the
    atoms are matched one to one by the Hungarian algorithm
    (:func:`scipy.optimize.linear_sum_assignment`, maximising the total
    cosine); the score is the mean matched cosine. 1 means the two
    dictionaries are identical up to a permutation of their atoms. With
    dictionaries of different sizes the smaller one is matched completely.

    Parameters
    ----------
    D1 : array-like of shape (n_atoms_1, n_features)
        First dictionary (e.g. ``components_`` of one fit).
    D2 : array-like of shape (n_atoms_2, n_features)
        Second dictionary.
    return_matching : bool, default=False
        Also return the matched index pairs and their cosines.

    Returns
    -------
    stability : float
        Mean matched cosine, in ``[-1, 1]``.
    rows, cols, cosines : ndarrays
        Only when ``return_matching``: atom ``rows[i]`` of ``D1`` is matched
        with atom ``cols[i]`` of ``D2`` at cosine ``cosines[i]``.

    References
    ----------
    T. Fel et al., "Archetypal SAE: Adaptive and Stable Dictionary Learning
    for Concept Extraction in Large Vision Models", ICML 2025.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import dictionary_stability
    >>> D = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> dictionary_stability(D, D[::-1])
    1.0
    >>> round(dictionary_stability(D, [[1.0, 1.0], [0.0, 1.0]]), 4)
    0.8536
    """
    from scipy.optimize import linear_sum_assignment

    cos = _cosines(D1, D2)
    rows, cols = linear_sum_assignment(cos, maximize=True)
    matched = cos[rows, cols]
    score = float(matched.mean())
    return (score, rows, cols, matched) if return_matching else score


def atom_recovery(true_atoms, D, *, threshold=None):
    """How well a dictionary recovers known atoms: mean best cosine per true atom.

    For every row of ``true_atoms`` the largest cosine with any row of ``D``
    is taken (signed: the codes of an SAE are non-negative, so an atom and
    its opposite are different concepts), and the mean over the true atoms
    is returned.

    Parameters
    ----------
    true_atoms : array-like of shape (n_true, n_features)
        Ground-truth atoms (e.g. from
        :func:`skconcepts.datasets.make_sparse_atoms`).
    D : array-like of shape (n_atoms, n_features)
        Learned dictionary (e.g. ``components_``).
    threshold : float, default=None
        When given, return the share of true atoms whose best cosine is at
        least ``threshold`` instead of the mean best cosine.

    Returns
    -------
    score : float

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import atom_recovery
    >>> true = np.eye(3)
    >>> round(atom_recovery(true, [[2.0, 0.0, 0.0], [0.0, 1.0, 1.0]]), 4)
    0.8047
    >>> atom_recovery(true, [[2.0, 0.0, 0.0], [0.0, 1.0, 1.0]], threshold=0.9)
    0.3333333333333333
    """
    best = _cosines(true_atoms, D).max(axis=1)
    if threshold is not None:
        return float(np.mean(best >= threshold))
    return float(best.mean())
