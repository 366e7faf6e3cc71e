"""Fidelity of concept importances: C-Deletion, C-Insertion, C-muFidelity.

They live beside the importance engine they are computed with and are
re-exported by :mod:`skconcepts.metrics`."""

import numpy as np
from sklearn.utils.validation import check_array

from ._engine import chunk_values, evaluate_masks

__all__ = ["c_deletion", "c_insertion", "c_mufidelity"]


# ---------------------------------------------------------------------------
# Fidelity of concept importances (C-Deletion, C-Insertion, C-muFidelity).
# The model output is f(m) = head((m * u) @ W + residual)[target] on a concept
# mask m; it is computed by the importance engine
# (skconcepts.importance.evaluate_masks), in batched head calls.

_REL_CONST = 1e-6


def _fidelity_inputs(codes, importances):
    codes = check_array(codes, dtype=[np.float64, np.float32])
    n, k = codes.shape
    imp = np.asarray(importances, dtype=np.float64)
    if imp.ndim == 1:
        imp = np.broadcast_to(imp, (n, imp.shape[0]))
    if imp.shape != (n, k):
        raise ValueError(
            f"importances must have shape ({k},) or ({n}, {k}) to match the codes; "
            f"got {np.shape(importances)}."
        )
    if not np.all(np.isfinite(imp)):
        raise ValueError("importances contain NaN or infinity.")
    return codes, imp


