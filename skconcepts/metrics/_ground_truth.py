"""Ground-truth scores of sparse codes on synthetic data with known features.

Identifiability (:func:`feature_mcc`), detection (:func:`feature_f1`) and
feature absorption (:func:`absorption_score`), for codes of any extractor on
data whose true feature activations are known, e.g.
:func:`skconcepts.datasets.make_hierarchical_features`.
"""

import numpy as np
from sklearn.utils.validation import check_array

__all__ = ["absorption_score", "feature_f1", "feature_mcc"]

_EPS = 1e-8


def _pair(true_codes, codes):
    true_codes = check_array(
        true_codes, dtype=[np.float64, np.float32], input_name="true_codes"
    )
    codes = check_array(codes, dtype=[np.float64, np.float32], input_name="codes")
    if true_codes.shape[0] != codes.shape[0]:
        raise ValueError(
            "true_codes and codes must have one row per sample, the same "
            f"samples; got {true_codes.shape[0]} and {codes.shape[0]} rows."
        )
    if true_codes.shape[0] < 2:
        raise ValueError(
            f"need at least 2 samples to compare codes; got {true_codes.shape[0]}."
        )
    return true_codes, codes


def _standardised(A):
    A = A.astype(np.float64)
    A = A - A.mean(axis=0)
    norms = np.linalg.norm(A, axis=0)
    return A / np.where(norms > 0, norms, np.inf)  # constant columns -> 0


def feature_mcc(true_codes, codes, *, return_matching=False):
    """Mean correlation coefficient of codes matched one to one to true features.

    The Pearson correlation of every true feature's activation with every
    latent's code is computed over the samples, and true features and
    latents are matched one to one by the Hungarian algorithm
    (:func:`scipy.optimize.linear_sum_assignment`) maximising the total
    absolute correlation; the score is the mean absolute correlation of the
    matched pairs, averaged over the true features (a true feature left
    without a latent, when there are fewer latents than features, counts 0).
    This is the MCC of the identifiability literature (Hyvärinen and Morioka
    2016; Khemakhem et al. 2020) applied to SAE codes. It is invariant to a
    permutation and to a positive or negative rescaling of the latents; a
    constant (dead) code has correlation 0 with everything.

    SynthSAEBench reports an MCC of the *decoder directions* instead (the
    same matching on absolute cosines between decoder rows and true
    directions); for that, see
    :func:`skconcepts.metrics.dictionary_stability`.

    Parameters
    ----------
    true_codes : array-like of shape (n_samples, n_true)
        True feature activations.
    codes : array-like of shape (n_samples, n_latents)
        Codes of the same samples (e.g. an SAE's ``transform``).
    return_matching : bool, default=False
        Also return the matched pairs.

    Returns
    -------
    mcc : float
        In ``[0, 1]``; 1 when every true feature has a latent perfectly
        correlated with it.
    rows, cols, correlations : ndarrays
        Only when ``return_matching``: true feature ``rows[i]`` is matched
        with latent ``cols[i]`` at signed correlation ``correlations[i]``.

    References
    ----------
    A. Hyvärinen, H. Morioka, "Unsupervised Feature Extraction by
    Time-Contrastive Learning and Nonlinear ICA", NeurIPS 2016.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import feature_mcc
    >>> rng = np.random.RandomState(0)
    >>> true = rng.exponential(size=(50, 3))
    >>> feature_mcc(true, 2.0 * true[:, ::-1])
    1.0
    """
    from scipy.optimize import linear_sum_assignment

    true_codes, codes = _pair(true_codes, codes)
    corr = _standardised(true_codes).T @ _standardised(codes)
    rows, cols = linear_sum_assignment(np.abs(corr), maximize=True)
    matched = corr[rows, cols]
    score = float(np.abs(matched).sum() / true_codes.shape[1])
    return (score, rows, cols, matched) if return_matching else score


def _f1_matrix(true_fires, fires):
    """F1 of every latent's firing as a detector of every true feature."""
    tp = true_fires.T.astype(np.float64) @ fires.astype(np.float64)
    total = true_fires.sum(axis=0)[:, None] + fires.sum(axis=0)[None, :]
    return np.divide(2 * tp, total, out=np.zeros_like(tp), where=total > 0)


