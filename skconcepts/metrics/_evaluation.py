"""Evaluation of any sparse autoencoder (or concept extractor) on stored data.

The unsupervised scores of SAELens / SAEBench (fraction of variance
unexplained, L0, dead and dense latents, the latent density histogram),
SAEBench's k-sparse probing on stored labels, cross-seed stability of the
dictionary, and :func:`evaluate_sae`, which computes them for a fitted
extractor in one streamed pass and returns a table (a dict of columns).

Nothing here assumes non-negative codes: a latent *fires* on a row when its
code is non-zero (or its absolute value exceeds a threshold), and the probing
ranks latents by the absolute difference of the class means, so the signed
codes of PCA or ICA are evaluated like the codes of a TopK SAE.
"""

import numbers

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d

from .._backend import default_batch_size, spawn_seeds, to_tensor
from .._stats import R2Accumulator
from ._dictionary import dictionary_stability
from ._ground_truth import feature_f1, feature_mcc
from ._reconstruction import _pair, reconstruction_r2

__all__ = [
    "cross_seed_stability",
    "dense_fraction",
    "evaluate_sae",
    "fraction_variance_unexplained",
    "k_sparse_probing",
    "latent_density",
    "latent_density_histogram",
]

#: The k of SAEBench's sparse probing (its default evaluates 1, 2 and 5; the
#: sparse-probing paper and the issue add 10 and 20).
DEFAULT_KS = (1, 2, 5, 10, 20)


# ---------------------------------------------------------------- reconstruction
def fraction_variance_unexplained(X, X_hat, *, aggregate="total"):
    """Fraction of variance unexplained (FVU) of a reconstruction.

    ``aggregate="total"`` (the default) is the field's dataset-level FVU,
    one minus the explained variance that SAELens logs while training:

    .. math::

        \\mathrm{FVU} = \\frac{\\sum_i \\lVert x_i - \\hat x_i \\rVert^2}
                             {\\sum_i \\lVert x_i - \\bar x \\rVert^2},

    with :math:`\\bar x` the per-feature mean of the rows. The variance is the
    *total* variance (the squared deviations summed over all features), not
    the mean of per-feature R² (scikit-learn's ``r2_score`` default), so a
    feature with a large variance weighs more. FVU = 0 is a perfect
    reconstruction, FVU = 1 is no better than predicting the mean row.

    ``aggregate="per_row"`` is the older per-token form (SAELens's
    ``explained_variance_legacy``, SAEBench core's ``explained_variance``):
    the ratio is taken row by row, ``||x_i - x_hat_i||^2 / ||x_i - x_bar||^2``,
    and averaged over the rows (rows equal to the mean are skipped). It
    weighs every row equally and is dominated by rows close to the mean.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Original activations.
    X_hat : array-like of shape (n_samples, n_features)
        Reconstruction (e.g. ``inverse_transform(transform(X))``).
    aggregate : {"total", "per_row"}, default="total"
        Dataset-level ratio of sums, or mean of per-row ratios.

    Returns
    -------
    fvu : float
        Non-negative; ``1 - reconstruction_r2(X, X_hat)`` for ``"total"``.

    See Also
    --------
    skconcepts.metrics.reconstruction_r2 : the explained variance, ``1 - FVU``.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import fraction_variance_unexplained
    >>> X = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 3.0]])
    >>> fraction_variance_unexplained(X, X)
    0.0
    >>> fraction_variance_unexplained(X, np.tile(X.mean(axis=0), (3, 1)))
    1.0
    """
    if aggregate == "total":
        return 1.0 - reconstruction_r2(X, X_hat)
    if aggregate != "per_row":
        raise ValueError(f"aggregate={aggregate!r}; use 'total' or 'per_row'.")
    X, X_hat = _pair(X, X_hat)
    X = X.astype(np.float64)
    sse = np.sum((X - X_hat) ** 2, axis=1)
    sst = np.sum((X - X.mean(axis=0)) ** 2, axis=1)
    keep = sst > 0
    if not keep.any():
        return 0.0 if not sse.any() else 1.0
    return float(np.mean(sse[keep] / sst[keep]))