def _sample_chunks(n, per_sample):
    size = max(1, chunk_values() // max(1, per_sample))
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _residual_rows(residual, sl):
    if residual is None:
        return None
    residual = np.asarray(residual)
    return residual[sl] if residual.ndim == 2 else residual


def _target_rows(target, sl):
    return None if target is None else np.asarray(target)[sl]


def _concept_curves(
    head, codes, components, importances, *, insertion, residual, target, **kw
):
    """Output after removing (inserting) concepts by decreasing importance."""
    codes, imp = _fidelity_inputs(codes, importances)
    n, k = codes.shape
    curves = np.empty((n, k + 1))
    steps = np.arange(k + 1)
    for sl in _sample_chunks(n, (k + 1) * k):
        order = np.argsort(-imp[sl], axis=1, kind="stable")
        rank = np.empty_like(order)
        rows = np.arange(order.shape[0])[:, None]
        rank[rows, order] = np.arange(k)[None, :]
        # step j: the j most important concepts are removed (deletion) or are
        # the only ones present (insertion)
        top = rank[:, None, :] < steps[None, :, None]
        masks = (top if insertion else ~top).astype(np.float64)
        curves[sl] = evaluate_masks(
            head,
            codes[sl],
            components,
            masks,
            residual=_residual_rows(residual, sl),
            target=_target_rows(target, sl),
            **kw,
        )
    return curves


def _auc(curves):
    """Trapezoid area under curves sampled at fractions 0, 1/k, ..., 1."""
    k = curves.shape[1] - 1
    return (curves.sum(axis=1) - 0.5 * (curves[:, 0] + curves[:, -1])) / k


def _curve_area(head, codes, components, importances, insertion, curves_too, kw):
    """Mean area under the deletion / insertion curves (and the curves)."""
    curves = _concept_curves(
        head, codes, components, importances, insertion=insertion, **kw
    )
    score = float(np.mean(_auc(curves)))
    return (score, curves) if curves_too else score


def c_deletion(
    head,
    codes,
    components,
    importances,
    *,
    residual=None,
    target=None,
    batch_size=None,
    device=None,
    return_curves=False,
):
    """C-Deletion: area under the output as concepts are removed by importance.

    For each sample, concepts are set to zero (``u_i = 0``) one by one in
    decreasing order of importance; the explained output ``f`` is recorded
    after each removal (``k + 1`` points from the full sample to all concepts
    removed) and the area under this curve, over the fraction of removed
    concepts in ``[0, 1]`` (trapezoid rule), is averaged over samples. Good
    importances make the output fall fast: **lower is better**. The value is in
    the units of the head's output, so compare estimators on the same head
    and samples.

    Parameters
    ----------
    head : callable, torch.nn.Module or fitted scikit-learn model
        Maps activations to outputs (see
        :class:`~skconcepts.importance.SobolConceptImportance`).
    codes : array-like of shape (n_samples, n_concepts)
        Concept codes ``u``.
    components : array-like of shape (n_concepts, n_features) or fitted extractor
        Dictionary (decoder ``u @ components``), or the fitted extractor
        (its decoder ``W``, ``b`` read off it; ``b`` is the residual when
        ``residual`` is None).
    importances : array-like of shape (n_samples, n_concepts) or (n_concepts,)
        Per-sample importances, or one ranking shared by all samples.
    residual : array-like of shape (n_samples, n_features) or (n_features,), \
            default=None
        Added to every decoded row (reconstruction residual and/or offset).
    target : array-like of shape (n_samples,) of int, default=None
        Output column per sample, for heads with several outputs.
    batch_size : int, default=None
        Maximum rows per head call.
    device : str, default=None
        Device of a torch head ("auto" when None).
    return_curves : bool, default=False
        Also return the curves, shape (n_samples, n_concepts + 1).

    Returns
    -------
    score : float
        Mean area under the deletion curve.
    curves : ndarray of shape (n_samples, n_concepts + 1)
        Only when ``return_curves=True``.

    See Also
    --------
    c_insertion, c_mufidelity

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import c_deletion
    >>> head = lambda x: x @ np.array([3.0, 1.0])
    >>> codes = np.ones((1, 2))
    >>> c_deletion(head, codes, np.eye(2), [1.0, 0.0])  # right order: 4, 1, 0
    1.5
    >>> c_deletion(head, codes, np.eye(2), [0.0, 1.0])  # wrong order: 4, 3, 0
    2.5
    """
    kw = dict(residual=residual, target=target, batch_size=batch_size, device=device)
    return _curve_area(head, codes, components, importances, False, return_curves, kw)


def c_insertion(
    head,
    codes,
    components,
    importances,
    *,
    residual=None,
    target=None,
    batch_size=None,
    device=None,
    return_curves=False,
):
    """C-Insertion: area under the output as concepts are added back by importance.

    Starting from all concepts removed (``u = 0``, the residual kept), the
    concepts are put back one by one in decreasing order of importance; the
    area under the output curve (trapezoid rule over the fraction of
    inserted concepts) is averaged over samples. Good importances make the
    output rise fast: **higher is better**.

    Parameters
    ----------
    head, codes, components, importances, residual, target, batch_size, \
device, return_curves
        As in :func:`c_deletion`.

    Returns
    -------
    score : float
        Mean area under the insertion curve.
    curves : ndarray of shape (n_samples, n_concepts + 1)
        Only when ``return_curves=True``.

    See Also
    --------
    c_deletion, c_mufidelity

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import c_insertion
    >>> head = lambda x: x @ np.array([3.0, 1.0])
    >>> c_insertion(head, np.ones((1, 2)), np.eye(2), [1.0, 0.0])  # 0, 3, 4
    2.5
    """
    kw = dict(residual=residual, target=target, batch_size=batch_size, device=device)
    return _curve_area(head, codes, components, importances, True, return_curves, kw)


def c_mufidelity(
    head,
    codes,
    components,
    importances,
    *,
    residual=None,
    target=None,
    subset_size=None,
    n_subsets=128,
    batch_size=None,
    device=None,
    random_state=None,
    absolute=False,
    return_per_sample=False,
):
    """C-muFidelity: do importances predict the effect of removing concepts?

    ``n_subsets`` random subsets ``S`` of ``subset_size`` concepts are drawn
    (the same for every sample). For each sample the score is the Pearson
    correlation, over the subsets, between ``sum_{i in S} phi_i`` and the
    drop of the output ``f(1) - f(1 - 1_S)`` when the concepts of ``S`` are
    set to zero; it is averaged over samples. **Higher is better**
    (1: the importances add up to the exact effect of every removal). A
    sample whose drops or sums are constant scores 0.

    Parameters
    ----------
    head, codes, components, importances, residual, target, batch_size, device
        As in :func:`c_deletion`.
    subset_size : int, default=None
        Concepts per subset; None uses ``max(1, round(n_concepts / 5))``.
    n_subsets : int, default=128
        Number of random subsets.
    random_state : int, RandomState instance or None, default=None
        Seeds the subsets.
    absolute : bool, default=False
        Correlate with the magnitude of the drop, ``|f(1) - f(1 - 1_S)|``:
        the fidelity of unsigned importances (Sobol' indices measure how much
        a concept moves the output, not in which direction).
    return_per_sample : bool, default=False
        Also return the per-sample correlations.

    Returns
    -------
    score : float
        Mean correlation, in [-1, 1].
    per_sample : ndarray of shape (n_samples,)
        Only when ``return_per_sample=True``.

    See Also
    --------
    c_deletion, c_insertion

    References
    ----------
    .. [1] Bhatt, U., Weller, A., Moura, J. M. F. "Evaluating and Aggregating
       Feature-based Model Explanations", IJCAI 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import c_mufidelity
    >>> head = lambda x: x @ np.array([3.0, 1.0, 2.0])
    >>> codes = np.ones((1, 3))
    >>> c_mufidelity(head, codes, np.eye(3), [3.0, 1.0, 2.0], random_state=0)
    1.0
    """
    from sklearn.utils import check_random_state

    codes, imp = _fidelity_inputs(codes, importances)
    n, k = codes.shape
    size = max(1, round(k / 5)) if subset_size is None else int(subset_size)
    if not 1 <= size <= k:
        raise ValueError(f"subset_size must be in [1, {k}]; got {subset_size}.")
    rng = check_random_state(random_state)
    subsets = np.zeros((int(n_subsets), k))
    for row in subsets:
        row[rng.choice(k, size=size, replace=False)] = 1.0
    masks = np.vstack([np.ones((1, k)), 1.0 - subsets])
    per_sample = np.empty(n)
    for sl in _sample_chunks(n, masks.shape[0]):
        f = evaluate_masks(
            head,
            codes[sl],
            components,
            masks,
            residual=_residual_rows(residual, sl),
            target=_target_rows(target, sl),
            batch_size=batch_size,
            device=device,
        )
        drop = f[:, :1] - f[:, 1:]
        if absolute:
            drop = np.abs(drop)
        sums = imp[sl] @ subsets.T
        dc = drop - drop.mean(axis=1, keepdims=True)
        sc = sums - sums.mean(axis=1, keepdims=True)
        d_sd = np.sqrt(np.mean(dc**2, axis=1))
        s_sd = np.sqrt(np.mean(sc**2, axis=1))
        # constant up to the rounding of a float32 head -> no correlation
        ok = (d_sd > _REL_CONST * np.abs(f).max(axis=1)) & (
            s_sd > _REL_CONST * np.abs(imp[sl]).max(axis=1)
        )
        corr = np.mean(dc * sc, axis=1) / np.where(ok, d_sd * s_sd, 1.0)
        per_sample[sl] = np.where(ok, np.clip(corr, -1.0, 1.0), 0.0)
    score = float(np.mean(per_sample))
    return (score, per_sample) if return_per_sample else score