def _directions(directions, decoder, n_true, n_latents):
    directions = check_array(
        directions, dtype=[np.float64, np.float32], input_name="directions"
    ).astype(np.float64)
    decoder = check_array(
        decoder, dtype=[np.float64, np.float32], input_name="decoder"
    ).astype(np.float64)
    if directions.shape[0] != n_true or decoder.shape[0] != n_latents:
        raise ValueError(
            "directions must have one row per true feature and decoder one row "
            f"per latent: expected ({n_true}, d) and ({n_latents}, d), got "
            f"{directions.shape} and {decoder.shape}."
        )
    if directions.shape[1] != decoder.shape[1]:
        raise ValueError(
            "directions and decoder must live in the same space (same number of "
            f"columns); got {directions.shape[1]} and {decoder.shape[1]}."
        )
    return directions, decoder


def _unit(A):
    norms = np.linalg.norm(A, axis=1, keepdims=True)
    return A / np.where(norms > 0, norms, 1.0)


def feature_f1(
    true_codes,
    codes,
    *,
    matching="best",
    directions=None,
    decoder=None,
    threshold=0.0,
    return_scores=False,
):
    """F1 of latents as detectors of true features (SynthSAEBench's F1).

    A true feature *fires* where its activation is positive, a latent where
    ``|code| > threshold``. The F1 of a latent for a feature is the harmonic
    mean of the precision and recall of the latent's firing as a predictor
    of the feature's firing over the samples, ``2 TP / (2 TP + FP + FN)``.
    Three ways to pair latents with features:

    - ``"best"``: every true feature takes the latent with the highest F1
      (several features may share a latent); mean over the true features;
    - ``"hungarian"``: true features and latents matched one to one,
      maximising the total F1 (:func:`scipy.optimize.linear_sum_assignment`);
      mean over the true features, an unmatched feature counting 0;
    - ``"decoder"``: SynthSAEBench's definition (Chanin et al. 2026; SAELens
      ``ClassificationMetricsCalculator``): every latent is paired with the
      true feature whose direction has the largest absolute cosine with the
      latent's decoder row, and the F1 is averaged over the *latents* (a
      dead latent counts 0). Needs ``directions`` and ``decoder``.

    Parameters
    ----------
    true_codes : array-like of shape (n_samples, n_true)
        True feature activations (non-zero where a feature fires).
    codes : array-like of shape (n_samples, n_latents)
        Codes of the same samples (e.g. an SAE's ``transform``).
    matching : {"best", "hungarian", "decoder"}, default="best"
        How latents and features are paired, see above.
    directions : array-like of shape (n_true, n_features), default=None
        True feature directions; only for ``matching="decoder"``.
    decoder : array-like of shape (n_latents, n_features), default=None
        Decoder rows of the latents (e.g. ``components_``); only for
        ``matching="decoder"``.
    threshold : float, default=0.0
        A latent fires where the absolute value of its code exceeds it.
    return_scores : bool, default=False
        Also return the per-feature (per-latent for ``"decoder"``) scores and
        the pairing.

    Returns
    -------
    f1 : float
        Mean F1, in ``[0, 1]``.
    scores : ndarray of shape (n_true,) or (n_latents,)
        Only when ``return_scores``: the F1 of each true feature (of each
        latent for ``"decoder"``).
    matches : ndarray of shape (n_true,) or (n_latents,)
        Only when ``return_scores``: the latent paired with each true
        feature (-1 when none), or for ``"decoder"`` the true feature paired
        with each latent.

    References
    ----------
    D. Chanin, T. Dulka, A. Garriga-Alonso, "SynthSAEBench: Evaluating Sparse
    Autoencoders on Scalable Realistic Synthetic Data", arXiv:2602.14687,
    2026.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import feature_f1
    >>> true = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 0.0]])
    >>> feature_f1(true, 3.0 * true[:, ::-1])
    1.0
    >>> f1, scores, matches = feature_f1(
    ...     true, true[:, :1], matching="hungarian", return_scores=True)
    >>> f1, scores.tolist(), matches.tolist()
    (0.5, [1.0, 0.0], [0, -1])
    """
    if matching not in ("best", "hungarian", "decoder"):
        raise ValueError(
            f"matching must be 'best', 'hungarian' or 'decoder'; got {matching!r}."
        )
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0; got {threshold}.")
    true_codes, codes = _pair(true_codes, codes)
    f1 = _f1_matrix(true_codes != 0, np.abs(codes) > threshold)
    if matching == "decoder":
        if directions is None or decoder is None:
            raise ValueError(
                "matching='decoder' pairs latents with features by the cosine of "
                "their directions: pass directions= (true) and decoder= (e.g. "
                "components_)."
            )
        directions, decoder = _directions(directions, decoder, *f1.shape)
        matches = np.argmax(np.abs(_unit(decoder) @ _unit(directions).T), axis=1)
        scores = f1[matches, np.arange(f1.shape[1])]
    elif matching == "best":
        matches = np.argmax(f1, axis=1)
        scores = f1[np.arange(f1.shape[0]), matches]
    else:
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(f1, maximize=True)
        matches = np.full(f1.shape[0], -1, dtype=np.int64)
        matches[rows] = cols
        scores = np.zeros(f1.shape[0])
        scores[rows] = f1[rows, cols]
    score = float(scores.mean())
    return (score, scores, matches) if return_scores else score