# ---------------------------------------------------------------- firing
def _codes(codes, name="codes"):
    return check_array(codes, dtype=[np.float64, np.float32], input_name=name)


def _check_fraction(value, name, closed_right=False):
    ok = (
        isinstance(value, numbers.Real)
        and 0 <= value
        and (value <= 1 if closed_right else value < 1)
    )
    if not ok:
        interval = "[0, 1]" if closed_right else "[0, 1)"
        raise ValueError(f"{name} must be a number in {interval}; got {value!r}.")
    return float(value)


def latent_density(codes, *, threshold=0.0):
    """Firing frequency of each latent: the share of rows where it is active.

    A latent is active on a row when ``|code| > threshold`` (the default 0
    counts every non-zero code, as SAEBench's feature density does for its
    non-negative codes; the absolute value makes signed codes count on both
    sides).

    Parameters
    ----------
    codes : array-like of shape (n_samples, n_latents)
        Codes of an extractor (``transform(X)``).
    threshold : float, default=0.0
        A latent fires when the absolute value of its code exceeds it.

    Returns
    -------
    density : ndarray of shape (n_latents,)
        In ``[0, 1]``; 0 for a dead latent.

    See Also
    --------
    latent_density_histogram : the histogram of ``log10(density)``.
    dense_fraction : the share of latents firing on many rows.

    Examples
    --------
    >>> from skconcepts.metrics import latent_density
    >>> latent_density([[0.0, 1.0, -2.0], [0.0, 0.0, 3.0]]).tolist()
    [0.0, 0.5, 1.0]
    """
    codes = _codes(codes)
    if not (isinstance(threshold, numbers.Real) and threshold >= 0):
        raise ValueError(f"threshold must be a non-negative number; got {threshold!r}.")
    return np.mean(np.abs(codes) > threshold, axis=0, dtype=np.float64)


def _density(density):
    density = column_or_1d(check_array(density, ensure_2d=False, dtype=np.float64))
    if density.size and (density.min() < 0 or density.max() > 1):
        raise ValueError(
            "density must hold firing frequencies in [0, 1] (the output of "
            "latent_density); pass codes of shape (n_samples, n_latents) to "
            "latent_density first."
        )
    return density


def latent_density_histogram(density, *, bins=20, log_range=None):
    """Histogram of ``log10`` of the latent densities (dead latents apart).

    The picture SAELens and SAEBench draw of a dictionary's firing: a mass
    near ``log10(density) = 0`` means dense latents (active on most rows),
    a long tail to the left means very rare latents; dead latents
    (``density = 0``, ``log10 = -inf``) are counted separately.

    Parameters
    ----------
    density : array-like of shape (n_latents,)
        Firing frequencies in ``[0, 1]``, e.g. from :func:`latent_density`.
    bins : int or array-like, default=20
        Number of bins, or the bin edges in ``log10`` units.
    log_range : (float, float) or None, default=None
        Range of the bins in ``log10`` units; None: from the smallest
        ``log10`` density of a live latent to 0.

    Returns
    -------
    counts : ndarray of shape (n_bins,)
        Number of live latents in each bin.
    edges : ndarray of shape (n_bins + 1,)
        Bin edges in ``log10(density)``.
    n_dead : int
        Number of latents that never fire.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import latent_density_histogram
    >>> counts, edges, n_dead = latent_density_histogram(
    ...     [0.0, 0.001, 0.01, 0.1, 1.0], bins=3, log_range=(-3, 0))
    >>> counts.tolist(), edges.tolist(), n_dead
    ([1, 1, 2], [-3.0, -2.0, -1.0, 0.0], 1)
    """
    density = _density(density)
    alive = density[density > 0]
    logs = np.log10(alive)
    if log_range is None:
        low = float(logs.min()) if logs.size else -1.0
        log_range = (min(low, -1e-3), 0.0)
    counts, edges = np.histogram(logs, bins=bins, range=log_range)
    return counts, edges, int(np.sum(density == 0))


def _dense_share(density, threshold):
    threshold = _check_fraction(threshold, "threshold")
    return float(np.mean(density > threshold)) if density.size else 0.0


