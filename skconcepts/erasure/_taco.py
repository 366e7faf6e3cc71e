"""TaCo: targeted concept erasure ranked by Sobol' concept importance.

Jourdan et al. (2023) remove a protected attribute from embeddings by
decomposing them into concepts, ranking the concepts by how much a probe for
the attribute depends on them (total Sobol' indices, optionally traded
against a task's dependence), and rebuilding the embeddings without the top
concepts. The Sobol' indices come from the engine shared with
:class:`~skconcepts.SobolConceptImportance` (:mod:`skconcepts.importance`).
"""

import contextlib
import sys
import warnings

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.decomposition import PCA, FastICA, TruncatedSVD
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold, check_cv, cross_val_score
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state, resample
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, column_or_1d

from .._backend import (
    STREAM_MEMORY_SHARE,
    default_batch_size,
    gen_batches_idx,
    named_seeds,
    spawn_seeds,
)
from .._compat import (
    HasMethods,
    Integral,
    Interval,
    Real,
    StrOptions,
    _fit_context,
    check_is_fitted,
    probe_fit_input,
)
from .._extractors import MetaExtractorMixin, check_extractor, fitted_extractor
from .._io import is_on_disk
from .._progress import progress
from ..base import DEVICE_CONSTRAINT
from ..decomposition import _streamed
from ..importance._base import POWER_OF_TWO
from ..importance._engine import affine_decoder
from ..importance._sobol import concept_sobol_indices
from ..metrics._erasure import leakage
from ._probes import make_probe, margin_head, seeded_clone

__all__ = ["TaCoEraser"]

_DECOMPOSITIONS = ("pca", "svd", "ica", "nmf")

#: Named child seeds of one ``fit``, in spawn order.
_SEED_NAMES = (
    "decomposition",
    "probe",
    "task_probe",
    "train_rows",
    "sobol_rows",
    "sobol",
    "stopping",
)

#: With a task, concepts whose protected importance is below this fraction of
#: the largest are ranked after all the others (by angle among themselves).
FAINT_FRACTION = 0.05


