"""Sobol' sensitivity indices: design, estimators and the concept version.

This is the one Sobol' engine of skconcepts: :class:`SobolConceptImportance`
and the TaCo eraser both use it.

Design (Saltelli 2010): two independent ``N x k`` blocks ``A`` and ``B`` of a
scrambled, seeded Sobol' sequence, and ``C_i`` = ``A`` with column ``i`` taken
from ``B``. With ``V = Var([f(A); f(B)])``:

- first order (Saltelli 2010): ``S_i = mean(f(B) (f(C_i) - f(A))) / V``;
- total (Jansen 1999): ``ST_i = mean((f(A) - f(C_i))^2) / (2 V)``.

The outputs of each sample are first centred on their mean over the whole
design (as in SALib); this leaves the indices unchanged in expectation and
removes the variance a constant offset adds to the first-order estimator.

Confidence intervals come from a bootstrap over the ``N`` design rows (the
same resampled rows for ``A``, ``B`` and every ``C_i``), as percentile
intervals.
"""

import numbers

import numpy as np
from scipy.stats import qmc
from sklearn.utils import check_random_state

from .._backend import seed_from
from ._engine import evaluate_masks

__all__ = ["concept_sobol_indices", "sobol_design", "sobol_indices"]


def _check_sizes(n_dims, n_designs):
    if not isinstance(n_dims, numbers.Integral) or n_dims < 1:
        raise ValueError(f"n_dims must be a positive integer; got {n_dims!r}.")
    if (
        not isinstance(n_designs, numbers.Integral)
        or n_designs < 2
        or (int(n_designs) & (int(n_designs) - 1)) != 0
    ):
        raise ValueError(
            "n_designs must be a power of two >= 2 (the balance properties of "
            f"the Sobol' sequence need it); got {n_designs!r}."
        )


def sobol_design(n_dims, n_designs, random_state=None):
    """Saltelli's design of masks from a scrambled, seeded Sobol' sequence.

    Parameters
    ----------
    n_dims : int
        Number of inputs ``k`` (concepts).
    n_designs : int
        Rows ``N`` per block; a power of two.
    random_state : int, RandomState instance or None, default=None
        Seeds the scrambling of the sequence.

    Returns
    -------
    design : ndarray of shape (n_designs * (n_dims + 2), n_dims)
        The blocks ``[A; B; C_1; ...; C_k]`` stacked; values in ``[0, 1)``.
        ``A`` and ``B`` are the two halves of the columns of one
        ``2k``-dimensional scrambled Sobol' sequence; ``C_i`` is ``A`` with
        column ``i`` taken from ``B``.

    Examples
    --------
    >>> from skconcepts.importance import sobol_design
    >>> sobol_design(3, 8, random_state=0).shape
    (40, 3)
    """
    _check_sizes(n_dims, n_designs)
    k, N = int(n_dims), int(n_designs)
    sampler = qmc.Sobol(d=2 * k, scramble=True, rng=seed_from(random_state))
    base = sampler.random_base2(m=N.bit_length() - 1)
    A, B = base[:, :k], base[:, k:]
    C = np.repeat(A[None], k, axis=0)  # (k, N, k)
    idx = np.arange(k)
    C[idx, :, idx] = B.T
    return np.concatenate([A, B, C.reshape(k * N, k)], axis=0)


def _split(outputs, n_dims, n_designs):
    """``outputs`` (n, N (k + 2)) -> f(A) (n, N), f(B) (n, N), f(C) (n, k, N).

    Each sample's outputs are centred on their mean (as SALib does): the
    indices are unchanged in theory, and the first-order estimator loses the
    variance that a large constant offset (a logit of 10 varying by 0.1)
    would add to ``mean(f(B) (f(C_i) - f(A)))``.
    """
    Y = outputs - outputs.mean(axis=1, keepdims=True)
    Y = Y.reshape(outputs.shape[0], n_dims + 2, n_designs)
    return Y[:, 0], Y[:, 1], Y[:, 2:]


def _constant(var, both):
    """True where the variance is at the rounding level of the outputs."""
    scale = np.max(np.abs(both), axis=-1)
    tiny = (64 * np.finfo(np.float64).eps * scale) ** 2
    return var <= np.maximum(tiny, np.finfo(np.float64).tiny)