def dense_fraction(codes, *, threshold=0.1, activity_threshold=0.0):
    """Share of latents that fire on more than ``threshold`` of the rows.

    The counterpart of :func:`dead_fraction` at the other end of the density
    histogram: a latent active on more than 10 % of the rows (the default
    cut-off) carries little sparse, specific information; many of them
    usually mean a dictionary that fits the mean or a few dominant
    directions. For signed dense codes (PCA) every latent is dense.

    Parameters
    ----------
    codes : array-like of shape (n_samples, n_latents)
        Codes of an extractor.
    threshold : float, default=0.1
        Firing frequency above which a latent is dense, in ``[0, 1)``.
    activity_threshold : float, default=0.0
        A latent fires on a row when ``|code| > activity_threshold`` (see
        :func:`latent_density`).

    Returns
    -------
    fraction : float
        In ``[0, 1]``.

    See Also
    --------
    skconcepts.metrics.dead_fraction : latents that never fire.

    Examples
    --------
    >>> from skconcepts.metrics import dense_fraction
    >>> codes = [[1.0, 0.0, 0.0], [1.0, 2.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 5.0]]
    >>> dense_fraction(codes, threshold=0.5)
    0.3333333333333333
    """
    return _dense_share(latent_density(codes, threshold=activity_threshold), threshold)


# ---------------------------------------------------------------- probing
def _check_ks(ks, n_latents):
    if isinstance(ks, numbers.Integral):
        ks = (ks,)
    try:
        ks = [k for k in ks]
    except TypeError:
        raise ValueError(
            f"ks must be a sequence of positive integers; got {ks!r}."
        ) from None
    bad = [k for k in ks if not isinstance(k, numbers.Integral) or isinstance(k, bool)]
    if not ks or bad or min(ks) < 1:
        raise ValueError(f"ks must be a sequence of positive integers; got {ks!r}.")
    if max(ks) > n_latents:
        raise ValueError(
            f"k={max(ks)} is larger than the number of latents ({n_latents}); "
            f"use ks of at most {n_latents}."
        )
    return np.array(sorted(set(int(k) for k in ks)))


def _balanced(is_pos, rng):
    """Row indices with as many positives as negatives (SAEBench's split)."""
    pos, neg = np.flatnonzero(is_pos), np.flatnonzero(~is_pos)
    m = min(pos.size, neg.size)
    if pos.size > m:
        pos = rng.choice(pos, m, replace=False)
    if neg.size > m:
        neg = rng.choice(neg, m, replace=False)
    return np.sort(np.concatenate([pos, neg]))


