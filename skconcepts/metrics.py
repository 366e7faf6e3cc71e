"""Metrics for concept dictionaries, codes, importances and erasure."""

import numbers

import numpy as np
from sklearn.utils.validation import check_array

__all__ = [
    "c_deletion",
    "c_insertion",
    "c_mufidelity",
    "atom_label_accuracy",
    "atom_recovery",
    "dead_fraction",
    "dictionary_stability",
    "knn_distance",
    "mean_l0",
    "leakage",
    "modality_gap",
    "reconstruction_r2",
    "relative_error",
    "retrieval_recall_at_k",
]


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


def _named_probes(probes, random_state):
    """``[(name, unfitted classifier, built-in?)]`` from leakage's ``probes``."""
    from sklearn.base import clone

    from .erasure._probes import make_probe

    if isinstance(probes, str) or hasattr(probes, "fit"):
        probes = (probes,)
    out = []
    for p in probes:
        name, est = p if isinstance(p, tuple) else (None, p)
        if isinstance(est, str):
            out.append((name or est, make_probe(est, random_state=random_state), True))
        elif hasattr(est, "fit") and hasattr(est, "predict"):
            out.append((name or type(est).__name__, clone(est), False))
        else:
            raise ValueError(
                f"A probe must be 'linear', 'mlp', a classifier or a (name, probe) "
                f"pair; got {est!r}."
            )
    return out