@contextlib.contextmanager
def _quiet():
    """Silence convergence warnings of the internal probes and decompositions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _child_seeds(random_state):
    """Independent named seeds for the stages of one ``fit``.

    The package's rule (:func:`skconcepts._backend.named_seeds`): one
    integer drawn from ``random_state`` seeds a
    :class:`numpy.random.SeedSequence`, whose spawned children, one per name
    of ``_SEED_NAMES``, are non-negative 31-bit integers.
    """
    return named_seeds(random_state, _SEED_NAMES)


def _encode_labels(y, what):
    """Encode class labels; refuse fewer than two classes."""
    check_classification_targets(y)
    enc = LabelEncoder().fit(y)
    if len(enc.classes_) < 2:
        raise ValueError(
            f"{what} has 1 class ({enc.classes_[0]!r}); erasure needs at least "
            "2 classes to tell apart."
        )
    return enc


def _balanced_mean(values, labels):
    """Mean over samples of ``values`` with every class weighted equally."""
    if labels is None:
        return np.mean(values, axis=0)
    return np.mean([values[labels == c].mean(axis=0) for c in np.unique(labels)], 0)


def _make_extractor(decomposition, k, seed, device, X):
    """An unfitted concept extractor for a ``decomposition`` string."""
    if decomposition == "pca":
        return PCA(n_components=k, random_state=seed)
    if decomposition == "svd":
        return TruncatedSVD(n_components=k, random_state=seed)
    if decomposition == "ica":
        return FastICA(n_components=k, whiten="unit-variance", random_state=seed)
    # "nmf"
    if np.min(X) < 0:
        raise ValueError(
            "decomposition='nmf' needs non-negative X (Negative values in data); "
            "use 'pca', 'svd' or 'ica', or pass a signed extractor such as "
            "SemiNMFConcepts."
        )
    try:
        from ..decomposition import NMFConcepts
    except ImportError:  # the NMF family is not available: scikit-learn's NMF
        from sklearn.decomposition import NMF

        return NMF(n_components=k, init="nndsvda", max_iter=500, random_state=seed)
    return NMFConcepts(n_concepts=k, random_state=seed, device=device)


class TaCoEraser(
    MetaExtractorMixin, OneToOneFeatureMixin, TransformerMixin, BaseEstimator
):
    """Targeted concept erasure (TaCo) of a protected attribute.

    ``fit(X, y)`` decomposes the activations ``X`` into concepts
    (``X ~ U W + b``), fits a probe that recovers the protected attribute
    ``y`` from ``X``, measures how much the probe's margin depends on each
    concept with total Sobol' indices, and ranks the concepts (by protected
    importance, or, given a task, by the angle
    ``arctan(ST_task / ST_protected)``, smallest first). ``transform(X)``
    rebuilds ``X`` in its own space without the removed concepts. With
    ``n_remove="auto"`` concepts are removed in ranked order until a fresh
    cross-validated probe, fitted on the erased training data, recovers ``y``
    no better than chance plus ``tolerance``.

    Read more in the :doc:`User Guide </guide/erasure>`.

    Parameters
    ----------
    n_concepts : int, default=20
        Number of concepts of the built-in decompositions. It is capped at
        ``min(n_samples, n_features)`` (the number a PCA can have); the value
        used is ``n_concepts_``. Ignored when ``decomposition`` is an
        estimator.

    n_remove : "auto" or int, default="auto"
        Number of top-ranked concepts to remove. ``"auto"``: the smallest
        number ``r`` for which the cross-validated balanced accuracy of a
        fresh probe (a clone of ``probe``), trained and tested on the training
        data with the top ``r`` concepts erased, is at most
        ``1 / n_classes + tolerance`` (``1 / n_classes`` is the balanced
        accuracy of the majority-class guess): concepts are removed in ranked
        order, ``r = 0, 1, 2, ...``, and the search stops at the first ``r``
        that passes (one cross-validated probe per ``r``). The search holds
        the erased
        training data in memory (the probe needs it); for data larger than
        memory set ``max_train_samples`` (the search then runs on that
        subsample) or pass an int. An int removes exactly that many (at
        most ``n_concepts_``).

    decomposition : {"pca", "svd", "ica", "nmf"} or estimator, default="pca"
        How ``X`` is split into concepts, fitted on the training data only
        (on a memmap ``"pca"``, ``"svd"`` and ``"ica"`` are streamed, see
        Notes).
        ``"pca"``: :class:`~sklearn.decomposition.PCA` (the reference's
        choice); ``"svd"``: :class:`~sklearn.decomposition.TruncatedSVD` (no
        centring); ``"ica"``: :class:`~sklearn.decomposition.FastICA` (on
        sentence embeddings its concepts separate an attribute from a task
        much better than PCA's, see the user guide);
        ``"nmf"``: :class:`~skconcepts.NMFConcepts` (non-negative ``X``
        only). An estimator with ``fit`` / ``transform`` (and
        ``inverse_transform`` or ``components_``, for the decoder) is cloned
        and fitted on ``X``: any skconcepts extractor, scikit-learn's
        ``NMF``, ... With ``prefit=True`` it is used as fitted, and may be
        any object with ``transform`` plus ``inverse_transform`` or
        ``components_`` (no ``fit`` needed), as for
        :class:`~skconcepts.SobolConceptImportance`. Its decoder must be
        affine, ``x = u W + b``; ``W`` and ``b`` are read off its
        ``inverse_transform`` (else ``W = components_``, ``b = 0``). Its
        input tags (``positive_only``, ``allow_nan``) become the eraser's.

    prefit : bool, default=False
        Use the estimator given as ``decomposition`` as fitted instead of
        fitting a clone on ``X`` (a string ``decomposition`` cannot be
        prefit).

    probe : classifier or None, default=None
        Unfitted classifier cloned for every probe the eraser trains: the
        probe whose margin is explained, the task probe and the fresh probes
        of the stopping rule and of :meth:`score`. None: a ``StandardScaler``
        then an ``MLPClassifier(hidden_layer_sizes=(64,))``. Nested
        ``random_state`` left at None are seeded from ``random_state``.

    task_head : callable, torch.nn.Module, fitted classifier or None, default=None
        The task model, mapping ``(m, n_features)`` activations to ``(m,)``
        or ``(m, n_outputs)`` outputs (reduced to a margin as for the probe).
        Alternatively pass task labels as ``fit(X, y, task=labels)``. With a
        task, concepts are ranked by the angle
        ``arctan(ST_task / ST_protected)``, smallest first; concepts whose
        protected importance is under 5% of the largest come after all the
        others (an angle between two near-zero importances means nothing).

    n_designs : int, default=32
        Number of Sobol' designs ``N`` (a power of two, at least 2, checked
        by the parameter validation before anything is fitted, as in
        :class:`~skconcepts.SobolConceptImportance`); each sample costs
        ``N (n_concepts_ + 2)`` head evaluations per head.

    max_samples : int, default=256
        Number of training samples (a stratified subsample) on which the
        per-sample Sobol' indices are computed and averaged.

    max_train_samples : int or None, default=None
        Train the probes (protected attribute and task) and run the
        ``n_remove="auto"`` search on a stratified subsample of at most this
        many training rows (copied once). None: all rows. Set it to bound
        the memory of a fit on data larger than memory: the decomposition
        (streamed for a memmap, see Notes), the codes (``n x n_concepts_``)
        and the Sobol' step (``max_samples`` rows) do not hold ``X``, but
        the probes and the search otherwise see every row.

    residual : bool, default=False
        Keep the part of ``X`` that the decomposition does not explain
        (``x - u W - b``) in the output and in the Sobol' evaluations, as
        ``residual`` does in :class:`~skconcepts.SobolConceptImportance`
        (the same meaning). With ``residual=True`` and nothing removed,
        ``transform(X)`` returns ``X``. The default differs on purpose:
        an explanation should reproduce the model's output on ``x`` (there
        the default is True), while an erasure must not pass on what the
        concepts leave out, since the attribute can hide in the residual
        (the reference TaCo rebuilds ``X`` from the kept concepts only).

    tolerance : float, default=0.05
        Balanced accuracy above chance that ``n_remove="auto"`` accepts.

    cv : int, cross-validation generator or iterable, default=3
        Splits of the stopping rule of ``n_remove="auto"``; an int is a
        shuffled ``StratifiedKFold`` seeded from ``random_state``, and an
        ``r`` that passes on it is confirmed on a second, independently
        shuffled ``StratifiedKFold``: the mean of the two balanced accuracies
        must pass too. The first ``r`` whose noisy estimate dips below the
        threshold is otherwise taken too often (on 400 MiniLM biographies a
        fresh MLP still read gender at 0.60 after such a stop; see
        ``tests/test_erasure.py::test_minilm_biographies``). A given
        splitter is used as it is, once.

    search : {"linear", "bisect"}, default="linear"
        How ``n_remove="auto"`` looks for ``r``. ``"linear"``: ``r = 0, 1,
        2, ...``, one cross-validation each, up to the first ``r`` that
        passes (every smaller ``r`` is evaluated and fails). ``"bisect"``:
        ``r = 0, 1, 2, 4, 8, ...`` then bisection of the bracket, about
        ``2 log2(n_concepts_)`` cross-validations instead of up to
        ``n_concepts_ + 1``; the same ``r`` when recoverability falls as
        concepts are removed (``r`` passes and ``r - 1`` fails), faster when
        many concepts must go.

    batch_size : int or None, default=None
        Rows of ``X`` per step, one meaning for the whole eraser: the rows
        per head call of the Sobol' engine (each row evaluated on all its
        masks, as in :class:`~skconcepts.SobolConceptImportance`) and the
        rows per batch read from on-disk data. None: the head calls are
        sized from scikit-learn's ``working_memory``, and so are the on-disk
        batches (1/64 of it: 16 MiB at the default 1024 MiB).

    random_state : int, RandomState instance or None, default=None
        Seeds the decomposition, the probes, the subsamples, the Sobol'
        design and the splits: one integer drawn from it seeds a
        :class:`numpy.random.SeedSequence` whose spawned children, one per
        stage, are independent. An int gives identical results on CPU.

    device : str, default="auto"
        Device of the Sobol' evaluations (and of ``NMFConcepts``): "auto",
        "cpu", "cuda", "cuda:N" or "mps".

    verbose : int, default=0
        Print the steps of ``fit`` (decomposition, probes, Sobol' indices,
        each ``r`` of the ``n_remove="auto"`` search) to stderr.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Classes of the protected attribute.

    extractor_ : estimator
        The fitted decomposition.

    n_concepts_ : int
        Number of concepts.

    components_ : ndarray of shape (`n_concepts_`, `n_features_in_`)
        Decoder ``W`` (one row per concept, in the extractor's order).

    mean_ : ndarray of shape (`n_features_in_`,)
        Decoder offset ``b`` (PCA's mean; zero for NMF).

    probe_ : classifier
        The probe for the protected attribute, fitted on ``X`` and the encoded
        labels: its classes are ``0 .. n_classes - 1``, positions in
        ``classes_`` (``classes_[probe_.predict(X)]`` gives the names).

    task_probe_ : classifier
        The task probe, when task labels were given to ``fit`` (fitted on the
        encoded task labels, as ``probe_``).

    protected_importances_ : ndarray of shape (`n_concepts_`,)
        Total Sobol' index of each concept for the probe's margin, averaged
        over the samples of each class, then over classes.

    task_importances_ : ndarray of shape (`n_concepts_`,)
        The same for the task, when there is one.

    angles_ : ndarray of shape (`n_concepts_`,)
        ``arctan2(task_importances_, protected_importances_)``, when there is
        a task.

    ranking_ : ndarray of shape (`n_concepts_`,)
        Concept indices in removal order.

    n_remove_ : int
        Number of concepts removed.

    removed_concepts_ : ndarray of shape (`n_remove_`,)
        ``ranking_[:n_remove_]``.

    recoverability_ : ndarray of shape (`n_concepts_` + 1,)
        With ``n_remove="auto"``: ``recoverability_[r]`` is the
        cross-validated balanced accuracy of the fresh probe after removing
        the top ``r`` concepts, for ``r = 0 .. n_remove_`` (NaN beyond;
        with ``search="bisect"``, NaN where the search did not evaluate it).

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    skconcepts.SobolConceptImportance : The Sobol' concept importance used
        for the ranking.
    skconcepts.metrics.leakage : Balanced accuracy of fresh probes on a
        held-out split.

    Notes
    -----
    Three defects of the reference implementation are avoided: the kept
    codes and the kept concepts are taken in the same order (the erased
    activation is ``x - sum_{i removed} u_i W_i``, equivalently
    ``sum_{i kept} u_i W_i + b``); the decomposition is fitted on the
    training data given to ``fit`` only; the decoder offset (PCA's mean) is
    added back.

    Data on disk: when ``X`` is a memmap, or a zarr / HDF5 / dask array
    (given a memmap face by :func:`skconcepts.as_memmap`, never loaded
    whole), and
    ``decomposition="pca"``, the PCA is computed by streaming: one pass of
    row batches (``batch_size`` rows; by default 16 MiB of rows, 1/64 of
    scikit-learn's ``working_memory``) accumulates the
    float64 mean and Gram matrix (``O(n_features^2)`` memory) and the top
    eigenvectors of the covariance are the principal axes, with
    scikit-learn's sign convention. This is the exact PCA up to rounding;
    in memory, :class:`~sklearn.decomposition.PCA` may pick its randomized
    solver, so the two agree to that solver's accuracy. ``"svd"`` uses the
    same pass (top eigenvectors of the uncentred Gram matrix: the exact
    truncated SVD); ``"ica"`` whitens with the streamed PCA and runs
    FastICA on the whitened codes (``n x n_concepts``), built by row
    batches. The codes are then computed by row batches. An estimator given
    as ``decomposition`` is fitted as is (e.g.
    :class:`~skconcepts.SemiNMFConcepts` streams a memmap itself). With
    ``max_train_samples`` set, nothing else holds more than
    ``max_train_samples`` rows of ``X``.

    References
    ----------
    .. [1] F. Jourdan, L. Béthune, A. Picard, L. Risser, N. Asher. "TaCo:
       Targeted Concept Erasure Prevents Non-Linear Classifiers From Detecting
       Protected Attributes", 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts import TaCoEraser
    >>> rng = np.random.RandomState(0)
    >>> Z = rng.normal(size=(200, 3)) * [3.0, 2.0, 1.0]
    >>> X = Z @ rng.normal(size=(3, 6))
    >>> y = (Z[:, 1] > 0).astype(int)          # the attribute lives in factor 2
    >>> eraser = TaCoEraser(n_concepts=3, n_remove=1, n_designs=16,
    ...                     random_state=0).fit(X, y)
    >>> X_erased = eraser.transform(X)
    >>> X_erased.shape
    (200, 6)
    >>> int(eraser.protected_importances_.argmax()) in eraser.removed_concepts_
    True
    """

    _parameter_constraints: dict = {
        "n_concepts": [Interval(Integral, 1, None, closed="left")],
        "n_remove": [StrOptions({"auto"}), Interval(Integral, 0, None, closed="left")],
        # a string among _DECOMPOSITIONS or an extractor: checked in fit
        # (skconcepts._extractors.check_extractor: a TypeError that says what
        # is missing and what is accepted)
        "decomposition": "no_validation",
        "prefit": ["boolean"],
        "probe": [None, HasMethods(["fit", "predict"])],
        "task_head": [None, callable, HasMethods(["predict"])],
        "n_designs": [POWER_OF_TWO],
        "max_samples": [Interval(Integral, 1, None, closed="left")],
        "max_train_samples": [None, Interval(Integral, 2, None, closed="left")],
        "residual": ["boolean"],
        "tolerance": [Interval(Real, 0, 1, closed="both")],
        "search": [StrOptions({"linear", "bisect"})],
        "cv": ["cv_object"],
        "batch_size": [None, Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "device": DEVICE_CONSTRAINT,
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_concepts=20,
        *,
        n_remove="auto",
        decomposition="pca",
        prefit=False,
        probe=None,
        task_head=None,
        n_designs=32,
        max_samples=256,
        max_train_samples=None,
        residual=False,
        tolerance=0.05,
        cv=3,
        search="linear",
        batch_size=None,
        random_state=None,
        device="auto",
        verbose=0,
    ):
        self.n_concepts = n_concepts
        self.n_remove = n_remove
        self.decomposition = decomposition
        self.prefit = prefit
        self.probe = probe
        self.task_head = task_head
        self.n_designs = n_designs
        self.max_samples = max_samples
        self.max_train_samples = max_train_samples
        self.residual = residual
        self.tolerance = tolerance
        self.cv = cv
        self.search = search
        self.batch_size = batch_size
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def __sklearn_tags__(self):
        # input tags from the decomposition (MetaExtractorMixin)
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    def _extractor_for_tags(self):
        if isinstance(self.decomposition, str):
            if self.decomposition != "nmf":
                return None
            try:
                from ..decomposition import NMFConcepts
            except ImportError:  # pragma: no cover - the NMF family is absent
                return None
            return NMFConcepts()
        return self.decomposition

    def _log(self, message):
        if self.verbose:
            print(f"[TaCoEraser] {message}", file=sys.stderr)

    def _check_decomposition(self):
        if isinstance(self.decomposition, str):
            if self.decomposition not in _DECOMPOSITIONS:
                raise ValueError(
                    f"decomposition must be one of {sorted(_DECOMPOSITIONS)} or an "
                    f"extractor; got {self.decomposition!r}."
                )
            if self.prefit:
                raise ValueError(
                    f"prefit=True needs a fitted extractor as decomposition, not "
                    f"the string {self.decomposition!r}."
                )
        else:
            check_extractor(
                self.decomposition, prefit=self.prefit, name="decomposition"
            )

    # ----------------------------------------------------------------- fit
    def _probe_template(self, seed):
        if self.probe is None:
            return make_probe("mlp", random_state=seed)
        return seeded_clone(self.probe, seed)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, task=None):
        """Fit the decomposition, the probe(s), and choose the concepts to remove.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training activations.
        y : array-like of shape (n_samples,)
            Protected attribute (class labels, two or more classes).
        task : array-like of shape (n_samples,), default=None
            Task labels. A task probe (a clone of ``probe``) is fitted on them
            and the concepts are ranked by the angle between task and
            protected importance. In a ``Pipeline`` pass it as
            ``fit(X, y, tacoeraser__task=labels)``. Mutually exclusive with
            ``task_head``.

        Returns
        -------
        self : TaCoEraser
            The fitted eraser.
        """
        self._check_decomposition()
        X, y = self._validate_X(X, y, reset=True)
        enc = _encode_labels(y, "y (the protected attribute)")
        self.classes_ = enc.classes_
        y_enc = enc.transform(y)
        task_enc = None
        if task is not None:
            if self.task_head is not None:
                raise ValueError(
                    "Give the task either as labels to fit (task=...) or as "
                    "task_head, not both."
                )
            task = column_or_1d(task, warn=True)
            check_consistent_length(X, task)
            task_enc = _encode_labels(task, "task").transform(task)
        seeds = _child_seeds(self.random_state)

        U = self._fit_concepts(X, seeds["decomposition"])
        train = self._training_rows(X, y, y_enc, U, task_enc, seeds["train_rows"])
        heads, template = self._fit_probes(train, task_enc is not None, seeds)
        self._rank_concepts(X, U, y_enc, task_enc, heads, seeds)
        self._choose_n_remove(train, template, seeds["stopping"])
        return self

    def _fit_concepts(self, X, seed):
        """Stage 1: the decomposition, on the training data only; its codes.

        Sets ``extractor_``, ``n_concepts_``, ``components_`` and ``mean_``
        and returns the codes ``U`` of ``X``.
        """
        n, d = X.shape
        k = min(self.n_concepts, n, d)
        on_disk = is_on_disk(X)
        batch_rows = self._batch_rows(k, X)
        if not isinstance(self.decomposition, str):

            def fit_clone(est):
                with _quiet():
                    return seeded_clone(est, seed).fit(X)

            extractor = fitted_extractor(
                self.decomposition,
                X,
                prefit=self.prefit,
                fit=fit_clone,
                name="decomposition",
            )
        elif on_disk and self.decomposition in _streamed.STREAMED:
            streamed = _streamed.STREAMED[self.decomposition]
            with _quiet():
                extractor = streamed(X, k, batch_rows, seed, verbose=self.verbose)
        else:
            extractor = _make_extractor(self.decomposition, k, seed, self.device, X)
            with _quiet():
                extractor.fit(X)
        self._log(f"decomposition {type(extractor).__name__} ready")
        if on_disk:  # codes by row batches: no centred copy of X
            U = np.concatenate(
                [
                    np.asarray(extractor.transform(np.asarray(X[sl])), dtype=X.dtype)
                    for sl in progress(
                        list(gen_batches_idx(n, batch_rows)),
                        desc="TaCoEraser: codes",
                        unit="batch",
                        verbose=self.verbose,
                    )
                ]
            )
        else:
            U = np.asarray(extractor.transform(X), dtype=X.dtype)
        if U.ndim != 2 or U.shape[0] != n:
            raise ValueError(
                f"{type(extractor).__name__}.transform returned shape {U.shape} "
                f"for {n} samples."
            )
        self.n_concepts_ = U.shape[1]
        W, b = affine_decoder(extractor, self.n_concepts_, X.dtype, check_codes=U)
        self.extractor_ = extractor
        self.components_ = W
        self.mean_ = np.zeros(d, dtype=X.dtype) if b is None else b
        if isinstance(self.n_remove, Integral) and self.n_remove > self.n_concepts_:
            raise ValueError(
                f"n_remove={self.n_remove} is larger than the number of concepts "
                f"({self.n_concepts_})."
            )
        return U

    def _batch_rows(self, k, X):
        """Rows per batch read from disk: ``batch_size``, else the rows whose
        float64 copy (the streamed passes accumulate in float64) fills
        ``STREAM_MEMORY_SHARE`` of scikit-learn's ``working_memory`` (16 MiB
        at the default 1024 MiB: 2730 rows of 768 features)."""
        if self.batch_size:
            return max(k, self.batch_size)
        return max(k, default_batch_size(X.shape[1], share=STREAM_MEMORY_SHARE))

    def _training_rows(self, X, y, y_enc, U, task_enc, seed):
        """The rows the probes are trained on: ``(X, y, y_enc, U, task_enc)``.

        All of them, or a stratified subsample of ``max_train_samples`` rows
        (copied once) when that is set and smaller than ``n_samples``.
        """
        n = X.shape[0]
        if self.max_train_samples is None or self.max_train_samples >= n:
            return X, y, y_enc, U, task_enc
        tr = np.sort(
            resample(
                np.arange(n),
                replace=False,
                n_samples=self.max_train_samples,
                stratify=y_enc,
                random_state=seed,
            )
        )
        return (
            np.asarray(X[tr]),
            y[tr],
            y_enc[tr],
            U[tr],
            None if task_enc is None else task_enc[tr],
        )

    def _fit_probes(self, train, with_task, seeds):
        """Stage 2: the probe(s), on the raw activations of the training rows.

        Sets ``probe_`` (and ``task_probe_`` with task labels); returns the
        margin heads by name (``"protected"``, and ``"task"`` with task
        labels or ``task_head``) and the unfitted probe template.
        """
        # the probes see encoded labels (0 .. n_classes - 1), never the names:
        # scikit-learn 1.6's MLP early stopping fails on string labels; an
        # on-disk X reaches an lbfgs logistic probe of scikit-learn < 1.9 as a
        # float64 memmap, not as an in-memory copy (probe_fit_input)
        Xt, _, yt_enc, _, taskt = train
        d, dtype = self.n_features_in_, Xt.dtype
        template = self._probe_template(seeds["probe"])
        with _quiet(), probe_fit_input(template, Xt, is_on_disk(Xt)) as Xp:
            self.probe_ = seeded_clone(template, seeds["probe"]).fit(Xp, yt_enc)
            if with_task:
                self.task_probe_ = seeded_clone(template, seeds["task_probe"]).fit(
                    Xp, taskt
                )
        self._log(f"probe fitted on {Xt.shape[0]} rows")
        heads = {"protected": margin_head(self.probe_, d, dtype)}
        if with_task:
            heads["task"] = margin_head(self.task_probe_, d, dtype)
        elif self.task_head is not None:
            heads["task"] = margin_head(self.task_head, d, dtype)
        return heads, template

    def _rank_concepts(self, X, U, y_enc, task_enc, heads, seeds):
        """Stage 3: total Sobol' indices of each head on a stratified subsample.

        Sets ``protected_importances_`` (and ``task_importances_``,
        ``angles_`` with a task) and ``ranking_``, the removal order.
        """
        n = X.shape[0]
        W, b = self.components_, self.mean_
        idx = np.arange(n)
        if self.max_samples < n:
            idx = resample(
                idx,
                replace=False,
                n_samples=self.max_samples,
                stratify=y_enc,
                random_state=seeds["sobol_rows"],
            )
        rows = X[idx] - U[idx] @ W if self.residual else b
        importances = {}
        for name, head in heads.items():
            self._log(f"Sobol' indices of the {name} head on {len(idx)} samples")
            total = concept_sobol_indices(
                head,
                U[idx],
                W,
                residual=rows,
                n_designs=self.n_designs,
                batch_size=self.batch_size,
                device=self.device,
                random_state=seeds["sobol"],
                per_sample_designs=True,  # independent errors: precise means
            )["total"]
            labels = y_enc[idx] if name == "protected" else None
            if name == "task" and task_enc is not None:
                labels = task_enc[idx]
            total = np.nan_to_num(np.asarray(total, dtype=np.float64))
            importances[name] = _balanced_mean(total, labels)
        self.protected_importances_ = importances["protected"]
        if "task" in importances:
            self.task_importances_ = importances["task"]
            self.angles_ = np.arctan2(
                self.task_importances_, self.protected_importances_
            )
            # a concept that hardly carries y is not removed before one that
            # does, whatever the ratio of its two near-zero importances
            faint = self.protected_importances_ < FAINT_FRACTION * max(
                float(self.protected_importances_.max()), 0.0
            )
            self.ranking_ = np.lexsort(
                (-self.protected_importances_, self.angles_, faint)
            )
        else:
            self.ranking_ = np.argsort(-self.protected_importances_, kind="stable")

    def _choose_n_remove(self, train, template, seed):
        """Stage 4: how many concepts to remove; sets ``n_remove_``,
        ``removed_concepts_`` (and ``recoverability_`` with ``"auto"``)."""
        Xt, _, yt_enc, Ut, _ = train
        if self.n_remove == "auto":
            self.n_remove_, self.recoverability_ = self._auto_n_remove(
                Xt, Ut, yt_enc, template, seed
            )
        else:
            self.n_remove_ = int(self.n_remove)
        self.removed_concepts_ = self.ranking_[: self.n_remove_].copy()

    def _auto_n_remove(self, X, U, y_enc, template, seed):
        """Remove concepts in ranked order until a fresh probe is at chance."""
        cvs = [self.cv]
        if isinstance(self.cv, Integral):
            # a pass is confirmed on a second, independently shuffled split
            cvs = [
                StratifiedKFold(n_splits=self.cv, shuffle=True, random_state=s)
                for s in spawn_seeds(seed, 2)
            ]
        cvs = [check_cv(cv, y_enc, classifier=True) for cv in cvs]
        threshold = 1.0 / len(self.classes_) + self.tolerance
        k = self.n_concepts_
        scores = np.full(k + 1, np.nan)

        def erased_enough(r):
            Xe = self._erase(X, U, self.ranking_[:r])
            found = []
            for cv in cvs:
                with _quiet():
                    s = cross_val_score(
                        seeded_clone(template, seed),
                        Xe,
                        y_enc,
                        cv=cv,
                        scoring="balanced_accuracy",
                    )
                found.append(float(np.mean(s)))
                scores[r] = float(np.mean(found))
                if scores[r] > threshold:  # fails: no confirmation needed
                    break
            self._log(f"{r} concept(s) removed: balanced accuracy {scores[r]:.3f}")
            return scores[r] <= threshold

        if self.search == "linear":
            # remove concepts in ranked order, r = 0, 1, 2, ..., until the
            # fresh probe is at chance: r passes and every smaller r fails
            steps = progress(
                range(k + 1), desc="TaCoEraser: r", unit="r", verbose=self.verbose
            )
            with steps:
                for r in steps:
                    if erased_enough(r):
                        return r, scores
        else:
            # galloping over r = 0, 1, 2, 4, ..., k, then bisection of the
            # bracket: the smallest r that passes, given that r - 1 fails
            lo, r = -1, 0  # lo: the largest r known to fail
            while not erased_enough(r):
                lo = r
                if r == k:
                    break
                r = min(k, max(1, 2 * r))
            else:
                hi = r
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if erased_enough(mid):
                        hi = mid
                    else:
                        lo = mid
                return hi, scores
        warnings.warn(
            f"Removing all {k} concepts leaves a cross-validated "
            f"balanced accuracy of {scores[k]:.3f} (chance + tolerance "
            f"{threshold:.3f}); the attribute is still recoverable, "
            "probably from the residual or from more concepts. Raise "
            "n_concepts or use residual=False.",
            UserWarning,
        )
        return k, scores

    # ----------------------------------------------------------- transform
    def _erase(self, X, U, removed):
        """Erased rows from activations ``X`` and their codes ``U``."""
        W = self.components_
        removed = np.asarray(removed, dtype=np.intp)
        if self.residual:
            return X - U[:, removed] @ W[removed]
        kept = np.setdiff1d(np.arange(self.n_concepts_), removed)
        return U[:, kept] @ W[kept] + self.mean_

    def _transform_validated(self, X, concepts=None):
        if concepts is None:
            concepts = self.removed_concepts_
        out = np.empty(X.shape, dtype=X.dtype)
        rows = default_batch_size(X.shape[1], itemsize=X.dtype.itemsize)
        for sl in gen_batches_idx(X.shape[0], rows):
            xb = np.asarray(X[sl])
            U = np.asarray(self.extractor_.transform(xb), dtype=X.dtype)
            out[sl] = self._erase(xb, U, concepts)
        return out

    def transform(self, X):
        """Remove the selected concepts from ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations.

        Returns
        -------
        X_erased : ndarray of shape (n_samples, n_features)
            ``sum_{i kept} u_i W_i + b`` (``residual=False``) or
            ``x - sum_{i removed} u_i W_i`` (``residual=True``), in the dtype
            of ``X``.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self._transform_validated(X)

    def erase(self, X, concepts):
        """Remove any given concepts from ``X`` (not only ``removed_concepts_``).

        ``transform(X)`` is ``erase(X, removed_concepts_)``. Use it to trace
        recoverability against the number of removed concepts without
        refitting: ``erase(X, ranking_[:r])`` for ``r = 0, 1, ...``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations.
        concepts : array-like of int
            Indices of the concepts to remove (``0 <= i < n_concepts_``).

        Returns
        -------
        X_erased : ndarray of shape (n_samples, n_features)
            As :meth:`transform`, with ``concepts`` removed.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        concepts = np.asarray(concepts, dtype=np.intp).reshape(-1)
        if concepts.size and (concepts.min() < 0 or concepts.max() >= self.n_concepts_):
            raise ValueError(
                f"concepts must be indices in [0, {self.n_concepts_}); got "
                f"{concepts.tolist()}."
            )
        return self._transform_validated(X, concepts)

    def score(self, X, y):
        """Erasure score: 1 minus the normalised leakage of fresh probes.

        ``X`` is erased, split into a stratified 70/30 train/test split, and
        two fresh probes (a logistic regression and a clone of ``probe``) are
        trained on the training part. With ``b`` the larger of their balanced
        accuracies on the test part and ``c = 1 / n_classes`` (chance),
        the score is ``1 - max(0, (b - c) / (1 - c))``: 1 when nothing about
        ``y`` can be recovered, 0 when it is recovered perfectly. Greater is
        better for erasure; the task's accuracy is a separate question.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Held-out activations (not erased).
        y : array-like of shape (n_samples,)
            Protected attribute of ``X``.

        Returns
        -------
        score : float
            In ``[0, 1]``.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        y = column_or_1d(y, warn=True)
        check_consistent_length(X, y)
        enc = _encode_labels(y, "y")
        n_classes = len(enc.classes_)
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        probes = (("linear", "linear"), ("probe", self._probe_template(seed)))
        with _quiet():
            bacc = leakage(
                self._transform_validated(X),
                enc.transform(y),  # probes see encoded labels, as in fit
                probes=probes,
                random_state=seed,
            )
        chance = 1.0 / n_classes
        worst = max(bacc.values())
        return float(1.0 - max(0.0, (worst - chance) / (1.0 - chance)))