def k_sparse_probing(
    codes_train,
    y_train,
    codes_test,
    y_test,
    *,
    ks=DEFAULT_KS,
    probe=None,
    balance=True,
    random_state=None,
):
    """k-sparse probing: held-out accuracy of a probe on the k best latents.

    SAEBench's sparse probing (Karvonen et al. 2025; Gurnee et al. 2023) on
    stored labels. For each task, one-vs-rest:

    1. With ``balance`` (SAEBench's procedure) the training and the test
       rows are subsampled to as many rows of the class as of the other
       classes (chance is then 0.5).
    2. The latents are ranked on the *training* rows by the absolute
       difference of their mean code on the class and off it,
       ``|mean(z_j | y = c) - mean(z_j | y != c)|`` (absolute, so a latent
       whose code drops on the class counts as much as one that rises: signed
       codes work).
    3. For each ``k`` a fresh probe (default: scikit-learn's
       ``LogisticRegression``, L2, ``C=1``, as SAEBench) is fitted on the
       top ``k`` latents of the training rows, and its accuracy on the test
       rows is recorded.

    Binary ``y``: one task (the second class against the first; the other
    direction is the same problem). More classes: one task per class, and
    ``accuracy`` is the mean over the tasks, as SAEBench averages over its
    classes.

    Parameters
    ----------
    codes_train : array-like of shape (n_train, n_latents)
        Codes of the training rows.
    y_train : array-like of shape (n_train,)
        Their labels (at least two classes).
    codes_test : array-like of shape (n_test, n_latents)
        Codes of the held-out rows.
    y_test : array-like of shape (n_test,)
        Their labels (classes seen in ``y_train``).
    ks : sequence of int, default=(1, 2, 5, 10, 20)
        Numbers of latents, each at most ``n_latents``.
    probe : classifier or None, default=None
        An unfitted scikit-learn classifier, cloned for every task and k;
        None: ``LogisticRegression(max_iter=1000)``.
    balance : bool, default=True
        Balance each one-vs-rest task by subsampling (SAEBench). False: all
        rows (accuracy is then to be read against the majority share).
    random_state : int, RandomState instance or None, default=None
        Seeds the balancing subsamples.

    Returns
    -------
    result : dict
        ``"k"`` (ndarray of the sorted ks), ``"accuracy"`` (mean test
        accuracy over the tasks, one per k), ``"task_accuracy"`` (ndarray of
        shape (n_tasks, n_ks)), ``"tasks"`` (the class of each task),
        ``"latents"`` (ndarray of shape (n_tasks, max(ks)): the ranked
        latents of each task) and ``"chance"`` (0.5 with ``balance``, else
        the mean majority share of the test tasks).

    Raises
    ------
    ValueError
        Codes with different numbers of latents, lengths that do not match,
        ``y_train`` with one class, a test class absent from training, a
        class with no test row, or a ``k`` larger than the number of latents.

    References
    ----------
    A. Karvonen et al., "SAEBench: A Comprehensive Benchmark for Sparse
    Autoencoders in Language Model Interpretability", ICML 2025.
    W. Gurnee et al., "Finding Neurons in a Haystack: Case Studies with
    Sparse Probing", TMLR 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import k_sparse_probing
    >>> rng = np.random.RandomState(0)
    >>> y = rng.randint(0, 2, 400)
    >>> codes = rng.rand(400, 8)
    >>> codes[:, 5] += 2 * y  # latent 5 carries the label
    >>> res = k_sparse_probing(codes[:300], y[:300], codes[300:], y[300:],
    ...                        ks=(1, 2), random_state=0)
    >>> int(res["latents"][0, 0]), res["accuracy"].tolist()
    (5, [1.0, 1.0])
    """
    Ctr = _codes(codes_train, "codes_train")
    Cte = _codes(codes_test, "codes_test")
    if Ctr.shape[1] != Cte.shape[1]:
        raise ValueError(
            f"codes_train and codes_test must have the same number of latents; "
            f"got {Ctr.shape[1]} and {Cte.shape[1]}."
        )
    y_train = column_or_1d(y_train)
    y_test = column_or_1d(y_test)
    for name, C, y in (("train", Ctr, y_train), ("test", Cte, y_test)):
        if C.shape[0] != y.shape[0]:
            raise ValueError(
                f"codes_{name} has {C.shape[0]} rows but y_{name} has "
                f"{y.shape[0]} labels; give one label per row."
            )
    classes = np.unique(y_train)
    if classes.size < 2:
        raise ValueError(
            f"y_train has a single class ({classes.tolist()}); probing needs at "
            "least two classes."
        )
    unseen = np.setdiff1d(np.unique(y_test), classes)
    if unseen.size:
        raise ValueError(
            f"y_test has classes not in y_train: {unseen.tolist()}; the probes "
            "only know the training classes."
        )
    ks = _check_ks(ks, Ctr.shape[1])
    probe = LogisticRegression(max_iter=1000) if probe is None else probe
    if not (hasattr(probe, "fit") and hasattr(probe, "predict")):
        raise TypeError(f"probe must be a scikit-learn classifier; got {probe!r}.")
    rng = check_random_state(random_state)
    tasks = classes[1:] if classes.size == 2 else classes
    acc = np.empty((tasks.size, ks.size))
    ranked = np.empty((tasks.size, ks.max()), dtype=np.intp)
    chance = []
    for t, c in enumerate(tasks):
        pos_tr, pos_te = y_train == c, y_test == c
        if not pos_te.any() or pos_te.all():
            what = "has no row" if not pos_te.any() else "is the only class"
            raise ValueError(
                f"class {c!r} {what} in y_test; every class needs rows on and "
                "off it in the test set."
            )
        tr = _balanced(pos_tr, rng) if balance else np.arange(y_train.size)
        te = _balanced(pos_te, rng) if balance else np.arange(y_test.size)
        Xtr, ytr, Xte, yte = Ctr[tr], pos_tr[tr], Cte[te], pos_te[te]
        diff = np.abs(
            Xtr[ytr].mean(axis=0, dtype=np.float64)
            - Xtr[~ytr].mean(axis=0, dtype=np.float64)
        )
        order = np.argsort(-diff, kind="stable")
        ranked[t] = order[: ks.max()]
        for j, k in enumerate(ks):
            cols = order[:k]
            model = clone(probe).fit(Xtr[:, cols], ytr)
            acc[t, j] = np.mean(model.predict(Xte[:, cols]) == yte)
        chance.append(max(yte.mean(), 1 - yte.mean()))
    return {
        "k": ks,
        "accuracy": acc.mean(axis=0),
        "task_accuracy": acc,
        "tasks": tasks,
        "latents": ranked,
        "chance": float(np.mean(chance)),
    }