def _estimates(fA, fB, fC):
    """First-order and total indices, shape (n, k), for blocks on the last axis."""
    both = np.concatenate([fA, fB], axis=-1)
    var = np.var(both, axis=-1)
    bad = _constant(var, both)
    safe = np.where(bad, 1.0, var)[:, None]
    first = np.mean(fB[:, None, :] * (fC - fA[:, None, :]), axis=-1) / safe
    total = 0.5 * np.mean((fA[:, None, :] - fC) ** 2, axis=-1) / safe
    first[bad] = 0.0
    total[bad] = 0.0
    return first, total


def _bootstrap_rows(n_designs, n_bootstrap, rng):
    """Resampled design rows, shape (n_bootstrap, n_designs)."""
    return rng.randint(0, n_designs, size=(n_bootstrap, n_designs))


def _bootstrap_estimates(fA, fB, fC, rows):
    """:func:`_estimates` on every resample of the design rows at once.

    A resample is a weighting of the ``N`` rows by their counts, so every
    mean becomes a product with the ``(N, n_bootstrap)`` weight matrix.

    Returns
    -------
    first, total : ndarrays of shape (n_bootstrap, n, k)
    """
    n_boot, N = rows.shape
    counts = np.zeros((n_boot, N))
    np.add.at(counts, (np.repeat(np.arange(n_boot), N), rows.ravel()), 1.0 / N)
    weights = counts.T  # (N, n_boot)

    def wmean(g):
        # weighted means over the last axis. einsum, not BLAS: these products
        # are thin, and a multithreaded BLAS on a busy machine was measured
        # 40x slower on them
        return np.einsum("...j,jb->...b", g, weights)

    mean = 0.5 * (wmean(fA) + wmean(fB))  # (n, B)
    mean_sq = 0.5 * (wmean(fA**2) + wmean(fB**2))
    var = np.maximum(mean_sq - mean**2, 0.0)
    bad = _constant(var.T, np.concatenate([fA, fB], axis=-1)[None]).T
    safe = np.where(bad, 1.0, var)[:, None, :]
    first = wmean(fB[:, None, :] * (fC - fA[:, None, :])) / safe
    total = wmean(0.5 * (fA[:, None, :] - fC) ** 2) / safe
    first = np.where(bad[:, None, :], 0.0, first)
    total = np.where(bad[:, None, :], 0.0, total)
    return first.transpose(2, 0, 1), total.transpose(2, 0, 1)


def _percentile_interval(replicates, confidence_level):
    """Percentile interval over axis 0 -> shape replicates.shape[1:] + (2,)."""
    alpha = (1.0 - confidence_level) / 2.0
    lo, hi = np.quantile(replicates, [alpha, 1.0 - alpha], axis=0)
    return np.stack([lo, hi], axis=-1)


def _check_level(confidence_level):
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(
            f"confidence_level must be in (0, 1); got {confidence_level!r}."
        )


def sobol_indices(
    outputs,
    n_dims,
    n_designs,
    *,
    n_bootstrap=0,
    confidence_level=0.95,
    random_state=None,
):
    """First-order and total Sobol' indices from outputs on :func:`sobol_design`.

    Parameters
    ----------
    outputs : array-like of shape (n_samples, n_evals) or (n_evals,)
        Model outputs on the ``n_evals = n_designs * (n_dims + 2)`` design
        rows, in the design's order, one row per explained sample (1-D for a
        single sample).
    n_dims : int
        Number of inputs ``k``.
    n_designs : int
        Rows ``N`` per block (a power of two).
    n_bootstrap : int, default=0
        Bootstrap resamples of the design rows for confidence intervals
        (0: no intervals).
    confidence_level : float, default=0.95
        Coverage of the percentile intervals.
    random_state : int, RandomState instance or None, default=None
        Seeds the bootstrap.

    Returns
    -------
    indices : dict
        ``"first_order"`` and ``"total"``: ndarrays of shape
        (n_samples, n_dims), float64 (shape (n_dims,) for 1-D ``outputs``).
        With ``n_bootstrap > 0`` also ``"first_order_ci"`` and
        ``"total_ci"`` of shape (n_samples, n_dims, 2) (lower, upper).
        A sample whose outputs are constant (zero variance) gets indices 0.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.importance import sobol_design, sobol_indices
    >>> X = sobol_design(2, 1024, random_state=0)
    >>> res = sobol_indices(X[:, 0] + 2 * X[:, 1], 2, 1024)
    >>> np.round(res["total"], 2)  # variances 1/12 and 4/12
    array([0.2, 0.8])
    """
    _check_sizes(n_dims, n_designs)
    _check_level(confidence_level)
    Y = np.asarray(outputs, dtype=np.float64)
    single = Y.ndim == 1
    if single:
        Y = Y[None, :]
    expected = int(n_designs) * (int(n_dims) + 2)
    if Y.ndim != 2 or Y.shape[1] != expected:
        raise ValueError(
            f"outputs must have {expected} = n_designs * (n_dims + 2) columns "
            f"(n_designs={n_designs}, n_dims={n_dims}); got shape {Y.shape}."
        )
    if not np.all(np.isfinite(Y)):
        raise ValueError("outputs contain NaN or infinity.")
    fA, fB, fC = _split(Y, int(n_dims), int(n_designs))
    first, total = _estimates(fA, fB, fC)
    res = {"first_order": first, "total": total}
    if n_bootstrap:
        rng = check_random_state(random_state)
        rows = _bootstrap_rows(int(n_designs), int(n_bootstrap), rng)
        rep_first, rep_total = _bootstrap_estimates(fA, fB, fC, rows)
        res["first_order_ci"] = _percentile_interval(rep_first, confidence_level)
        res["total_ci"] = _percentile_interval(rep_total, confidence_level)
    if single:
        res = {key: val[0] for key, val in res.items()}
    return res