def _check_parents(parents, n_true):
    parents = np.asarray(parents)
    if parents.shape != (n_true,) or not np.issubdtype(parents.dtype, np.integer):
        raise ValueError(
            "parents must be an integer array with one entry per true feature "
            f"(shape ({n_true},), -1 for a root); got shape {parents.shape} and "
            f"dtype {parents.dtype}."
        )
    if np.any((parents < -1) | (parents >= n_true)) or np.any(
        parents == np.arange(n_true)
    ):
        raise ValueError(
            "parents must hold the index of each feature's parent in "
            f"[0, {n_true}) or -1 for a root, and no feature may be its own parent."
        )
    return parents


def absorption_score(
    true_codes,
    codes,
    parents,
    directions,
    decoder,
    *,
    main_latents=None,
    cos_threshold=0.025,
    projection_threshold=0.4,
    return_scores=False,
):
    """Full feature absorption rate of a dictionary on hierarchical features.

    Chanin et al.'s *full absorption* criterion (2024; the
    ``mean_full_absorption_score`` of SAEBench), with the known feature
    hierarchy and directions in place of the first-letter probe. For every
    parent feature ``p`` (a feature that is some feature's parent):

    - its *main latent* is the latent whose decoder row has the largest
      cosine with the direction of ``p`` (the pairing of SynthSAEBench),
      unless ``main_latents`` gives it. (Not the best-F1 latent: under
      absorption a child's latent fires with the parent more often than the
      parent's own latent does);
    - the samples examined are those where ``p`` and at least one of its
      children fire (where a child could absorb it);
    - on such a sample, with ``a_j`` the code of latent ``j``, ``w_j`` its
      decoder row and ``d_p`` the unit direction of ``p``, latent ``j``
      contributes ``a_j <w_j, d_p>`` to the reconstruction along ``d_p``.
      The sample counts as *absorbed* when the main latent does not fire
      (``|a| <= 1e-8``), the latent with the largest contribution has
      ``cos(w_j, d_p) >= cos_threshold``, and that contribution is at least
      ``projection_threshold`` times the true activation of ``p`` (the
      ground truth takes the place of the probe projection);
    - the parent's score is the share of its examined samples that are
      absorbed.

    The score is the mean over the parents that have examined samples: 0
    when every parent latent keeps firing with its children, 1 when the
    children's latents always carry the parent's direction instead.

    Parameters
    ----------
    true_codes : array-like of shape (n_samples, n_true)
        True feature activations.
    codes : array-like of shape (n_samples, n_latents)
        Codes of the same samples.
    parents : array-like of shape (n_true,)
        Parent index of each true feature, -1 for a root (as returned by
        :func:`skconcepts.datasets.make_hierarchical_features`).
    directions : array-like of shape (n_true, n_features)
        True feature directions.
    decoder : array-like of shape (n_latents, n_features)
        Decoder rows of the latents, on the scale of ``codes``
        (``components_`` for the extractors of this package).
    main_latents : array-like of shape (n_true,), default=None
        Main latent of each feature (only the entries of parents are read);
        by default the latent whose decoder row is closest in cosine.
    cos_threshold : float, default=0.025
        Smallest cosine of the absorbing latent with the parent direction
        (SAEBench's default).
    projection_threshold : float, default=0.4
        Smallest share of the parent's activation that the absorbing latent
        must carry (SAEBench's default).
    return_scores : bool, default=False
        Also return the score of each feature.

    Returns
    -------
    score : float
        Mean absorption rate over the parents, in ``[0, 1]``; NaN when no
        parent co-fires with a child.
    scores : ndarray of shape (n_true,)
        Only when ``return_scores``: the absorption rate of each parent, NaN
        for features that are not parents or never co-fire with a child.

    References
    ----------
    D. Chanin, J. Wilken-Smith, T. Dulka, H. Bhatnagar, S. Golechha,
    J. Bloom, "A is for Absorption: Studying Feature Splitting and
    Absorption in Sparse Autoencoders", arXiv:2409.14507, 2024.

    A. Karvonen et al., "SAEBench: A Comprehensive Benchmark for Sparse
    Autoencoders in Language Model Interpretability", ICML 2025.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import absorption_score
    >>> directions = np.eye(2)  # feature 1 is a child of feature 0
    >>> true = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    >>> parents = np.array([-1, 0])
    >>> absorption_score(true, true, parents, directions, directions)
    0.0
    >>> absorbing = np.array([[1.0, 0.0], [0.0, 2**0.5], [0.0, 2**0.5]])
    >>> decoder = np.array([[1.0, 0.0], [2**-0.5, 2**-0.5]])
    >>> absorption_score(true, absorbing, parents, directions, decoder)
    1.0
    """
    true_codes, codes = _pair(true_codes, codes)
    n_true, n_latents = true_codes.shape[1], codes.shape[1]
    parents = _check_parents(parents, n_true)
    directions, decoder = _directions(directions, decoder, n_true, n_latents)
    if not 0 <= projection_threshold:
        raise ValueError(
            f"projection_threshold must be >= 0; got {projection_threshold}."
        )
    true_fires, fires = true_codes != 0, np.abs(codes) > _EPS
    unit_dirs = _unit(directions)
    if main_latents is None:
        main_latents = np.argmax(unit_dirs @ _unit(decoder).T, axis=1)
    else:
        main_latents = np.asarray(main_latents)
        if main_latents.shape != (n_true,) or np.any(
            (main_latents < 0) | (main_latents >= n_latents)
        ):
            raise ValueError(
                f"main_latents must hold one latent index in [0, {n_latents}) "
                f"per true feature (shape ({n_true},)); got {main_latents!r}."
            )
    scores = np.full(n_true, np.nan)
    for p in np.unique(parents[parents >= 0]):
        children = np.flatnonzero(parents == p)
        rows = np.flatnonzero(true_fires[:, p] & true_fires[:, children].any(axis=1))
        if rows.size == 0:
            continue
        along = decoder @ unit_dirs[p]  # <w_j, d_p>
        cos = along / np.maximum(np.linalg.norm(decoder, axis=1), _EPS)
        contribution = codes[rows] * along
        top = np.argmax(contribution, axis=1)
        top_value = contribution[np.arange(rows.size), top]
        absorbed = (
            ~fires[rows, main_latents[p]]
            & (cos[top] >= cos_threshold)
            & (top_value >= projection_threshold * np.abs(true_codes[rows, p]))
        )
        scores[p] = absorbed.mean()
    valid = scores[~np.isnan(scores)]
    score = float(valid.mean()) if valid.size else float("nan")
    return (score, scores) if return_scores else score
