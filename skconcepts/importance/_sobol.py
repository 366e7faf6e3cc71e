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

Confidence intervals come from independent replicates (randomised
quasi-Monte Carlo): with ``n_replicates = R >= 2`` the design is evaluated
under ``R`` independent random digital shifts of the scrambled net, the
indices are the mean of the ``R`` replicate estimates and the interval is
``mean -/+ t_{R-1} sd / sqrt(R)`` with the replicates' standard deviation
``sd``. The replicates are independent and identically distributed, so the
interval's coverage is the nominal one up to the ratio estimators' bias.
(A bootstrap over the ``N`` rows of one net treats the rows as independent
draws; a Sobol' net is much better balanced than that, and such intervals
covered the truth 100% of the time at a nominal 95%.) Both estimators are
ratios and carry a bias of order ``1 / N`` (a few percent of the index at
``N = 16``); the intervals describe the Monte Carlo spread, not that bias.
"""

import numbers

import numpy as np
from scipy.stats import qmc
from scipy.stats import t as student_t

from .._backend import named_seeds, seed_from
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


def sobol_design(n_dims, n_designs, random_state=None, *, n_replicates=1):
    """Saltelli's design of masks from a scrambled, seeded Sobol' sequence.

    Parameters
    ----------
    n_dims : int
        Number of inputs ``k`` (concepts).
    n_designs : int
        Rows ``N`` per block; a power of two.
    random_state : int, RandomState instance or None, default=None
        Seeds the scrambling of the sequence (and the replicates' shifts).
    n_replicates : int, default=1
        Independent randomisations of the design, stacked one after the
        other: replicate ``r`` is the scrambled net XOR an independent random
        digital shift (with 1, the net itself). :func:`sobol_indices` with
        the same ``n_replicates`` turns their spread into intervals.

    Returns
    -------
    design : ndarray of shape (n_replicates * n_designs * (n_dims + 2), n_dims)
        The blocks ``[A; B; C_1; ...; C_k]`` stacked (per replicate); values
        in ``[0, 1)``. ``A`` and ``B`` are the two halves of the columns of
        one ``2k``-dimensional scrambled Sobol' sequence; ``C_i`` is ``A``
        with column ``i`` taken from ``B``.

    Examples
    --------
    >>> from skconcepts.importance import sobol_design
    >>> sobol_design(3, 8, random_state=0).shape
    (40, 3)
    """
    _check_sizes(n_dims, n_designs)
    _check_replicates(n_replicates)
    k, seed = int(n_dims), seed_from(random_state)
    base = _base_ints(k, int(n_designs), seed)
    shifts = _replicate_shifts(1, k, seed, int(n_replicates), per_sample=False)
    return _shifted_designs(base, shifts, k)[0]


def _check_replicates(n_replicates):
    if not isinstance(n_replicates, numbers.Integral) or n_replicates < 1:
        raise ValueError(
            "n_replicates must be a positive integer (1: no intervals; >= 2: "
            f"that many independent randomisations); got {n_replicates!r}."
        )


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


_SHIFT_STREAMS = ("shared", "per_sample")


def _replicate_shifts(n_samples, k, seed, n_replicates, *, per_sample):
    """Random digital shifts, shape (n_samples, n_replicates, 2k), uint32.

    ``per_sample``: every sample and replicate its own shift (the samples'
    Monte Carlo errors independent). Otherwise every sample shares the
    replicates' shifts, and a single replicate is the unshifted net. The
    same ``(n_samples, k, seed, n_replicates)`` give the same shifts in
    :func:`concept_sobol_indices` and ``SobolConceptImportance.fit``.
    """
    if not per_sample:
        if n_replicates == 1:
            return np.zeros((n_samples, 1, 2 * k), dtype=np.uint32)
        rng = np.random.default_rng(named_seeds(seed, _SHIFT_STREAMS)["shared"])
        one = rng.integers(0, 2**_BITS, size=(1, n_replicates, 2 * k), dtype=np.uint32)
        return np.repeat(one, n_samples, axis=0)
    rng = np.random.default_rng(named_seeds(seed, _SHIFT_STREAMS)["per_sample"])
    size = (n_samples, n_replicates, 2 * k)
    return rng.integers(0, 2**_BITS, size=size, dtype=np.uint32)


def _shifted_designs(base, shifts, k):
    """Per-sample designs: the base net XOR each sample's digital shifts.

    A random digital shift keeps the net's stratification and makes every
    point uniform, so each sample's estimates stay unbiased while the
    Monte Carlo errors of different samples become (nearly) independent:
    the mean of per-sample indices over a class converges like
    ``1 / sqrt(n_samples N)`` instead of ``1 / sqrt(N)``.

    ``shifts`` has shape (n_samples, n_replicates, 2k); the replicates'
    designs are stacked one after the other.

    Returns
    -------
    designs : ndarray of shape (n_samples, n_replicates N (k + 2), k)
    """
    pts = (base[None, None] ^ shifts[:, :, None, :]).astype(np.float64) / _SCALE
    designs = _assemble(pts, k)  # (n, R, N (k + 2), k)
    return designs.reshape(shifts.shape[0], -1, k)


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


def _replicate_estimates(outputs, n_dims, n_designs, n_replicates):
    """Indices of every replicate: outputs (n, R N (k + 2)) -> (R, n, k) twice."""
    n = outputs.shape[0]
    Y = outputs.reshape(n * n_replicates, -1)
    first, total = _estimates(*_split(Y, n_dims, n_designs))
    shape = (n, n_replicates, n_dims)
    return (
        first.reshape(shape).transpose(1, 0, 2),
        total.reshape(shape).transpose(1, 0, 2),
    )


def _replicate_interval(estimate, replicates, confidence_level):
    """``estimate -/+ t_{R-1} sd(replicates) / sqrt(R)`` -> estimate.shape + (2,).

    ``replicates`` (R, ...) are independent randomisations and ``estimate``
    their mean (or the mean of their per-class means): Student's interval
    for the mean of ``R`` i.i.d. values.
    """
    R = replicates.shape[0]
    t = float(student_t.ppf(0.5 + confidence_level / 2.0, R - 1))
    half = t * np.std(replicates, axis=0, ddof=1) / np.sqrt(R)
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
    n_replicates=1,
    confidence_level=0.95,
):
    """First-order and total Sobol' indices from outputs on :func:`sobol_design`.

    Parameters
    ----------
    outputs : array-like of shape (n_samples, n_evals) or (n_evals,)
        Model outputs on the ``n_evals = n_replicates * n_designs * (n_dims +
        2)`` design rows, in the design's order, one row per explained
        sample (1-D for a single sample).
    n_dims : int
        Number of inputs ``k``.
    n_designs : int
        Rows ``N`` per block (a power of two).
    n_replicates : int, default=1
        Independent randomisations in the design (as passed to
        :func:`sobol_design`). With 2 or more, the indices are the mean of
        the replicates' estimates and come with Student intervals from their
        spread; 1 gives no intervals.
    confidence_level : float, default=0.95
        Nominal coverage of the intervals ``mean -/+ t_{R-1} sd / sqrt(R)``.

    Returns
    -------
    indices : dict
        ``"first_order"`` and ``"total"``: ndarrays of shape
        (n_samples, n_dims), float64 (shape (n_dims,) for 1-D ``outputs``).
        With ``n_replicates >= 2`` also ``"first_order_ci"`` and
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
    >>> X = sobol_design(2, 256, random_state=0, n_replicates=8)
    >>> res = sobol_indices(X[:, 0] + 2 * X[:, 1], 2, 256, n_replicates=8)
    >>> lo, hi = res["total_ci"][1]
    >>> bool(lo < 0.8 < hi)
    True
    """
    _check_sizes(n_dims, n_designs)
    _check_replicates(n_replicates)
    _check_level(confidence_level)
    Y = np.asarray(outputs, dtype=np.float64)
    single = Y.ndim == 1
    if single:
        Y = Y[None, :]
    R = int(n_replicates)
    expected = R * int(n_designs) * (int(n_dims) + 2)
    if Y.ndim != 2 or Y.shape[1] != expected:
        raise ValueError(
            f"outputs must have {expected} = n_replicates * n_designs * (n_dims "
            f"+ 2) columns (n_replicates={R}, n_designs={n_designs}, "
            f"n_dims={n_dims}); got shape {Y.shape}."
        )
    if not np.all(np.isfinite(Y)):
        raise ValueError("outputs contain NaN or infinity.")
    rep_first, rep_total = _replicate_estimates(Y, int(n_dims), int(n_designs), R)
    first, total = rep_first.mean(axis=0), rep_total.mean(axis=0)
    res = {"first_order": first, "total": total}
    if R >= 2:
        res["first_order_ci"] = _replicate_interval(first, rep_first, confidence_level)
        res["total_ci"] = _replicate_interval(total, rep_total, confidence_level)
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
    n_replicates=1,
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
        ``n_replicates * N (n_concepts + 2)`` head rows.
    batch_size : int, default=None
        Maximum rows per head call (None: from a 64 MiB budget).
    device : str, default=None
        Device for a torch head ("auto" when None).
    n_replicates : int, default=1
        Independent randomisations (random digital shifts) of the design per
        sample. With 2 or more the indices are the replicates' mean and come
        with Student intervals from their spread (honest coverage: the
        replicates are i.i.d.); the cost grows ``n_replicates`` times.
    random_state : int, RandomState instance or None, default=None
        Seeds the design and the replicates' shifts.
    confidence_level : float, default=0.95
        Nominal coverage of the intervals.
    target : ndarray of shape (n_samples,) of int, default=None
        Output column explained for each sample, for heads with several
        outputs.
    per_sample_designs : bool, default=False
        Give each sample its own random digital shifts of the Sobol' net, so
        that the Monte Carlo errors of different samples are independent and
        averages of per-sample indices (global, per-class importances) are
        about ``sqrt(n_samples)`` times more precise (the designs of
        ``SobolConceptImportance.fit``: the same seed gives the same
        indices and intervals). With False every sample uses
        :func:`sobol_design` with this ``random_state`` and
        ``n_replicates`` (a row's indices then do not depend on the other
        rows or their order).

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
    _check_sizes(k, n_designs)
    _check_replicates(n_replicates)
    seed = seed_from(random_state)
    designs = _design_source(
        k,
        int(n_designs),
        seed,
        len(codes),
        int(n_replicates),
        per_sample=per_sample_designs,
    )
    design = designs(slice(None))
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
        n_replicates=n_replicates,
        confidence_level=confidence_level,
    )


def _design_source(k, n_designs, seed, n_samples, n_replicates, *, per_sample):
    """The masks of the Sobol' estimators: a function ``rows -> design``.

    The one place where :func:`concept_sobol_indices` and
    ``SobolConceptImportance`` (``fit``: per-sample designs; ``transform``:
    one design for every row) get their designs, so the same seed gives
    the same masks. ``per_sample=True``: each sample has its own shifts of
    one scrambled base (independent randomisations), and ``rows`` (a slice)
    selects samples without drawing the shifts anew; the design has shape
    ``(len(rows), R N (k + 2), k)``. ``per_sample=False``: the design of
    :func:`sobol_design`, shape ``(R N (k + 2), k)``, whatever ``rows``.
    """
    if not per_sample:
        design = sobol_design(
            k, n_designs, random_state=seed, n_replicates=n_replicates
        )
        return lambda rows: design
    base = _base_ints(k, n_designs, seed)
    shifts = _replicate_shifts(n_samples, k, seed, n_replicates, per_sample=True)
    return lambda rows: _shifted_designs(base, shifts[rows], k)


def _replicated_designs(k, n_designs, seed, n_samples, n_replicates, rows=None):
    """Per-sample designs with their own shifts, shape (n, R N (k + 2), k)."""
    designs = _design_source(
        k, n_designs, seed, n_samples, n_replicates, per_sample=True
    )
    return designs(slice(None) if rows is None else rows)