# ---------------------------------------------------------------- stability
def cross_seed_stability(
    estimator, X, *, n_seeds=3, random_state=None, return_scores=False
):
    """Stability of a dictionary across seeds: matched cosine of refits.

    Clones of ``estimator`` are fitted on ``X`` with ``n_seeds`` different
    ``random_state`` (child seeds of ``random_state``), and every pair of
    their ``components_`` is scored with :func:`dictionary_stability` (mean
    cosine of the atoms matched one to one by the Hungarian algorithm). 1
    means every seed finds the same dictionary up to a permutation; an SAE
    whose atoms depend on the initialisation scores lower.

    Parameters
    ----------
    estimator : estimator with ``random_state`` and ``components_``
        An extractor (fitted or not: only its parameters are used).
    X : array-like of shape (n_samples, n_features)
        Training data of the refits.
    n_seeds : int, default=3
        Number of refits (at least 2).
    random_state : int, RandomState instance or None, default=None
        Seeds the seeds of the refits.
    return_scores : bool, default=False
        Also return the score of every pair.

    Returns
    -------
    stability : float
        Mean pairwise matched cosine, in ``[-1, 1]``.
    scores : ndarray of shape (n_seeds * (n_seeds - 1) / 2,)
        Only with ``return_scores``: the pairs' scores, in the order
        (0, 1), (0, 2), ..., (1, 2), ...

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from skconcepts.metrics import cross_seed_stability
    >>> X = np.random.RandomState(0).rand(100, 5)
    >>> round(cross_seed_stability(PCA(3), X, random_state=0), 6)
    1.0
    """
    if "random_state" not in estimator.get_params():
        raise TypeError(
            f"{type(estimator).__name__} has no random_state parameter; "
            "cross-seed stability refits it with several seeds."
        )
    if not isinstance(n_seeds, numbers.Integral) or n_seeds < 2:
        raise ValueError(f"n_seeds must be an integer >= 2; got {n_seeds!r}.")
    dictionaries = []
    for seed in spawn_seeds(random_state, n_seeds):
        fitted = clone(estimator).set_params(random_state=seed).fit(X)
        dictionaries.append(np.asarray(fitted.components_))
    scores = np.array(
        [
            dictionary_stability(dictionaries[i], dictionaries[j])
            for i in range(n_seeds)
            for j in range(i + 1, n_seeds)
        ]
    )
    score = float(scores.mean())
    return (score, scores) if return_scores else score


# ---------------------------------------------------------------- the table
def _rows(X, name):
    """A 2-D array whose row slices are read batch by batch (memmaps).

    NumPy arrays (memmaps included) are kept as they are; anything else (a
    list, a DataFrame) is converted with ``check_array``.
    """
    if not isinstance(X, np.ndarray):
        X = check_array(X, dtype=[np.float64, np.float32], input_name=name)
    if len(X.shape) != 2 or X.shape[0] < 1:
        raise ValueError(
            f"{name} must be a non-empty 2-D array (n_samples, n_features); got "
            f"shape {tuple(X.shape)}."
        )
    return X


