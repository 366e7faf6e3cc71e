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
same resampled rows for ``A``, ``B`` and every ``C_i``): ``estimate -/+ z sd``
with the bootstrap standard deviation ``sd``. Both estimators are ratios and
carry a bias of order ``1 / N`` (a few percent of the index at ``N = 16``);
the intervals describe the Monte Carlo spread, not that bias.
"""

import numbers

import numpy as np
from scipy.stats import norm, qmc
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
    base = _base_ints(int(n_dims), int(n_designs), seed_from(random_state))
    return _assemble(base.astype(np.float64) / _SCALE, int(n_dims))


# scipy's Sobol' points have 30 bits: x = integer / 2**30 exactly
_BITS = 30
_SCALE = float(2**_BITS)


def _base_ints(k, N, seed):
    """The scrambled ``(N, 2k)`` Sobol' net as 30-bit integers."""
    sampler = qmc.Sobol(d=2 * k, scramble=True, bits=_BITS, rng=seed)
    base = sampler.random_base2(m=N.bit_length() - 1)
    return np.rint(base * _SCALE).astype(np.uint32)


def _assemble(points, k):
    """``[A; B; C_1; ...; C_k]`` from points (..., N, 2k) -> (..., N (k + 2), k)."""
    A, B = points[..., :k], points[..., k:]
    N = A.shape[-2]
    C = np.repeat(A[..., None, :, :], k, axis=-3)  # (..., k, N, k)
    idx = np.arange(k)
    C[..., idx, :, idx] = np.moveaxis(B, -1, 0)
    C = C.reshape(A.shape[:-2] + (k * N, k))
    return np.concatenate([A, B, C], axis=-2)


def _sample_shifts(n_samples, k, seed):
    """One random digital shift (``2k`` 30-bit integers) per sample."""
    rng = np.random.default_rng([int(seed), 7])
    return rng.integers(0, 2**_BITS, size=(n_samples, 2 * k), dtype=np.uint32)


def _shifted_designs(base, shifts, k):
    """Per-sample designs: the base net XOR each sample's digital shift.

    A random digital shift keeps the net's stratification and makes every
    point uniform, so each sample's estimates stay unbiased while the
    Monte Carlo errors of different samples become (nearly) independent:
    the mean of per-sample indices over a class converges like
    ``1 / sqrt(n_samples N)`` instead of ``1 / sqrt(N)``.

    Returns
    -------
    designs : ndarray of shape (n_samples, N (k + 2), k)
    """
    pts = (base[None] ^ shifts[:, None, :]).astype(np.float64) / _SCALE
    return _assemble(pts, k)


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
    mean becomes a product with a weight matrix. ``rows`` of shape
    (n_bootstrap, N) resamples every sample alike; (n, n_bootstrap, N) gives
    each sample its own resamples (independent Monte Carlo errors, as the
    per-sample designs of ``SobolConceptImportance.fit`` need).

    Returns
    -------
    first, total : ndarrays of shape (n_bootstrap, n, k)
    """
    N = rows.shape[-1]
    flat = rows.reshape(-1, N)
    counts = np.zeros(flat.shape)
    np.add.at(counts, (np.repeat(np.arange(flat.shape[0]), N), flat.ravel()), 1.0 / N)
    # weights over the last axis. einsum, not BLAS: these products are thin,
    # and a multithreaded BLAS on a busy machine was measured 40x slower
    if rows.ndim == 2:
        weights = counts.T  # (N, B)

        def wmean(g):
            return np.einsum("...j,jb->...b", g, weights)

    else:
        weights = counts.reshape(rows.shape).transpose(0, 2, 1)  # (n, N, B)

        def wmean(g):
            if g.ndim == 2:
                return np.einsum("nj,njb->nb", g, weights)
            return np.einsum("nkj,njb->nkb", g, weights)

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


def _normal_interval(estimate, replicates, confidence_level):
    """``estimate -/+ z * sd(replicates)`` -> shape estimate.shape + (2,).

    Centred on the estimate, with the bootstrap standard deviation (as SALib
    reports its ``*_conf``). Percentile intervals are not used: at small
    ``N`` resampling design rows with replacement inflates the ratio bias
    of the estimators, which shifts the bootstrap distribution away from
    the estimate (a percentile interval of a per-class mean can then miss
    the estimate itself).
    """
    z = float(norm.ppf(0.5 + confidence_level / 2.0))
    half = z * np.std(replicates, axis=0, ddof=1)
    return np.stack([estimate - half, estimate + half], axis=-1)


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
        Coverage of the normal intervals ``estimate -/+ z sd_bootstrap``.
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
        res["first_order_ci"] = _normal_interval(first, rep_first, confidence_level)
        res["total_ci"] = _normal_interval(total, rep_total, confidence_level)
    if single:
        res = {key: val[0] for key, val in res.items()}
    return res


def concept_sobol_indices(
    head,
    codes,
    components,
    *,
    residual=None,
    n_designs=32,
    batch_size=None,
    device=None,
    n_bootstrap=0,
    random_state=None,
    confidence_level=0.95,
    target=None,
    per_sample_designs=False,
):
    """Per-sample Sobol' indices of concepts for a model head.

    For each sample with codes ``u`` the head is evaluated on
    ``(m * u) @ components (+ residual)`` for every mask row ``m`` of
    :func:`sobol_design`; rows of several samples are stacked in each head
    call (on ``device`` for a torch head).

    Parameters
    ----------
    head : callable, torch.nn.Module or fitted scikit-learn model
        Maps ``(m, n_features)`` activations to ``(m,)`` outputs (or
        ``(m, n_outputs)`` with ``target``).
    codes : ndarray of shape (n_samples, n_concepts)
        Concept codes ``u``.
    components : ndarray of shape (n_concepts, n_features) or fitted extractor
        Dictionary (decoder ``u @ components``), or the fitted extractor
        (its decoder ``W``, ``b`` read off it; ``b`` is the residual when
        ``residual`` is None).
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
    per_sample_designs : bool, default=False
        Give each sample its own random digital shift of the Sobol' net, so
        that the Monte Carlo errors of different samples are independent and
        averages of per-sample indices (global, per-class importances) are
        about ``sqrt(n_samples)`` times more precise. With False every
        sample uses :func:`sobol_design` with this ``random_state`` (a row's
        indices then do not depend on the other rows or their order).

    Returns
    -------
    indices : dict
        As :func:`sobol_indices`, with one row per sample.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.importance import concept_sobol_indices
    >>> codes = np.array([[1.0, 1.0]])
    >>> res = concept_sobol_indices(lambda x: x[:, 0], codes, np.eye(2),
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
    _check_sizes(k, n_designs)
    seed = seed_from(random_state)
    if per_sample_designs:
        base = _base_ints(k, int(n_designs), seed)
        design = _shifted_designs(base, _sample_shifts(len(codes), k, seed), k)
    else:
        design = sobol_design(k, n_designs, random_state=seed)
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