def leakage(X, y, *, probes=("linear", "mlp"), test_size=0.3, random_state=None):
    """How well fresh probes recover an attribute: held-out balanced accuracy.

    The evaluation protocol of erasure: ``X`` (typically the output of an
    eraser) is split into a stratified train/test split, each probe is
    trained from scratch on the training part, and its balanced accuracy on
    the test part is returned. Chance (the majority-class guess) is
    ``1 / n_classes``; after a perfect erasure every probe is near it.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Activations (erased or not).
    y : array-like of shape (n_samples,)
        Attribute to recover (class labels).
    probes : sequence, default=("linear", "mlp")
        Each item is ``"linear"`` (``StandardScaler`` then
        ``LogisticRegression``), ``"mlp"`` (``StandardScaler`` then
        ``MLPClassifier(hidden_layer_sizes=(64,), max_iter=400)``; its
        convergence warnings are silenced), an unfitted classifier (cloned;
        keyed by its class name) or a ``(name, probe)`` pair.
    test_size : float, default=0.3
        Fraction of the samples held out for testing.
    random_state : int, RandomState instance or None, default=None
        Seeds the split and the MLP probe.

    Returns
    -------
    scores : dict
        Probe name -> balanced accuracy on the held-out part.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import leakage
    >>> rng = np.random.RandomState(0)
    >>> y = rng.randint(0, 2, 200)
    >>> X = np.c_[y + 0.1 * rng.normal(size=200), rng.normal(size=200)]
    >>> scores = leakage(X, y, probes=("linear",), random_state=0)
    >>> round(scores["linear"], 2)
    1.0
    >>> scores = leakage(X[:, 1:], y, probes=("linear",), random_state=0)
    >>> bool(abs(scores["linear"] - 0.5) < 0.15)  # chance: nothing to recover
    True
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_consistent_length, column_or_1d

    X = check_array(X, dtype=[np.float64, np.float32])
    y = column_or_1d(y, warn=True)
    check_consistent_length(X, y)
    check_classification_targets(y)
    # probes see the labels encoded (0 .. n_classes - 1): scikit-learn 1.6's
    # MLP early stopping fails on string labels
    classes, y, counts = np.unique(y, return_inverse=True, return_counts=True)
    if len(classes) < 2:
        raise ValueError("y has 1 class; leakage needs at least 2 classes.")
    rng = check_random_state(random_state)
    split_seed, probe_seed = rng.randint(np.iinfo(np.int32).max, size=2)
    stratify = y if counts.min() >= 2 else None
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=test_size, random_state=split_seed, stratify=stratify
    )
    scores = {}
    for name, probe, builtin in _named_probes(probes, probe_seed):
        with warnings.catch_warnings():
            if builtin:  # our MLP may stop at max_iter on erased data
                warnings.simplefilter("ignore", ConvergenceWarning)
            probe.fit(X_tr, y_tr)
        scores[name] = float(balanced_accuracy_score(y_te, probe.predict(X_te)))
    return scores


# ---------------------------------------------------------------------------
# Fidelity of concept importances (C-Deletion, C-Insertion, C-muFidelity).
# The model output is f(m) = head((m * u) @ W + residual)[target] on a concept
# mask m; it is computed by the importance engine
# (skconcepts.importance.evaluate_masks), in batched head calls.

_FIDELITY_CHUNK_VALUES = 2**22
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
    size = max(1, _FIDELITY_CHUNK_VALUES // max(1, per_sample))
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
    from .importance._engine import evaluate_masks

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

    from .importance._engine import evaluate_masks

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


# ---------------------------------------------------------------------------
# Sparse codes and dictionaries (sparse autoencoders)


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


# ---------------------------------------------------------------------------
# Two modalities: modality gap, cross-modal retrieval, in-distribution distance


def _two_clouds(X_a, X_b, name_a="X_a", name_b="X_b"):
    X_a = check_array(X_a, dtype=[np.float64, np.float32], input_name=name_a)
    X_b = check_array(X_b, dtype=[np.float64, np.float32], input_name=name_b)
    if X_a.shape[1] != X_b.shape[1]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same number of features; got "
            f"{X_a.shape[1]} and {X_b.shape[1]}."
        )
    return X_a.astype(np.float64, copy=False), X_b.astype(np.float64, copy=False)


def modality_gap(X_a, X_b, *, method="mean", max_samples=1000, random_state=None):
    """Distance between the clouds of two modalities (the modality gap).

    ``method="mean"``: ``||mean(X_a) - mean(X_b)||_2``, the distance between
    the two centroids (Liang et al. 2022).

    ``method="ot"``: the optimal transport (2-Wasserstein) cost between the
    two clouds, ``sqrt(min_sigma mean_i ||a_i - b_sigma(i)||^2)``. Both
    clouds are subsampled to the same size ``m = min(len(X_a), len(X_b),
    max_samples)`` (without replacement, seeded by ``random_state``) and the
    best one-to-one matching is found exactly with
    :func:`scipy.optimize.linear_sum_assignment` (cubic in ``m``). Stricter
    than the mean: it is zero only when the two (sub)samples coincide as
    sets, so it also counts differences of shape, and it is not zero for two
    finite samples of the same distribution.

    Parameters
    ----------
    X_a : array-like of shape (n_a, n_features)
        Rows of the first modality.
    X_b : array-like of shape (n_b, n_features)
        Rows of the second modality.
    method : {"mean", "ot"}, default="mean"
        Distance of the means, or optimal transport cost.
    max_samples : int, default=1000
        Largest subsample size for ``method="ot"``.
    random_state : int, RandomState instance or None, default=None
        Seeds the subsamples of ``method="ot"``.

    Returns
    -------
    gap : float

    References
    ----------
    W. Liang et al., "Mind the Gap: Understanding the Modality Gap in
    Multi-modal Contrastive Representation Learning", NeurIPS 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import modality_gap
    >>> A = np.array([[0.0, 0.0], [2.0, 0.0]])
    >>> modality_gap(A, A + [0.0, 3.0])
    3.0
    >>> modality_gap(A, A[::-1] + [0.0, 3.0], method="ot")
    3.0
    """
    from sklearn.utils import check_random_state

    X_a, X_b = _two_clouds(X_a, X_b)
    if method == "mean":
        return float(np.linalg.norm(X_a.mean(axis=0) - X_b.mean(axis=0)))
    if method != "ot":
        raise ValueError(f"method must be 'mean' or 'ot'; got {method!r}.")
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    if not isinstance(max_samples, numbers.Integral) or max_samples < 1:
        raise ValueError(f"max_samples must be an int >= 1; got {max_samples!r}.")
    rng = check_random_state(random_state)
    m = min(X_a.shape[0], X_b.shape[0], int(max_samples))
    if X_a.shape[0] > m:
        X_a = X_a[np.sort(rng.choice(X_a.shape[0], m, replace=False))]
    if X_b.shape[0] > m:
        X_b = X_b[np.sort(rng.choice(X_b.shape[0], m, replace=False))]
    cost = cdist(X_a, X_b, "sqeuclidean")
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


def retrieval_recall_at_k(Q, G, k=1, *, batch_size=4096):
    """Share of queries whose match is among their ``k`` nearest gallery items.

    The match of query ``Q[i]`` is gallery item ``G[i]`` (e.g. the text of
    image ``i``); items are ranked by cosine similarity. The rank of the
    match counts every other item at least as similar (ties count against
    the query), so a constant embedding scores at most ``k / n``.

    Parameters
    ----------
    Q : array-like of shape (n, n_features)
        Queries (e.g. image embeddings).
    G : array-like of shape (n, n_features)
        Gallery, in the order of the queries (e.g. text embeddings).
    k : int, default=1
        Cut-off rank.
    batch_size : int, default=4096
        Queries compared with the gallery at once.

    Returns
    -------
    recall : float
        In ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import retrieval_recall_at_k
    >>> Q = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    >>> retrieval_recall_at_k(Q, Q)
    1.0
    >>> retrieval_recall_at_k(Q, Q[[1, 0, 2]])  # queries 0 and 1 swapped
    0.3333333333333333
    >>> retrieval_recall_at_k(Q, Q[[1, 0, 2]], k=2)
    1.0
    """
    Q, G = _two_clouds(Q, G, "Q", "G")
    if Q.shape[0] != G.shape[0]:
        raise ValueError(
            f"Q and G must have the same number of rows (query i matches gallery "
            f"item i); got {Q.shape[0]} and {G.shape[0]}."
        )
    if int(k) < 1:
        raise ValueError(f"k must be >= 1; got {k}.")
    Qn, Gn = _unit(Q), _unit(G)
    hits = 0
    for s in range(0, Q.shape[0], batch_size):
        S = Qn[s : s + batch_size] @ Gn.T
        rows = np.arange(S.shape[0])
        true = S[rows, s + rows]
        rank = (S >= true[:, None]).sum(axis=1) - 1  # others at least as close
        hits += int(np.sum(rank < k))
    return hits / Q.shape[0]


def knn_distance(Q, reference, k=10):
    """Distance from each query to its ``k``-th nearest reference row.

    An in-distribution measure: a composed query (e.g. image + text) that
    stays among the real images is close to its ``k``-th nearest real image;
    one pushed off the image cloud (e.g. by the text's modality offset) is
    far from it. Euclidean distance, exact search.

    Parameters
    ----------
    Q : array-like of shape (n_queries, n_features)
        Queries.
    reference : array-like of shape (n_reference, n_features)
        The reference distribution (e.g. real image embeddings).
    k : int, default=10
        Which neighbour; ``k <= n_reference``.

    Returns
    -------
    distances : ndarray of shape (n_queries,)

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import knn_distance
    >>> ref = np.array([[0.0], [1.0], [3.0]])
    >>> knn_distance([[0.0], [10.0]], ref, k=2).tolist()
    [1.0, 9.0]
    """
    from sklearn.neighbors import NearestNeighbors

    Q, R = _two_clouds(Q, reference, "Q", "reference")
    if not 1 <= int(k) <= R.shape[0]:
        raise ValueError(f"k must be in [1, {R.shape[0]}]; got {k}.")
    nn = NearestNeighbors(n_neighbors=int(k)).fit(R)
    dist, _ = nn.kneighbors(Q)
    return dist[:, -1]


def atom_label_accuracy(true_atoms, true_labels, D, labels):
    """Share of true atoms whose best-matching learned atom has the right label.

    For every true atom the learned atom of largest cosine is found (as in
    :func:`atom_recovery`) and its label (e.g. ``AlignedSAE.atom_modality_``:
    ``"bimodal"`` or the modality that owns it) is compared with the true
    one (e.g. ``truth.atom_labels`` of
    :func:`skconcepts.datasets.make_two_modality`). Labels are compared as
    strings, as ``atom_modality_`` holds them: the modality ``0`` of the
    truth matches the label ``"0"`` of an ``AlignedSAE`` fitted with
    ``y`` in ``{0, 1}``.

    Parameters
    ----------
    true_atoms : array-like of shape (n_true, n_features)
        Ground-truth atoms.
    true_labels : array-like of shape (n_true,)
        Their labels.
    D : array-like of shape (n_atoms, n_features)
        Learned dictionary.
    labels : array-like of shape (n_atoms,)
        Labels of the learned atoms.

    Returns
    -------
    accuracy : float

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import atom_label_accuracy
    >>> true = np.eye(2)
    >>> D = np.array([[0.0, 2.0], [1.0, 0.1]])
    >>> atom_label_accuracy(true, ["bimodal", 0], D, ["0", "bimodal"])
    1.0
    """
    true_labels = np.asarray(true_labels, dtype=object)
    labels = np.asarray(labels, dtype=object)
    cos = _cosines(true_atoms, D)
    if true_labels.shape[0] != cos.shape[0] or labels.shape[0] != cos.shape[1]:
        raise ValueError("One label per atom is needed in true_labels and labels.")
    best = cos.argmax(axis=1)
    hits = [str(t) == str(p) for t, p in zip(true_labels, labels[best], strict=True)]
    return float(np.mean(hits))


def shared_concept_capture(codes_a, codes_b, true_active, bimodal, *, min_rate=0.5):
    """Share of shared concepts that one bimodal atom captures on both sides.

    The rows of ``codes_a`` and ``codes_b`` are the codes of paired rows of
    the two modalities (row ``i`` of each is pair ``i``). A true shared
    concept ``c`` (active on the pairs where ``true_active[:, c]``) is
    captured when the atom ``j`` that fires on both sides of the most of
    those pairs

    - fires on both sides of more than ``min_rate`` of them (recall),
    - has the concept active on more than ``min_rate`` of the pairs where it
      fires on both sides (precision; an atom that fires everywhere does not
      capture anything), and
    - is bimodal (``bimodal[j]``, e.g. ``AlignedSAE.atom_modality_ ==
      "bimodal"``).

    A plain SAE may split a concept whose direction differs per modality into
    one atom per modality: then no atom fires on both sides and the concept
    is not captured.

    Parameters
    ----------
    codes_a, codes_b : array-like of shape (n_pairs, n_atoms)
        Codes of the rows of each modality, in pair order.
    true_active : array-like of shape (n_pairs, n_shared)
        Whether each true shared concept is active in each pair (e.g.
        ``truth.codes[:n_pairs, :n_shared] > 0`` of
        :func:`skconcepts.datasets.make_two_modality`).
    bimodal : array-like of shape (n_atoms,), bool
        Which learned atoms are labelled bimodal.
    min_rate : float, default=0.5
        Recall and precision above which a concept counts as captured.

    Returns
    -------
    capture : float
        Share of the shared concepts (with at least one active pair) that
        are captured.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import shared_concept_capture
    >>> active = np.array([[1, 0], [0, 1], [1, 1]], dtype=bool)
    >>> za = np.array([[2.0, 0, 0], [0, 1.0, 0], [1.0, 1.0, 0]])
    >>> zb = np.array([[1.0, 0, 0], [0, 0, 3.0], [1.0, 0, 1.0]])
    >>> shared_concept_capture(za, zb, active, [True, True, True])
    0.5
    """
    za = check_array(codes_a) > 0
    zb = check_array(codes_b) > 0
    active = check_array(true_active, dtype=None).astype(bool)
    bimodal = np.asarray(bimodal, dtype=bool)
    if za.shape != zb.shape or active.shape[0] != za.shape[0]:
        raise ValueError(
            "codes_a, codes_b and true_active need one row per pair, and codes_a "
            f"and codes_b the same shape; got {za.shape}, {zb.shape} and "
            f"{active.shape}."
        )
    if bimodal.shape != (za.shape[1],):
        raise ValueError(f"bimodal needs one entry per atom ({za.shape[1]}).")
    both = (za & zb).astype(float)  # (n_pairs, n_atoms)
    hits = active.T.astype(float) @ both  # pairs where c active and j on both
    n_active = active.sum(axis=0)
    n_both = both.sum(axis=0)
    keep = n_active > 0
    if not keep.any():
        raise ValueError("No shared concept is active in any pair.")
    best = hits.argmax(axis=1)
    rows = np.arange(len(best))
    recall = hits[rows, best] / np.maximum(n_active, 1)
    precision = hits[rows, best] / np.maximum(n_both[best], 1)
    captured = (recall > min_rate) & (precision > min_rate) & bimodal[best]
    return float(captured[keep].mean())