def _stream(estimator, X, batch_size, activity_threshold, keep_codes=False):
    """One pass: the streamed R^2, per-latent firing counts (and the codes)."""
    import torch

    acc = R2Accumulator("cpu")
    fired = None
    kept = []
    for start in range(0, X.shape[0], batch_size):
        xb = check_array(np.asarray(X[start : start + batch_size]), input_name="X")
        codes = np.asarray(estimator.transform(xb))
        x_hat = np.asarray(estimator.inverse_transform(codes))
        if x_hat.shape != xb.shape:
            raise ValueError(
                f"inverse_transform returned shape {x_hat.shape} for a batch of "
                f"shape {xb.shape}; the estimator must reconstruct its input."
            )
        with torch.no_grad():
            acc.update(to_tensor(xb, "cpu"), to_tensor(x_hat, "cpu"))
        count = np.count_nonzero(np.abs(codes) > activity_threshold, axis=0)
        fired = count if fired is None else fired + count
        if keep_codes:
            kept.append(codes)
    codes = np.concatenate(kept) if keep_codes else None
    return acc, fired / X.shape[0], codes


def _split_probe_rows(X, y, X_test, y_test, test_size, seed):
    if y is None:
        if y_test is not None:
            raise ValueError("y_test was given without y; pass the labels of X too.")
        return None
    if X_test is not None and y_test is None:
        raise ValueError(
            "X_test was given with y but without y_test; pass the test labels, or "
            "leave X_test out to split X with test_size."
        )
    if X_test is None and y_test is not None:
        raise ValueError("y_test was given without X_test; pass both or neither.")
    y = column_or_1d(y)
    if y.shape[0] != X.shape[0]:
        raise ValueError(
            f"X has {X.shape[0]} rows but y has {y.shape[0]} labels; give one "
            "label per row."
        )
    if np.unique(y).size < 2:
        raise ValueError(
            f"y has a single class ({np.unique(y).tolist()}); probing needs at "
            "least two classes."
        )
    if X_test is None:
        tr, te = train_test_split(
            np.arange(X.shape[0]), test_size=test_size, stratify=y, random_state=seed
        )
        return np.sort(tr), y[np.sort(tr)], np.sort(te), y[np.sort(te)]
    y_test = column_or_1d(y_test)
    if y_test.shape[0] != X_test.shape[0]:
        raise ValueError(
            f"X_test has {X_test.shape[0]} rows but y_test has {y_test.shape[0]} "
            "labels; give one label per row."
        )
    return None, y, None, y_test


