"""Recursive concepts (CRAFT): sub-concepts of an ambiguous concept.

A concept of a late layer can gather inputs that look different (CRAFT's
example: a "trunk" concept of the elephant class that fires on trunks and on
tusks). CRAFT decomposes such a concept again, at an earlier layer, on the
inputs (crops) where it is most active: the factorisation there separates
what the late layer merged. :func:`ambiguity_scores` gives a documented rule
to flag such concepts; :class:`RecursiveConcepts` does the decomposition and
measures each sub-concept's importance for its parent concept.
"""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils import Bunch
from sklearn.utils.validation import column_or_1d

from .._backend import seed_from
from .._compat import Integral, Interval, RealNotInt, _fit_context, check_is_fitted
from .._extractors import MetaExtractorMixin, check_extractor, fitted_extractor
from ..base import DEVICE_CONSTRAINT
from ..importance import SobolConceptImportance, head_outputs
from ..importance._base import POWER_OF_TWO, ConceptNamesOutMixin

__all__ = ["RecursiveConcepts", "ambiguity_scores"]


def _n_selected(n_top, n_rows, name="n_top"):
    """Rows kept by ``n_top``: an int count, or a float fraction in (0, 1]."""
    if isinstance(n_top, numbers.Integral) and not isinstance(n_top, bool):
        if n_top < 1:
            raise ValueError(f"{name} must be >= 1 as a count; got {n_top}.")
        return min(int(n_top), n_rows)
    if isinstance(n_top, numbers.Real) and 0.0 < n_top <= 1.0:
        return max(1, int(np.ceil(n_top * n_rows)))
    raise ValueError(
        f"{name} must be a positive int (rows) or a float in (0, 1] (a fraction "
        f"of the rows); got {n_top!r}."
    )


def _top_rows(values, count):
    """Indices of the ``count`` largest values, largest first (stable)."""
    return np.argsort(-values, kind="stable")[:count]