def concept_sobol_indices(
    codes,
    components,
    head,
    *,
    residual=None,
    n_designs=32,
    batch_size=None,
    device=None,
    n_bootstrap=0,
    random_state=None,
    confidence_level=0.95,
    target=None,
):
    """Per-sample Sobol' indices of concepts for a model head.

    For each sample with codes ``u`` the head is evaluated on
    ``(m * u) @ components (+ residual)`` for every mask row ``m`` of
    :func:`sobol_design`; rows of several samples are stacked in each head
    call (on ``device`` for a torch head).

    Parameters
    ----------
    codes : ndarray of shape (n_samples, n_concepts)
        Concept codes ``u``.
    components : ndarray of shape (n_concepts, n_features)
        Dictionary (decoder ``u @ components``).
    head : callable, torch.nn.Module or fitted scikit-learn model
        Maps ``(m, n_features)`` activations to ``(m,)`` outputs (or
        ``(m, n_outputs)`` with ``target``).
    residual : ndarray of shape (n_samples, n_features) or (n_features,), default=None
        Added to every decoded row (reconstruction residual and/or decoder
        offset such as PCA's ``mean_``).
    n_designs : int, default=32
        Rows ``N`` per Sobol' block (a power of two); each sample costs
        ``N (n_concepts + 2)`` head rows.
    batch_size : int, default=None
        Maximum rows per head call (None: from a 64 MiB budget).
    device : str, default=None
        Device for a torch head ("auto" when None).
    n_bootstrap : int, default=0
        Bootstrap resamples for confidence intervals.
    random_state : int, RandomState instance or None, default=None
        Seeds the design and the bootstrap.
    confidence_level : float, default=0.95
        Coverage of the intervals.
    target : ndarray of shape (n_samples,) of int, default=None
        Output column explained for each sample, for heads with several
        outputs.

    Returns
    -------
    indices : dict
        As :func:`sobol_indices`, with one row per sample.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.importance import concept_sobol_indices
    >>> codes = np.array([[1.0, 1.0]])
    >>> res = concept_sobol_indices(codes, np.eye(2), lambda x: x[:, 0],
    ...                             n_designs=512, random_state=0)
    >>> np.round(res["total"], 2)  # only the first concept reaches the head
    array([[1., 0.]])
    """
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(
            f"codes must be 2-D (n_samples, n_concepts); got {codes.shape}."
        )
    k = codes.shape[1]
    # an int random_state gives the same design as sobol_design(k, N, it) and
    # the bootstrap of sobol_indices(..., random_state=it)
    design = sobol_design(k, n_designs, random_state=seed_from(random_state))
    rng = check_random_state(random_state)
    outputs = evaluate_masks(
        head,
        codes,
        components,
        design,
        residual=residual,
        target=target,
        batch_size=batch_size,
        device=device,
    )
    return sobol_indices(
        outputs,
        k,
        n_designs,
        n_bootstrap=n_bootstrap,
        confidence_level=confidence_level,
        random_state=rng,
    )