def evaluate_sae(
    estimator,
    X,
    y=None,
    *,
    X_test=None,
    y_test=None,
    test_size=0.25,
    ks=None,
    probe=None,
    dense_threshold=0.1,
    activity_threshold=0.0,
    true_codes=None,
    true_directions=None,
    n_seeds=None,
    batch_size=None,
    random_state=None,
    return_details=False,
):
    """Evaluate a fitted SAE (or any concept extractor) the way the field does.

    Works for any fitted estimator with ``transform`` and
    ``inverse_transform``: the SAEs of this package, an SAE read with
    :func:`skconcepts.sae.load_pretrained`, the NMF family, scikit-learn's
    ``PCA`` (signed codes). The reconstruction and firing scores are
    computed in one pass over the evaluation rows (``X_test`` when given,
    else ``X``) in batches of ``batch_size`` rows, with the package's
    streamed R² (:class:`~skconcepts._stats.R2Accumulator`), so ``X`` may be
    a memmap larger than memory.

    Columns of the table (one row, the estimator):

    - ``estimator``, ``n_rows`` (evaluation rows), ``n_latents``;
    - ``fvu`` (:func:`fraction_variance_unexplained`, dataset-level) and
      ``explained_variance`` (``1 - fvu``);
    - ``l0`` (mean number of active latents per row), ``dead_fraction``,
      ``dense_fraction`` (latents active on more than ``dense_threshold`` of
      the rows);
    - with ``y``: ``probe_accuracy_k{k}`` for every k
      (:func:`k_sparse_probing` on a stratified split of ``X``, or on
      ``X`` / ``X_test`` when both labels are given) and ``probe_chance``;
    - with ``true_codes`` (synthetic data with known features, e.g.
      :func:`skconcepts.datasets.make_hierarchical_features`):
      ``feature_mcc`` (:func:`feature_mcc`, Hungarian-matched correlation
      of codes and true activations) and ``feature_f1`` (:func:`feature_f1`,
      each true feature's best detecting latent, mean over the features);
      with ``true_directions`` too, ``feature_f1_decoder`` (SynthSAEBench's
      F1: latents paired with features by decoder cosine, mean over the
      latents);
    - with ``n_seeds``: ``stability`` (:func:`cross_seed_stability`,
      refitting clones on ``X``).

    Parameters
    ----------
    estimator : fitted estimator
        With ``transform`` and ``inverse_transform``.
    X : array-like of shape (n_samples, n_features)
        Activations (a NumPy array or memmap is read batch by batch).
    y : array-like of shape (n_samples,), default=None
        Labels of ``X`` for the k-sparse probing; None: no probing.
    X_test : array-like of shape (n_test, n_features), default=None
        Held-out activations: the reconstruction and firing scores are
        computed on them, and with ``y_test`` they are the probing test set.
    y_test : array-like of shape (n_test,), default=None
        Labels of ``X_test``.
    test_size : float or int, default=0.25
        Share (or number) of the rows of ``X`` held out for the probing test
        set when ``X_test`` is not given (stratified split).
    ks : sequence of int or None, default=None
        Numbers of latents of the probes; None: those of (1, 2, 5, 10, 20)
        not larger than the number of latents.
    probe : classifier or None, default=None
        See :func:`k_sparse_probing`.
    dense_threshold : float, default=0.1
        Firing frequency above which a latent is dense.
    activity_threshold : float, default=0.0
        A latent is active on a row when ``|code| > activity_threshold``.
    true_codes : array-like of shape (n_eval, n_true), default=None
        True feature activations of the evaluation rows (``X_test`` when
        given, else ``X``), non-zero where a feature fires.
    true_directions : array-like of shape (n_true, n_features), default=None
        True feature directions, for ``feature_f1_decoder`` (needs
        ``true_codes`` and the estimator's ``components_``).
    n_seeds : int or None, default=None
        Refits for the cross-seed stability (at least 2; costs ``n_seeds``
        fits); None: not computed.
    batch_size : int or None, default=None
        Rows per pass; None: a batch of ``X``, its codes and its
        reconstruction in a quarter of scikit-learn's ``working_memory``
        (:func:`sklearn.get_config`), as the extractors' ``transform``.
    random_state : int, RandomState instance or None, default=None
        Seeds the probing split, the balancing and the refits.
    return_details : bool, default=False
        Also return the per-latent density and the probing result.

    Returns
    -------
    table : dict of lists
        Column name -> a list of one value; ``pandas.DataFrame(table)`` is a
        one-row table, and the tables of several SAEs concatenate.
    details : dict
        Only with ``return_details``: ``"latent_density"`` (ndarray of shape
        (n_latents,)) and ``"probing"`` (the :func:`k_sparse_probing`
        result, or None without ``y``).

    Raises
    ------
    TypeError
        An estimator without ``transform`` / ``inverse_transform``.
    ValueError
        An unfitted estimator, labels whose length does not match the rows,
        a single class, a k larger than the number of latents.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from skconcepts.metrics import evaluate_sae
    >>> rng = np.random.RandomState(0)
    >>> X, y = rng.randn(300, 6), rng.randint(0, 2, 300)
    >>> X[:, 0] += 3 * y
    >>> table = evaluate_sae(PCA(4).fit(X), X, y, ks=(1, 2), random_state=0)
    >>> table["l0"], table["dense_fraction"]  # signed codes: every latent fires
    ([4.0], [1.0])
    >>> bool(table["probe_accuracy_k1"][0] > 0.9)  # the latent along X[:, 0]
    True
    """
    for method in ("transform", "inverse_transform"):
        if not callable(getattr(estimator, method, None)):
            raise TypeError(
                f"{type(estimator).__name__} has no {method}; evaluate_sae needs a "
                "fitted extractor that encodes and reconstructs."
            )
    check_is_fitted(estimator)
    X = _rows(X, "X")
    if X_test is not None:
        X_test = _rows(X_test, "X_test")
        if X_test.shape[1] != X.shape[1]:
            raise ValueError(
                f"X_test has {X_test.shape[1]} features but X has {X.shape[1]}."
            )
    dense_threshold = _check_fraction(dense_threshold, "dense_threshold")
    if not (isinstance(activity_threshold, numbers.Real) and activity_threshold >= 0):
        raise ValueError(
            f"activity_threshold must be a non-negative number; got "
            f"{activity_threshold!r}."
        )
    if batch_size is None:
        # a batch of X, its codes and its reconstruction within the package's
        # share of scikit-learn's working_memory (as transform batches)
        n_latents_hint = getattr(getattr(estimator, "components_", None), "shape", (0,))
        batch_size = default_batch_size(2 * X.shape[1] + int(n_latents_hint[0]))
    if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    split_seed, probe_seed, refit_seed = spawn_seeds(random_state, 3)
    split = _split_probe_rows(X, y, X_test, y_test, test_size, split_seed)

    X_eval = X if X_test is None else X_test
    if true_codes is not None:
        true_codes = check_array(
            true_codes, dtype=[np.float64, np.float32], input_name="true_codes"
        )
        if true_codes.shape[0] != X_eval.shape[0]:
            raise ValueError(
                f"true_codes has {true_codes.shape[0]} rows but the evaluation rows "
                f"({'X_test' if X_test is not None else 'X'}) are "
                f"{X_eval.shape[0]}; give the true activations of those rows."
            )
    elif true_directions is not None:
        raise ValueError("true_directions needs true_codes (the true activations).")
    acc, density, eval_codes = _stream(
        estimator,
        X_eval,
        int(batch_size),
        activity_threshold,
        keep_codes=true_codes is not None,
    )
    n_latents = density.size
    table = {
        "estimator": [type(estimator).__name__],
        "n_rows": [int(X_eval.shape[0])],
        "n_latents": [int(n_latents)],
        "fvu": [1.0 - acc.score()],
        "explained_variance": [acc.score()],
        "l0": [float(density.sum())],
        "dead_fraction": [float(np.mean(density == 0))],
        "dense_fraction": [_dense_share(density, dense_threshold)],
    }

    probing = None
    if split is not None:
        tr, y_tr, te, y_te = split
        if ks is None:
            ks = [k for k in DEFAULT_KS if k <= n_latents]
        if tr is None:  # X / X_test with their labels
            codes_tr = np.asarray(estimator.transform(np.asarray(X)))
            codes_te = np.asarray(estimator.transform(np.asarray(X_test)))
        else:
            codes_tr = np.asarray(estimator.transform(np.asarray(X[tr])))
            codes_te = np.asarray(estimator.transform(np.asarray(X[te])))
        probing = k_sparse_probing(
            codes_tr, y_tr, codes_te, y_te, ks=ks, probe=probe, random_state=probe_seed
        )
        for k, a in zip(probing["k"], probing["accuracy"], strict=True):
            table[f"probe_accuracy_k{k}"] = [float(a)]
        table["probe_chance"] = [probing["chance"]]

    if true_codes is not None:
        table["feature_mcc"] = [feature_mcc(true_codes, eval_codes)]
        table["feature_f1"] = [
            feature_f1(true_codes, eval_codes, threshold=activity_threshold)
        ]
        if true_directions is not None:
            if not hasattr(estimator, "components_"):
                raise ValueError(
                    f"{type(estimator).__name__} has no components_ (decoder rows); "
                    "feature_f1_decoder pairs them with true_directions."
                )
            table["feature_f1_decoder"] = [
                feature_f1(
                    true_codes,
                    eval_codes,
                    matching="decoder",
                    directions=true_directions,
                    decoder=estimator.components_,
                    threshold=activity_threshold,
                )
            ]

    if n_seeds is not None:
        table["stability"] = [
            cross_seed_stability(
                estimator, np.asarray(X), n_seeds=n_seeds, random_state=refit_seed
            )
        ]
    if return_details:
        return table, {"latent_density": density, "probing": probing}
    return table