def ambiguity_scores(X, codes, *, n_top=50, threshold=0.1, random_state=None):
    """Flag concepts whose top inputs split into two groups at an earlier layer.

    The rule, for each concept ``j``:

    1. a linear surrogate ``code_j ~ X beta + c`` (``RidgeCV``, all rows)
       says which features of ``X`` (e.g. an earlier layer's activations)
       drive the concept;
    2. the ``n_top`` rows with the largest code are represented by their
       contributions ``x * beta`` (gradient x input of the surrogate: what
       makes the concept fire *in that row*), each scaled to unit L2 norm;
    3. k-means splits them in two; the score is the share of their
       directional spread that the split explains in absolute terms,
       ``mean ||v - mean(v)||^2 - inertia_2 / n_top`` (the between-cluster
       dispersion of the unit rows ``v``): 0 when every top row fires for
       the same reason, ``p (1 - p) ||c_1 - c_2||^2`` for two groups of
       shares ``p``, ``1 - p`` and centroids ``c_1``, ``c_2`` (0.5 for two
       equal groups driven by disjoint features).

    A concept is *ambiguous* when its score is at least ``threshold``.
    Clustering the raw activations instead would also split a pure concept
    by whatever else co-occurs in its top inputs; the contributions keep
    only what drives the concept.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The representation in which to look for groups, one row per row of
        ``codes``: the earlier layer :class:`RecursiveConcepts` would
        decompose (at the concept's own layer the top rows are alike along
        the concept by construction).
    codes : array-like of shape (n_samples, n_concepts)
        Concept codes of the same rows (``extractor.transform(A)``).
    n_top : int or float, default=50
        Top rows per concept: a count, or a fraction of the rows in (0, 1].
    threshold : float, default=0.1
        Score from which a concept is called ambiguous. On the synthetic
        two-layer data of ``tests/test_inspection.py`` (one concept merging
        two sub-patterns, two pure ones; 5 seeds, ``n_top=60``) the merged
        concept scored 0.29 to 0.37 and the pure ones below 0.001.
    random_state : int, RandomState instance or None, default=None
        Seeds k-means.

    Returns
    -------
    result : sklearn.utils.Bunch
        ``scores`` (n_concepts,); ``ambiguous`` (n_concepts,) bool:
        ``scores >= threshold``; ``threshold``.

    See Also
    --------
    RecursiveConcepts : Decompose an ambiguous concept.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.inspection import ambiguity_scores
    >>> rng = np.random.RandomState(0)
    >>> Z = rng.exponential(size=(400, 3)) * (rng.rand(400, 3) < 0.3)
    >>> X = Z  # earlier layer: three patterns, one feature each
    >>> codes = np.c_[Z[:, 0] + Z[:, 1], Z[:, 2]]  # concept 0 merges two
    >>> ambiguity_scores(X, codes, random_state=0).ambiguous
    array([ True, False])
    """
    from sklearn.cluster import KMeans
    from sklearn.linear_model import RidgeCV
    from sklearn.utils import check_array

    X = check_array(X, dtype=np.float64)
    codes = check_array(codes, dtype=np.float64)
    if codes.shape[0] != X.shape[0]:
        raise ValueError(
            f"X and codes must have one row per sample each; got {X.shape[0]} "
            f"and {codes.shape[0]} rows."
        )
    if not isinstance(threshold, numbers.Real) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1]; got {threshold!r}.")
    count = _n_selected(n_top, X.shape[0])
    if count < 4:
        raise ValueError(
            f"n_top selects {count} rows; at least 4 are needed to judge a "
            "2-group split."
        )
    seed = seed_from(random_state)
    scores = np.zeros(codes.shape[1])
    for j in range(codes.shape[1]):
        beta = RidgeCV(alphas=np.logspace(-6, 3, 10)).fit(X, codes[:, j]).coef_
        contrib = X[_top_rows(codes[:, j], count)] * beta
        norms = np.linalg.norm(contrib, axis=1, keepdims=True)
        unit = contrib[norms[:, 0] > 0] / norms[norms[:, 0] > 0]
        if len(unit) < 4 or np.ptp(unit, axis=0).max() <= 1e-12:
            continue  # nothing drives it, or all alike: one group
        spread = np.mean(np.sum((unit - unit.mean(axis=0)) ** 2, axis=1))
        km = KMeans(2, n_init=4, random_state=seed).fit(unit)
        scores[j] = max(0.0, spread - km.inertia_ / len(unit))
    return Bunch(scores=scores, ambiguous=scores >= threshold, threshold=threshold)


