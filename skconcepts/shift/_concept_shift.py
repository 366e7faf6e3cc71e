"""ConceptShift: per-concept shift vectors between an original and a changed model.

Khayatan, Shukor, Parekh, Dapogny and Cord (ICCV 2025, "Analyzing fine-tuning
representation shift for multimodal LLMs steering") cluster the hidden states
of an original model into concepts and describe what fine-tuning did to each
concept by a *shift vector*: the mean, over the samples of the concept, of
the change of their representation. Adding a concept's shift to the original
representations recovers the fine-tuned ones, and one shift added on its own
steers the model. Here the same computation is a scikit-learn multi-output
regressor on stored activations: ``fit(X, y)`` with ``X`` the activations of
some inputs through the original model and ``y`` (``Y`` in the formulas)
those of the same inputs through the changed model. The math is in
``docs/guide/shift.md``.
"""

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone, is_clusterer
from sklearn.cluster import KMeans
from sklearn.metrics import r2_score
from sklearn.utils import check_array

from .._backend import default_batch_size, gen_batches_idx, seed_from
from .._compat import (
    Integral,
    Interval,
    Real,
    StrOptions,
    _fit_context,
    check_is_fitted,
)
from .._extractors import MetaExtractorMixin, check_extractor_fitted
from .._faults import check_overflow
from .._io import memmap_face

__all__ = ["ConceptShift"]


def _r2_per_output(sse, sst):
    """Uniform average over outputs of ``1 - sse / sst`` (``r2_score``'s rule).

    An output with ``sst == 0`` scores 1.0 when predicted exactly, else 0.0,
    as :func:`sklearn.metrics.r2_score` does with ``force_finite=True``.
    """
    sse, sst = np.asarray(sse, float), np.asarray(sst, float)
    r2 = np.where(sse == 0.0, 1.0, 0.0)
    ok = sst > 0
    r2[ok] = 1.0 - sse[ok] / sst[ok]
    return float(r2.mean())


def _check_concept_extractor(extractor, prefit):
    """``TypeError`` unless ``extractor`` can give concept weights (and be fitted)."""
    if isinstance(extractor, type):
        raise TypeError(
            f"extractor must be an instance, not the class {extractor.__name__}; "
            f"pass {extractor.__name__}(...)."
        )
    name = f"extractor ({type(extractor).__name__} object)"
    clusterer = callable(getattr(extractor, "predict", None)) and is_clusterer(
        extractor
    )
    if not (
        clusterer
        or callable(getattr(extractor, "transform", None))
        or callable(getattr(extractor, "predict_proba", None))
    ):
        raise TypeError(
            f"{name} gives no concept weights: it needs transform (codes, e.g. "
            "NMFConcepts, TopKSAE, PCA), predict_proba (soft assignments, e.g. "
            "GaussianMixture) or, as a clusterer, predict and cluster_centers_ "
            "(KMeans)."
        )
    if not prefit and not callable(getattr(extractor, "fit", None)):
        raise TypeError(
            f"{name} has no fit (or pass prefit=True to use a fitted object as is)."
        )


def _weighted_median(V, w):
    """Coordinate-wise weighted median of the rows of ``V`` (weights ``w``)."""
    order = np.argsort(V, axis=0, kind="stable")
    cum = np.cumsum(w[order], axis=0)
    first = np.argmax(cum >= 0.5 * w.sum(), axis=0)
    return np.take_along_axis(V, order, axis=0)[first, np.arange(V.shape[1])]