class RecursiveConcepts(
    ConceptNamesOutMixin, MetaExtractorMixin, TransformerMixin, BaseEstimator
):
    """Sub-concepts of one concept at an earlier layer, with their importance.

    CRAFT's recursion (Fel et al., 2023, Sec. 3): a concept judged ambiguous
    (by the user, or by :func:`ambiguity_scores`) is decomposed again at an
    earlier layer, on the inputs where it is most active. Given the earlier
    layer's activations ``X`` and the parent concept's code ``y`` on the same
    rows (inputs, or positions: see
    :func:`~skconcepts.inspection.positions_to_rows`), ``fit``:

    1. keeps the ``n_top`` rows with the largest parent code;
    2. fits ``sub_extractor`` (NMF by default) on their earlier-layer
       activations: its concepts are the sub-concepts;
    3. measures each sub-concept's importance for the parent concept with
       Sobol' indices (:class:`~skconcepts.SobolConceptImportance`), the
       parent's code being the output: ``f(m) = head((m * v) @ W_sub +
       residual)`` with the sub-concept codes ``v``. The ``head`` maps
       earlier-layer activations to the parent code; pass it when you have
       it (the network between the two layers followed by the parent
       extractor's ``transform``, as a callable or torch module), or leave
       it None to fit a linear surrogate (ridge regression with its penalty
       chosen by leave-one-out, ``RidgeCV``) from ``X`` to ``y`` on the
       kept rows; ``head_score_`` reports how well the head reproduces the
       parent code there.

    Parameters
    ----------
    sub_extractor : estimator, default=None
        Concept extractor fitted (as a clone) on the kept rows; None means
        :class:`~skconcepts.NMFConcepts` with ``n_concepts`` concepts (CRAFT's
        choice; needs non-negative ``X``, e.g. post-ReLU activations).
    n_concepts : int, default=2
        Number of sub-concepts of the default ``sub_extractor``.
    head : callable, torch.nn.Module, fitted scikit-learn model or None, \
            default=None
        Maps earlier-layer activations ``(m, n_features)`` to the parent
        concept's code ``(m,)``. None fits a ``RidgeCV`` surrogate.
    n_top : int or float, default=0.1
        Rows where the parent concept is most active: a count, or a fraction
        of the rows in (0, 1].
    n_designs : int, default=32
        Rows of each Sobol' block (a power of two); see
        :class:`~skconcepts.SobolConceptImportance`.
    residual : bool, default=True
        Add each row's reconstruction residual to the perturbed activations,
        so that the full mask gives back ``head(x)``.
    batch_size : int, default=None
        Maximum rows per head call.
    device : str, default="auto"
        Device of a torch head.
    random_state : int, RandomState instance or None, default=None
        Seeds the default sub-extractor and the Sobol' designs.

    Attributes
    ----------
    sub_extractor_ : estimator
        The fitted sub-extractor.
    components_ : ndarray of shape (n_concepts_, n_features_in_)
        The sub-concepts (the sub-extractor's ``components_``).
    n_concepts_ : int
        Number of sub-concepts.
    selected_indices_ : ndarray of shape (n_selected,)
        Rows of ``X`` the decomposition used, by decreasing parent code.
    threshold_ : float
        The smallest parent code among them.
    head_ : object
        The head used: the given one, or the fitted ``RidgeCV``.
    head_score_ : float
        R² of ``head_`` against the parent code on the kept rows (1 means the
        head reproduces the parent code exactly there).
    importance_estimator_ : SobolConceptImportance
        The fitted importance estimator (on the kept rows).
    total_indices_ : ndarray of shape (n_concepts_,)
        Mean total Sobol' index of each sub-concept for the parent code.
    first_order_indices_ : ndarray of shape (n_concepts_,)
        Mean first-order index.
    importances_ : ndarray of shape (n_concepts_,)
        Alias of ``total_indices_``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    ambiguity_scores : Which concepts to decompose.
    skconcepts.SobolConceptImportance : The importance used.

    Notes
    -----
    The surrogate head is linear, so its Sobol' indices reduce to each
    sub-concept's share of the variance of the parent code that the ridge
    model explains along ``W_sub``; a real head (the network's layers) also
    sees interactions. Check ``head_score_`` before trusting the indices of
    a surrogate.

    References
    ----------
    .. [1] Fel, T. et al. "CRAFT: Concept Recursive Activation FacTorization
       for Explainability", CVPR 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.inspection import RecursiveConcepts
    >>> rng = np.random.RandomState(0)
    >>> P = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 1.0]])
    >>> Z = rng.exponential(size=(300, 3)) * (rng.rand(300, 3) < 0.3)
    >>> X = Z @ P  # earlier layer: three patterns
    >>> parent = Z[:, 0] + Z[:, 1]  # the parent concept merges patterns 0 and 1
    >>> rec = RecursiveConcepts(n_top=0.3, device="cpu", random_state=0)
    >>> rec = rec.fit(X, parent)
    >>> sorted(rec.components_.argmax(axis=1).tolist())  # patterns 0 and 1
    [0, 1]
    >>> bool(np.all(rec.importances_ > 0.2))
    True
    """

    _parameter_constraints: dict = {
        "sub_extractor": "no_validation",  # checked in fit (check_extractor)
        "n_concepts": [Interval(Integral, 1, None, closed="left")],
        "head": "no_validation",  # checked by the importance engine
        "n_top": [
            Interval(Integral, 1, None, closed="left"),
            Interval(RealNotInt, 0, 1, closed="right"),
        ],
        "n_designs": [POWER_OF_TWO],
        "residual": ["boolean"],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "device": DEVICE_CONSTRAINT,
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        sub_extractor=None,
        *,
        n_concepts=2,
        head=None,
        n_top=0.1,
        n_designs=32,
        residual=True,
        batch_size=None,
        device="auto",
        random_state=None,
    ):
        self.sub_extractor = sub_extractor
        self.n_concepts = n_concepts
        self.head = head
        self.n_top = n_top
        self.n_designs = n_designs
        self.residual = residual
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state

    def _default_extractor(self, seed=None):
        from ..decomposition import NMFConcepts

        return NMFConcepts(
            n_concepts=self.n_concepts, device=self.device, random_state=seed
        )

    def _extractor_for_tags(self):
        if self.sub_extractor is None:
            return self._default_extractor()
        return self.sub_extractor

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Decompose ``X`` where the parent code ``y`` is largest.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Earlier-layer activations, one row per input (or position).
        y : array-like of shape (n_samples,)
            The parent concept's code on the same rows (required).

        Returns
        -------
        self : RecursiveConcepts
            The fitted estimator.
        """
        if self.sub_extractor is not None:
            check_extractor(self.sub_extractor, prefit=False, name="sub_extractor")
        X, y = self._validate_X(X, y, reset=True)
        y = column_or_1d(y)
        try:
            y = y.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                "Unknown label type: y must be the parent concept's code on each "
                "row (numbers, e.g. extractor.transform(A)[:, j]); got values of "
                f"dtype {y.dtype} that are not numbers."
            ) from exc
        seed = seed_from(self.random_state)
        keep = _top_rows(y, _n_selected(self.n_top, X.shape[0]))
        X_sel, y_sel = X[keep], y[keep]
        if self.sub_extractor is None:
            sub = self._default_extractor(seed)
        else:
            sub = clone(self.sub_extractor)
            if "random_state" in sub.get_params(deep=False):
                if sub.get_params(deep=False)["random_state"] is None:
                    sub.set_params(random_state=seed)
        self.sub_extractor_ = fitted_extractor(
            sub, X_sel, prefit=False, name="sub_extractor"
        )
        self.head_ = self._fit_head(X_sel, y_sel)
        pred = head_outputs(
            self.head_, X_sel, batch_size=self.batch_size, device=self.device
        )
        if pred.shape[1] != 1:
            raise ValueError(
                f"head must return one output per row (the parent concept's "
                f"code); it returned {pred.shape[1]}. Select the parent's column "
                "inside the head, e.g. lambda a: extractor.transform(block(a))[:, j]."
            )
        var = np.var(y_sel)
        resid = np.mean((pred[:, 0] - y_sel) ** 2)
        self.head_score_ = float(1.0 - resid / var) if var > 0 else float("nan")
        self.importance_estimator_ = SobolConceptImportance(
            self.sub_extractor_,
            self.head_,
            prefit=True,
            n_designs=self.n_designs,
            residual=self.residual,
            batch_size=self.batch_size,
            device=self.device,
            random_state=seed,
        ).fit(X_sel)
        imp = self.importance_estimator_
        self.total_indices_ = imp.total_indices_
        self.first_order_indices_ = imp.first_order_indices_
        self.importances_ = imp.importances_
        self.n_concepts_ = int(imp.n_concepts_)
        comps = getattr(self.sub_extractor_, "components_", None)
        if comps is not None:
            self.components_ = np.asarray(comps)
        self.selected_indices_ = keep
        self.threshold_ = float(y_sel.min())
        return self

    def _fit_head(self, X_sel, y_sel):
        if self.head is not None:
            return self.head
        from sklearn.linear_model import RidgeCV

        return RidgeCV(alphas=np.logspace(-6, 3, 10)).fit(X_sel, y_sel)

    def transform(self, X):
        """Sub-concept codes of ``X`` (the fitted sub-extractor's transform).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Earlier-layer activations.

        Returns
        -------
        codes : ndarray of shape (n_samples, n_concepts_)
            The codes of the sub-concepts.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return np.asarray(self.sub_extractor_.transform(X))