def _cosine(a, b):
    """Row-wise cosine of ``a`` and ``b``; 1.0 where both rows are zero."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    den = na * nb
    out = np.where(np.linalg.norm(a - b, axis=1) == 0.0, 1.0, 0.0)
    ok = den > 0
    out[ok] = np.einsum("ij,ij->i", a[ok], b[ok]) / den[ok]
    return np.clip(out, -1.0, 1.0)


class ConceptShift(MetaExtractorMixin, RegressorMixin, BaseEstimator):
    """Concept-wise shift vectors from an original to a changed model.

    ``X`` holds the activations of some inputs through an original model and
    ``Y`` those of the *same inputs, row for row*, through a fine-tuned or
    otherwise changed model (Khayatan et al., 2025). Concepts are learnt on
    ``X`` by ``extractor`` (k-means by default, as the paper); every sample
    gets non-negative weights over the concepts, normalised to sum to one;
    each concept gets a *shift vector*, the weighted mean of ``Y - X`` over
    the samples it explains; and the changed activations of new inputs are
    predicted as ``X`` plus the weighted shifts of their concepts. The single
    mean shift (the same vector added to every sample) is the baseline the
    concept-wise shifts must beat (``baseline_score_``).

    With ``a_ik >= 0`` the codes of sample ``i`` and ``p_ik = a_ik / sum_j
    a_ij`` (0 when the sample has no positive code), ``d_i = y_i - x_i``:

    - ``shift_vectors_[k] = sum_i p_ik d_i / sum_i p_ik`` (the paper's
      ``Delta_k``: with k-means, the mean of ``Y - X`` over cluster ``k``);
    - ``mean_shift_ = mean_i d_i``;
    - ``predict(x) = x + sum_k p_k(x) shift_vectors_[k] + (1 - sum_k p_k(x))
      mean_shift_`` (a sample without any active concept gets the mean
      shift).

    Which weights: a clusterer with ``predict_proba`` (e.g.
    :class:`~sklearn.mixture.GaussianMixture`) gives its soft assignments; a
    clusterer with ``cluster_centers_`` and ``predict`` (``KMeans``,
    ``MiniBatchKMeans``) one-hot hard assignments; any other extractor
    (:class:`~skconcepts.NMFConcepts`, :class:`~skconcepts.TopKSAE`,
    ``PCA``, ...) the non-negative part of its ``transform`` codes, so a
    signed code counts only where it is positive (a PCA concept and its
    opposite are two different concepts; pass both signs as two columns if
    both matter).

    Parameters
    ----------
    extractor : estimator or None, default=None
        Learns the concepts on ``X``: ``None`` is
        ``KMeans(n_clusters=n_concepts, n_init=4)`` (the paper's choice);
        otherwise an estimator with ``fit`` and ``transform`` (as the other
        meta-estimators of skconcepts accept, no decoder needed), a
        clusterer as above, or with ``prefit=True`` a fitted object. It is
        cloned and fitted on ``X`` (never modified).
    n_concepts : int, default=8
        Number of clusters of the default k-means; unused when
        ``extractor`` is given.
    prefit : bool, default=False
        Use ``extractor`` as already fitted (not cloned, not refitted).
    mapping : {"identity", "linear"}, default="identity"
        How ``X`` is carried into ``Y``'s space before the shifts are
        measured. ``"identity"`` (the paper: the same layer of a model and of
        its fine-tuned copy): ``Y`` must have ``X``'s width and the shifts
        are those of ``Y - X``. ``"linear"``: ``X`` is first mapped by the
        least-squares affine map ``x A + b`` fitted on the training pairs
        (``Y`` may have another width, e.g. another layer or model), and the
        shifts are the concept-wise means of what that one map misses
        (``mean_shift_`` is then 0 and the baseline is the map itself).
    reference : {"median", "mean", "zero"}, default="median"
        The shift a concept is compared with to call it changed
        (``reference_shift_``): ``"median"``, the coordinate-wise median of
        the concepts' shift vectors weighted by ``concept_weights_`` (the
        common drift, when fewer than half of the samples' concepts moved
        differently); ``"mean"``, ``mean_shift_``; ``"zero"``, no shift at
        all (a concept moved by a common drift then counts as changed).
    threshold : float, default=3.0
        A concept is in ``changed_concepts_`` when its shift differs from
        ``reference_shift_`` by more than ``threshold`` standard errors
        (``shift_zscores_``, see Attributes).
    random_state : int, RandomState instance or None, default=None
        Seeds the default k-means.

    Attributes
    ----------
    extractor_ : estimator
        The fitted extractor.
    n_concepts_ : int
        Number of concepts (columns of the weights).
    n_features_in_ : int
        Width of ``X``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features of ``X`` when it has string column names.
    n_outputs_ : int
        Width of ``Y``.
    mapping_coef_ : ndarray of shape (n_features_in_, n_outputs_) or None
        ``A`` of the linear mapping; None with ``mapping="identity"``.
    mapping_intercept_ : ndarray of shape (n_outputs_,) or None
        ``b`` of the linear mapping; None with ``mapping="identity"``.
    shift_vectors_ : ndarray of shape (n_concepts_, n_outputs_)
        The shift vector of every concept; the mean shift for a concept that
        no training sample expresses.
    mean_shift_ : ndarray of shape (n_outputs_,)
        The single mean shift (the baseline).
    shift_magnitudes_ : ndarray of shape (n_concepts_,)
        ``||shift_vectors_[k]||``.
    concept_weights_ : ndarray of shape (n_concepts_,)
        ``sum_i p_ik`` on the training data: the number of samples a concept
        explains (its cluster size with k-means).
    reference_shift_ : ndarray of shape (n_outputs_,)
        The shift of ``reference`` that every concept is compared with.
    shift_zscores_ : ndarray of shape (n_concepts_,)
        ``||shift_vectors_[k] - reference_shift_|| / se_k``, the differential
        shift of concept ``k`` over its standard error, ``se_k^2 = sum_i
        c_ik^2 ||r_i||^2`` with ``r_i`` the residual of the fitted shifts on
        sample ``i`` and ``c_ik = p_ik / sum_j p_jk`` (``- 1 / n`` with
        ``reference="mean"``, whose contrast includes the mean's error): about
        1 or below when the concept moves like the reference, large when it
        moves differently; 0 for a concept that no training sample
        expresses. A conservative test: under no difference, ``z^2`` is about
        a chi-square over its degrees of freedom, so ``z > 3`` has
        probability at most 0.27% (one degree of freedom) and less in more
        dimensions.
    changed_concepts_ : ndarray of int
        Indices of the concepts with ``shift_zscores_ > threshold``, in
        increasing order: the concepts whose shift is not the reference one.
    concept_means_ : ndarray of shape (n_concepts_, n_features_in_)
        ``p``-weighted mean of ``X`` per concept (the k-means centroids).
    target_concept_means_ : ndarray of shape (n_concepts_, n_outputs_)
        ``p``-weighted mean of ``Y`` per concept: the concept in the changed
        model (with ``"identity"``, ``concept_means_ + shift_vectors_``, the
        paper's shifted concept).
    concept_alignment_ : ndarray of shape (n_concepts_,)
        Cosine between the concept's direction before and after, both taken
        from the centre of the original data and with the reference drift
        removed: ``cos(a_k, a_k + shift_vectors_[k] - reference_shift_)``
        with ``a_k = c_k - c`` the concept's mean in ``X`` minus the mean of
        all of ``X`` (mapped by ``A`` with ``"linear"``). 1 when the concept
        moves like the reference; NaN for a concept that no training sample
        expresses.
    shift_consistency_ : ndarray of shape (n_concepts_,)
        ``p``-weighted mean cosine between the samples' own shifts ``d_i``
        and their concept's shift vector (the paper's shift consistency): 1
        when every sample of the concept moves the same way.
    shift_r2_ : float
        R^2 of the predicted shifts against ``Y - X`` on the training data,
        ``1 - sum ||r_i||^2 / sum ||d_i - mean_shift_||^2`` (the mean shift
        scores 0).
    train_score_ : float
        :meth:`score` on the training data.
    baseline_score_ : float
        :meth:`baseline_score` (the mean shift) on the training data.

    See Also
    --------
    skconcepts.NMFConcepts : Non-negative concepts to use as extractor.
    skconcepts.TopKSAE : Sparse-autoencoder concepts to use as extractor.

    Notes
    -----
    The paper compares the shifted concepts with the concepts learnt on the
    fine-tuned model and reports the magnitude and the consistency of each
    shift; ``shift_zscores_``, ``changed_concepts_`` and the least-squares
    ``mapping`` are this implementation's additions (documented in
    ``docs/guide/shift.md``). Everything is computed in float64 over row
    batches of ``X`` and ``Y`` (memmaps are not loaded whole); the weights
    ``p`` (``n_samples x n_concepts``) are held in memory.

    References
    ----------
    P. Khayatan, M. Shukor, J. Parekh, A. Dapogny and M. Cord. Analyzing
    fine-tuning representation shift for multimodal LLMs steering. ICCV 2025
    (arXiv:2501.03012).

    Examples
    --------
    Three clusters of which only the second one moves:

    >>> import numpy as np
    >>> from skconcepts.shift import ConceptShift
    >>> rng = np.random.RandomState(0)
    >>> centres = 10.0 * np.eye(3)
    >>> X = np.repeat(centres, 50, axis=0) + rng.normal(size=(150, 3))
    >>> Y = X.copy()
    >>> Y[50:100] += [0.0, 0.0, 4.0]
    >>> shift = ConceptShift(n_concepts=3, random_state=0).fit(X, Y)
    >>> [int(np.argmax(shift.concept_means_[k])) for k in shift.changed_concepts_]
    [1]
    >>> bool(shift.train_score_ > shift.baseline_score_)
    True
    """

    _parameter_constraints: dict = {
        # checked in fit (_check_concept_extractor: a TypeError naming the need)
        "extractor": "no_validation",
        "n_concepts": [Interval(Integral, 1, None, closed="left")],
        "prefit": ["boolean"],
        "mapping": [StrOptions({"identity", "linear"})],
        "reference": [StrOptions({"median", "mean", "zero"})],
        "threshold": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        extractor=None,
        *,
        n_concepts=8,
        prefit=False,
        mapping="identity",
        reference="median",
        threshold=3.0,
        random_state=None,
    ):
        self.extractor = extractor
        self.n_concepts = n_concepts
        self.prefit = prefit
        self.mapping = mapping
        self.reference = reference
        self.threshold = threshold
        self.random_state = random_state

    # ---------------------------------------------------------------- tags
    def _extractor_for_tags(self):
        return self.extractor

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    # ---------------------------------------------------------- validation
    def _check_Y(self, X, Y, *, fit):
        """Validate ``Y`` against the validated ``X``; errors name both shapes.

        Returns ``Y`` as 2-D; ``fit`` records whether it was 1-D (``_y_1d``).
        """
        name = type(self).__name__
        if Y is None:
            raise ValueError(
                f"{name} requires y to be passed, but the target y is None: pass "
                "Y, the activations of the same inputs (the rows of X) through "
                "the changed model."
            )
        Y = check_array(
            memmap_face(Y),
            dtype=[np.float64, np.float32],
            ensure_2d=False,
            ensure_all_finite=True,
            input_name="Y",
        )
        one_d = Y.ndim == 1
        if one_d:  # one output, as scikit-learn's regressors accept
            Y = Y.reshape(-1, 1)
        if Y.shape[0] != X.shape[0]:
            raise ValueError(
                "X and Y have inconsistent numbers of samples: X has shape "
                f"{X.shape} and Y has shape {Y.shape}; they must hold the same "
                "inputs row for row (original and changed model)."
            )
        check_overflow(Y, name)
        width = X.shape[1] if fit else self.n_outputs_
        if fit and self.mapping == "identity" and Y.shape[1] != width:
            raise ValueError(
                f"mapping='identity' compares X and Y coordinate by coordinate, "
                f"so they need the same width, but X has shape {X.shape} and Y "
                f"has shape {Y.shape}. Pass the same layer of both models, or "
                "mapping='linear' to carry X into Y's space by least squares."
            )
        if not fit and Y.shape[1] != width:
            raise ValueError(
                f"Y has shape {Y.shape} but {name} was fitted on Y with "
                f"{width} columns (X has shape {X.shape})."
            )
        if fit:
            self._y_1d = one_d
        return Y

    # ------------------------------------------------------------ concepts
    def _fit_extractor(self, X):
        if self.extractor is None:
            ext = KMeans(
                n_clusters=self.n_concepts,
                n_init=4,
                random_state=seed_from(self.random_state),
            )
            return ext.fit(X)
        _check_concept_extractor(self.extractor, self.prefit)
        if self.prefit:
            check_extractor_fitted(self.extractor)
            return self.extractor
        if not callable(getattr(self.extractor, "get_params", None)):
            raise TypeError(
                f"extractor ({type(self.extractor).__name__} object) has fit but no "
                "get_params, so it cannot be cloned: pass prefit=True to use it "
                "as fitted, or derive it from sklearn.base.BaseEstimator."
            )
        return clone(self.extractor).fit(X)

    def _weights(self, X):
        """Normalised non-negative concept weights ``p`` of the rows of ``X``."""
        ext = self.extractor_
        n = X.shape[0]
        if callable(getattr(ext, "predict_proba", None)):
            A = np.asarray(ext.predict_proba(X), dtype=np.float64)
        elif hasattr(ext, "cluster_centers_") and callable(
            getattr(ext, "predict", None)
        ):
            centers = np.asarray(ext.cluster_centers_)
            k = len(centers)
            # KMeans predicts only in the dtype it was fitted in
            Xc = X.astype(centers.dtype, copy=False) if centers.dtype.kind == "f" else X
            labels = np.asarray(ext.predict(Xc)).astype(np.int64).ravel()
            if (
                labels.shape[0] != n
                or labels.min(initial=0) < 0
                or (labels.max(initial=0) >= k)
            ):
                raise ValueError(
                    f"{type(ext).__name__}.predict returned labels outside "
                    f"[0, {k}) or not one per sample."
                )
            A = np.zeros((n, k))
            A[np.arange(n), labels] = 1.0
        else:
            A = np.asarray(ext.transform(X), dtype=np.float64)
        if A.ndim != 2 or A.shape[0] != n:
            raise ValueError(
                f"The extractor ({type(ext).__name__}) returned codes of shape "
                f"{A.shape} for {n} samples; expected (n_samples, n_concepts)."
            )
        if not np.all(np.isfinite(A)):
            raise ValueError(
                f"The extractor ({type(ext).__name__}) returned NaN or infinite codes."
            )
        A = np.maximum(A, 0.0)
        total = A.sum(axis=1, keepdims=True)
        return np.divide(A, total, out=np.zeros_like(A), where=total > 0)

    # ------------------------------------------------------------- mapping
    def _base(self, Xb):
        """``X`` carried into ``Y``'s space (float64 batch)."""
        if self.mapping_coef_ is None:
            return Xb
        return Xb @ self.mapping_coef_ + self.mapping_intercept_

    def _batches(self, n, width):
        return gen_batches_idx(n, default_batch_size(width))

    def _fit_linear_map(self, X, Y):
        """Least-squares affine map ``x A + b`` from ``X`` to ``Y``, over batches."""
        n, dx = X.shape
        dy = Y.shape[1]
        sx, sy = np.zeros(dx), np.zeros(dy)
        for sl in self._batches(n, dx + dy):
            sx += np.asarray(X[sl], dtype=np.float64).sum(0)
            sy += np.asarray(Y[sl], dtype=np.float64).sum(0)
        mx, my = sx / n, sy / n
        G, H = np.zeros((dx, dx)), np.zeros((dx, dy))
        for sl in self._batches(n, dx + dy):
            Xc = np.asarray(X[sl], dtype=np.float64) - mx
            G += Xc.T @ Xc
            H += Xc.T @ (np.asarray(Y[sl], dtype=np.float64) - my)
        # minimum-norm solution when X's columns are dependent (n < d, ...)
        coef = np.linalg.pinv(G, rcond=1e-10, hermitian=True) @ H
        return coef, my - mx @ coef

    # ----------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Learn the concepts on ``X`` and their shift vectors towards ``Y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations of the inputs through the original model.
        y : array-like of shape (n_samples, n_outputs) or (n_samples,)
            ``Y``: activations of the same inputs, row for row, through the
            changed model (``n_outputs == n_features`` with
            ``mapping="identity"``; 1-D is one output).

        Returns
        -------
        self : ConceptShift
            The fitted estimator.
        """
        X = self._validate_X(X, reset=True)
        Y = self._check_Y(X, y, fit=True)
        n, dx = X.shape
        dy = Y.shape[1]
        self.n_outputs_ = dy
        self.extractor_ = self._fit_extractor(X)
        P = self._weights(X)
        k = self.n_concepts_ = P.shape[1]
        if self.mapping == "linear":
            self.mapping_coef_, self.mapping_intercept_ = self._fit_linear_map(X, Y)
        else:
            self.mapping_coef_ = self.mapping_intercept_ = None

        # pass 1: weighted sums of the shifts, of X and of Y
        w = P.sum(0)
        S, PX, PY = np.zeros((k, dy)), np.zeros((k, dx)), np.zeros((k, dy))
        sd, sx, sy = np.zeros(dy), np.zeros(dx), np.zeros(dy)
        for sl in self._batches(n, dx + 2 * dy):
            Xb = np.asarray(X[sl], dtype=np.float64)
            Yb = np.asarray(Y[sl], dtype=np.float64)
            Db = Yb - self._base(Xb)
            S += P[sl].T @ Db
            PX += P[sl].T @ Xb
            PY += P[sl].T @ Yb
            sd += Db.sum(0)
            sx += Xb.sum(0)
            sy += Yb.sum(0)
        m, mx, my = sd / n, sx / n, sy / n
        active = w > 0
        shifts = np.tile(m, (k, 1))
        shifts[active] = S[active] / w[active, None]
        self.mean_shift_ = m
        self.shift_vectors_ = shifts
        self.concept_weights_ = w
        self.shift_magnitudes_ = np.linalg.norm(shifts, axis=1)
        self.concept_means_ = np.full((k, dx), np.nan)
        self.concept_means_[active] = PX[active] / w[active, None]
        self.target_concept_means_ = np.full((k, dy), np.nan)
        self.target_concept_means_[active] = PY[active] / w[active, None]

        # pass 2: residuals, consistency, training scores
        rn = np.empty(n)
        cos_sum = np.zeros(k)
        sst_d = d_sq = 0.0
        sse_model, sse_base, sst_y = np.zeros(dy), np.zeros(dy), np.zeros(dy)
        shift_norms = self.shift_magnitudes_
        for sl in self._batches(n, dx + 3 * dy):
            Pb = P[sl]
            Yb = np.asarray(Y[sl], dtype=np.float64)
            base = self._base(np.asarray(X[sl], dtype=np.float64))
            Db = Yb - base
            pred = Pb @ shifts + (1.0 - Pb.sum(1))[:, None] * m
            R = Db - pred
            rn[sl] = np.einsum("ij,ij->i", R, R)
            sst_d += float(((Db - m) ** 2).sum())
            d_sq += float((Db * Db).sum())
            dn = np.linalg.norm(Db, axis=1)
            den = dn[:, None] * shift_norms[None, :]
            cos = np.divide(Db @ shifts.T, den, out=np.zeros_like(den), where=den > 0)
            cos_sum += (Pb * cos).sum(0)
            sse_model += ((Yb - base - pred) ** 2).sum(0)
            sse_base += ((Yb - base - m) ** 2).sum(0)
            sst_y += ((Yb - my) ** 2).sum(0)
        self.shift_consistency_ = np.divide(cos_sum, w, out=np.zeros(k), where=active)
        self.shift_r2_ = (
            1.0 - float(rn.sum()) / sst_d if sst_d > 0 else float(rn.sum() == 0.0)
        )
        self.train_score_ = _r2_per_output(sse_model, sst_y)
        self.baseline_score_ = _r2_per_output(sse_base, sst_y)

        # differential shift over its standard error (a contrast of the d_i)
        if self.reference == "median" and active.any():
            ref = _weighted_median(shifts[active], w[active])
        elif self.reference == "zero":
            ref = np.zeros(dy)
        else:
            ref = m
        self.reference_shift_ = ref
        diff = np.linalg.norm(shifts - ref, axis=1)
        C = np.divide(P, w, out=np.zeros_like(P), where=active)
        if self.reference == "mean":
            C -= 1.0 / n
        se = np.sqrt((C * C).T @ rn)
        # a differential shift at rounding level is no shift
        tiny = 1e-9 * np.sqrt(d_sq / n)
        z = np.zeros(k)
        real = active & (diff > tiny)
        z[real] = np.divide(
            diff[real],
            se[real],
            out=np.full(int(real.sum()), np.inf),
            where=se[real] > 0,
        )
        self.shift_zscores_ = z
        self.changed_concepts_ = np.flatnonzero(z > self.threshold)

        # direction of each concept from the centre, before and after
        before = self.concept_means_ - mx
        if self.mapping_coef_ is not None:
            before = before @ self.mapping_coef_
        after = before + (shifts - ref)
        align = np.full(k, np.nan)
        align[active] = _cosine(before[active], after[active])
        self.concept_alignment_ = align
        return self

    # ------------------------------------------------------------- predict
    def _predict(self, X, *, baseline):
        n = X.shape[0]
        out = np.empty((n, self.n_outputs_), dtype=X.dtype)
        P = None if baseline else self._weights(X)
        for sl in self._batches(n, X.shape[1] + 2 * self.n_outputs_):
            pred = self._base(np.asarray(X[sl], dtype=np.float64))
            if baseline:
                pred = pred + self.mean_shift_
            else:
                Pb = P[sl]
                pred = pred + Pb @ self.shift_vectors_
                pred += (1.0 - Pb.sum(1))[:, None] * self.mean_shift_
            out[sl] = pred
        return out

    def predict(self, X):
        """Predict the changed model's activations of ``X``.

        ``x + sum_k p_k(x) shift_vectors_[k] + (1 - sum_k p_k(x))
        mean_shift_`` with ``p(x)`` the normalised concept weights of ``x``
        (``x`` is first mapped by ``x A + b`` with ``mapping="linear"``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations through the original model.

        Returns
        -------
        Y_pred : ndarray of shape (n_samples, n_outputs_) or (n_samples,)
            Predicted activations through the changed model, in ``X``'s
            dtype (1-D when ``fit`` was given a 1-D ``y``).
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        out = self._predict(X, baseline=False)
        return out.ravel() if self._y_1d else out

    def score(self, X, y, sample_weight=None):
        """R^2 of :meth:`predict` against the real changed activations.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations through the original model.
        y : array-like of shape (n_samples, n_outputs)
            ``Y``: activations of the same inputs through the changed model.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            :func:`sklearn.metrics.r2_score` averaged uniformly over the
            outputs.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        Y = self._check_Y(X, y, fit=False)
        return float(
            r2_score(Y, self._predict(X, baseline=False), sample_weight=sample_weight)
        )

    def baseline_score(self, X, y, sample_weight=None):
        """R^2 of the baseline that adds ``mean_shift_`` to every sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations through the original model.
        y : array-like of shape (n_samples, n_outputs)
            ``Y``: activations of the same inputs through the changed model.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            R^2 of ``x + mean_shift_`` (``x A + b + mean_shift_`` with
            ``mapping="linear"``), as in :meth:`score`.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        Y = self._check_Y(X, y, fit=False)
        return float(
            r2_score(Y, self._predict(X, baseline=True), sample_weight=sample_weight)
        )

    # --------------------------------------------------------------- steer
    def steer(self, X, concept, alpha=1.0, *, rows="concept", vector="shift"):
        """Apply one concept's shift to activations of the original model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations through the original model (not modified).
        concept : int
            Index of the concept, in ``[0, n_concepts_)``.
        alpha : float, default=1.0
            Strength: the multiple of the vector that is added.
        rows : {"concept", "all"}, default="concept"
            ``"concept"``: each row moves by ``alpha * p_k(x) * v``, so only
            the rows that express concept ``k`` move (in proportion to their
            weight). ``"all"``: every row moves by ``alpha * v`` (the paper's
            steering, which pushes any input towards the changed concept).
        vector : {"shift", "differential"}, default="shift"
            ``v = shift_vectors_[k]``, or ``shift_vectors_[k] -
            mean_shift_``: only what is specific to the concept.

        Returns
        -------
        X_steered : ndarray of shape (n_samples, n_features)
            The steered activations, in ``X``'s dtype.
        """
        check_is_fitted(self)
        if self.mapping_coef_ is not None:
            raise ValueError(
                "steer adds a shift vector to X, which needs X and Y in one space; "
                "this ConceptShift was fitted with mapping='linear'. Refit with "
                "mapping='identity' (X and Y of the same width and basis)."
            )
        if isinstance(concept, (bool, np.bool_)) or not isinstance(
            concept, (Integral, np.integer)
        ):
            raise TypeError(
                f"concept must be an int index, got {type(concept).__name__}."
            )
        if not 0 <= int(concept) < self.n_concepts_:
            raise ValueError(
                f"concept={concept} is out of range: this ConceptShift has "
                f"{self.n_concepts_} concepts (indices 0 to {self.n_concepts_ - 1})."
            )
        if not isinstance(alpha, Real) or not np.isfinite(alpha):
            raise ValueError(f"alpha must be a finite real number, got {alpha!r}.")
        if rows not in ("concept", "all"):
            raise ValueError(f"rows must be 'concept' or 'all', got {rows!r}.")
        if vector not in ("shift", "differential"):
            raise ValueError(
                f"vector must be 'shift' or 'differential', got {vector!r}."
            )
        X = self._validate_X(X, reset=False)
        v = self.shift_vectors_[int(concept)]
        if vector == "differential":
            v = v - self.mean_shift_
        if rows == "all":
            step = np.broadcast_to(alpha * v, X.shape)
        else:
            p = self._weights(X)[:, int(concept)]
            step = (alpha * p)[:, None] * v
        return (np.asarray(X, dtype=np.float64) + step).astype(X.dtype, copy=False)
