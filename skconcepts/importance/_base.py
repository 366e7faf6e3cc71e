"""The base of the concept-importance meta-estimators.

A concept-importance estimator wraps a concept extractor (``components_`` and
``transform``: ours, or scikit-learn's ``NMF``, ``PCA``, ...) and a *head*
(activations -> model outputs). ``fit(X, y)`` explains every sample of ``X``
in concept space and averages the per-sample importances per class;
``transform(X)`` returns the per-sample importances; ``score`` is the
C-muFidelity of the importances (greater is better).
"""

import sys

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, column_or_1d

from .._backend import resolve_device, seed_from
from .._compat import (
    Integral,
    Interval,
    Options,
    _fit_context,
    check_is_fitted,
)
from .._extractors import MetaExtractorMixin, check_extractor, fitted_extractor
from ..base import DEVICE_CONSTRAINT
from ._engine import affine_decoder, chunk_values, head_outputs
from ._fidelity import c_mufidelity
from ._heads import as_head


#: Constraint of ``n_designs`` (Sobol' importance and TaCo): a power of two
#: from 2 to 2**30, as the balance properties of the Sobol' sequence need.
class _PowerOfTwo(Options):
    """Options of every power of two, named as such in the error message."""

    def __str__(self):
        return "an int power of two from 2 to 2**30 (the Sobol' sequence needs it)"


POWER_OF_TWO = _PowerOfTwo(Integral, {2**i for i in range(1, 31)})


class ConceptNamesOutMixin:
    """Output names of a meta-estimator with one output per concept.

    ``get_feature_names_out`` gives ``<classname>0``, ``<classname>1``, ...
    for the ``n_concepts_`` outputs of ``transform`` (the importance
    estimators, :class:`skconcepts.inspection.RecursiveConcepts`).
    """

    @property
    def _n_features_out(self):
        return self.n_concepts_

    def get_feature_names_out(self, input_features=None):
        """Output names: one per concept, ``<classname>0``, ``<classname>1``, ...

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Checked against ``feature_names_in_`` when given; unused otherwise.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        from .._compat import _check_feature_names_in

        check_is_fitted(self)
        _check_feature_names_in(self, input_features, generate_names=False)
        prefix = type(self).__name__.lower()
        return np.asarray(
            [f"{prefix}{i}" for i in range(self.n_concepts_)], dtype=object
        )


class _BaseConceptImportance(
    ConceptNamesOutMixin, MetaExtractorMixin, TransformerMixin, BaseEstimator
):
    """Shared machinery: extractor handling, head outputs, targets, grouping.

    Subclasses define ``_n_evals(k)`` (head rows per sample),
    ``_explain(space, sl, target, head, fit)`` (a dict of per-sample arrays
    of shape (n_chunk, k) whose key ``"importance"`` is what ``transform``
    returns; ``fit`` says whether the call comes from ``fit``), may add
    fit-only state to ``space`` in ``_prepare_fit`` and set the global
    attributes in ``_set_global``.
    """

    #: Whether the importances carry a sign (attributions) or only a
    #: magnitude (Sobol' indices); ``score`` compares them with the signed or
    #: the absolute drop of the output.
    _signed_importances = True

    _parameter_constraints: dict = {
        # checked in fit by skconcepts._extractors.check_extractor (a TypeError
        # that says what is missing and what is accepted)
        "extractor": "no_validation",
        "head": "no_validation",
        "prefit": ["boolean"],
        "residual": ["boolean"],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "device": DEVICE_CONSTRAINT,
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # ---------------------------------------------------------------- tags
    # (input tags from the extractor: skconcepts._extractors.MetaExtractorMixin)
    def _extractor_for_tags(self):
        return self.extractor

    # ------------------------------------------------------ concept space
    def _fit_extractor(self, X):
        return fitted_extractor(self.extractor, X, prefit=self.prefit)

    def _concept_space(self, X):
        """Codes, decoder and residual rows for ``X`` (a validated array).

        The decoder ``u @ W + b`` is read off the extractor's
        ``inverse_transform`` (see :func:`affine_decoder`). With
        ``residual=True`` each sample's residual row is ``x - u @ W``, so the
        full mask gives back ``x`` exactly; otherwise it is the offset ``b``.
        """
        codes = np.asarray(self.extractor_.transform(X))
        if codes.ndim != 2 or codes.shape[0] != X.shape[0]:
            raise ValueError(
                f"{type(self.extractor_).__name__}.transform returned shape "
                f"{codes.shape} for {X.shape[0]} samples."
            )
        codes = codes.astype(X.dtype, copy=False)
        W, b = affine_decoder(
            self.extractor_, codes.shape[1], X.dtype, check_codes=codes
        )
        if W.shape[1] != X.shape[1]:
            raise ValueError(
                f"The extractor decodes to {W.shape[1]} features but X has "
                f"{X.shape[1]}."
            )
        # the residual rows x - u W are computed chunk by chunk (see
        # _space_slice), so a memmap X is never copied whole
        return {"codes": codes, "W": W, "X": X if self.residual else None, "b": b}

    # ------------------------------------------------------------ targets
    def _head_and_outputs(self, X):
        head = as_head(self.head)
        out = head_outputs(
            head, X, batch_size=self.batch_size, device=self._device_arg()
        )
        if out.shape[0] != X.shape[0]:
            raise ValueError(
                f"The head returned {out.shape[0]} rows for {X.shape[0]} samples."
            )
        if not np.all(np.isfinite(out)):
            raise ValueError("The head returned NaN or infinite outputs on X.")
        return head, out

    def _device_arg(self):
        return self.device

    def _targets_from_y(self, y, head, n_out):
        """Output column of each sample given labels ``y``."""
        if n_out == 1:
            return np.zeros(len(y), dtype=np.int64)
        classes = head.classes
        if classes is not None and len(classes) == n_out:
            order = np.argsort(classes, kind="stable")
            sorted_cls = classes[order]
            pos = np.searchsorted(sorted_cls, y)
            pos = np.clip(pos, 0, n_out - 1)
            known = sorted_cls[pos] == y
            if not np.all(known):
                raise ValueError(
                    f"y contains labels {np.unique(np.asarray(y)[~known])[:5]} that "
                    f"are not among the head's classes_ {classes.tolist()}."
                )
            return order[pos].astype(np.int64)
        y_arr = np.asarray(y)
        if y_arr.dtype.kind not in "iuf" or not np.all(np.mod(y_arr, 1) == 0):
            raise ValueError(
                f"The head returns {n_out} outputs and has no classes_, so y must "
                f"hold output column indices in [0, {n_out}); got {y_arr.dtype} "
                "labels."
            )
        t = y_arr.astype(np.int64)
        bad = t[(t < 0) | (t >= n_out)]
        if bad.size:
            raise ValueError(
                f"y asks for output column {int(bad[0])}, but the head returns only "
                f"{n_out} output(s) per row; y must hold column indices in "
                f"[0, {n_out})."
            )
        return t

    def _targets(self, X, y, head, out):
        """(targets, group index per sample, group labels or None)."""
        n_out = out.shape[1]
        if y is not None:
            target = self._targets_from_y(y, head, n_out)
            labels, groups = np.unique(y, return_inverse=True)
            return target, groups.reshape(-1), labels
        if n_out == 1:
            return np.zeros(X.shape[0], dtype=np.int64), None, None
        target = np.argmax(out, axis=1).astype(np.int64)
        cols, groups = np.unique(target, return_inverse=True)
        classes = head.classes
        labels = (
            classes[cols] if classes is not None and len(classes) == n_out else cols
        )
        return target, groups.reshape(-1), labels

    # ----------------------------------------------------------- explaining
    def _chunks(self, n_samples, k, fit):
        per = max(1, self._n_evals(k) + (self._n_replicate_values(k) if fit else 0))
        size = max(1, chunk_values() // per)
        for start in range(0, n_samples, size):
            yield slice(start, min(start + size, n_samples))

    def _n_replicate_values(self, k):
        """Extra float64 values held per sample during fit (e.g. bootstrap)."""
        return 0

    def _prepare_fit(self, space):
        """Add fit-only state to ``space`` (overridden)."""

    def _iter_explanations(self, space, target, head, *, fit=False):
        from .._progress import progress

        n, k = space["codes"].shape
        name = type(self).__name__
        with progress(n, desc=name, unit="sample", verbose=self.verbose) as bar:
            for sl in self._chunks(n, k, fit):
                if self.verbose:
                    print(
                        f"[{name}] explaining samples {sl.start}-{sl.stop} of {n}",
                        file=sys.stderr,
                    )
                yield sl, self._explain(space, sl, target[sl], head, fit)
                bar.update(sl.stop - sl.start)

    def _engine_kw(self):
        return {"batch_size": self.batch_size, "device": self._device_arg()}

    def _space_slice(self, space, sl):
        """(codes, W, residual rows) of the samples in slice ``sl``."""
        codes, W = space["codes"][sl], space["W"]
        if space["X"] is None:
            return codes, W, space["b"]
        Xs = np.asarray(space["X"][sl])
        return codes, W, Xs - codes @ W

    def _per_sample(self, X, y=None):
        """Validated X -> (per-sample importances, space, target, head)."""
        space = self._concept_space(X)
        head, out = self._head_and_outputs(X)
        if y is None:
            target, _, _ = self._targets(X, None, head, out)
        else:
            target = self._targets_from_y(y, head, out.shape[1])
        n, k = space["codes"].shape
        imp = np.empty((n, k), dtype=np.float64)
        for sl, res in self._iter_explanations(space, target, head):
            imp[sl] = res["importance"]
        return imp, space, target, head

    # ------------------------------------------------------------ public
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the extractor (unless ``prefit``) and explain every sample of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations (the head's input).
        y : array-like of shape (n_samples,), default=None
            Labels. When given, the importances are averaged per label
            (``classes_``), and for a head with several outputs each sample is
            explained for the output of its label (mapped through the head's
            ``classes_`` when it has one, else taken as a column index).
            When None, a head with several outputs is explained for its
            arg-max on each sample and the importances are averaged per
            predicted class. For a single-output head (a regression or a
            binary decision function) ``y`` only groups the samples; call
            ``fit(X)`` for one global importance.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        check_extractor(self.extractor, prefit=self.prefit)
        X = self._validate_X(X, reset=True)
        if y is not None:
            y = column_or_1d(y, warn=True)
            check_consistent_length(X, y)
            check_classification_targets(y)  # y names classes (output columns)
        self._check_params_extra()
        resolve_device(self.device)  # a device this machine lacks is an error
        self._design_seed = seed_from(self.random_state)
        self.extractor_ = self._fit_extractor(X)
        space = self._concept_space(X)
        head, out = self._head_and_outputs(X)
        n, k = space["codes"].shape
        self._prepare_fit(space)
        self.n_concepts_ = k
        self.n_outputs_ = out.shape[1]
        target, groups, labels = self._targets(X, y, head, out)
        n_groups = 1 if groups is None else len(labels)
        if groups is None:
            groups = np.zeros(n, dtype=np.int64)
        counts = np.bincount(groups, minlength=n_groups).astype(np.float64)
        acc, acc_reps = {}, {}
        for sl, res in self._iter_explanations(space, target, head, fit=True):
            onehot = np.zeros((sl.stop - sl.start, n_groups))
            onehot[np.arange(sl.stop - sl.start), groups[sl]] = 1.0
            for key, val in res.items():
                if key == "replicates":
                    for rkey, rval in val.items():
                        part = np.einsum("ng,bnk->bgk", onehot, rval)
                        acc_reps[rkey] = acc_reps.get(rkey, 0.0) + part
                else:
                    acc[key] = acc.get(key, 0.0) + onehot.T @ val
        means = {key: val / counts[:, None] for key, val in acc.items()}
        rep_means = {key: val / counts[None, :, None] for key, val in acc_reps.items()}
        single = labels is None
        if not single:
            self.classes_ = labels
            self.class_counts_ = counts.astype(np.int64)
        self._set_global(means, rep_means, single, X.dtype)
        return self

    def _check_params_extra(self):
        """Checks the constraints cannot express (overridden)."""

    def transform(self, X):
        """Per-sample concept importances.

        Each sample is explained for the head's single output, or its
        arg-max output when the head has several (for chosen outputs, call
        :func:`~skconcepts.importance.concept_sobol_indices` or the
        attribution functions with ``target=``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations.

        Returns
        -------
        importances : ndarray of shape (n_samples, n_concepts)
            In the dtype of ``X``.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        imp, _, _, _ = self._per_sample(X)
        return imp.astype(X.dtype, copy=False)

    def score(self, X, y=None):
        """C-muFidelity of the per-sample importances (greater is better).

        For each sample, random subsets ``S`` of concepts (``n_subsets=128``
        subsets of ``max(1, round(n_concepts / 5))`` concepts, seeded by
        ``random_state``) are removed (``u_S = 0``); the score is the
        Pearson correlation between ``sum_{i in S} phi_i`` and the drop of the
        explained output ``f(1) - f(1 - 1_S)``, averaged over samples
        (see :func:`skconcepts.metrics.c_mufidelity`). Unsigned importances
        (Sobol' indices) are compared with the magnitude of the drop,
        ``|f(1) - f(1 - 1_S)|``, signed ones (attributions) with the drop
        itself. 1 means the
        importances predict the effect of removing concepts perfectly.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations.
        y : array-like of shape (n_samples,), default=None
            Labels selecting the explained output, as in :meth:`fit`; None
            uses the head's arg-max (or its single output).

        Returns
        -------
        score : float
            Mean C-muFidelity in [-1, 1].
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        if y is not None:
            y = column_or_1d(y, warn=True)
            check_consistent_length(X, y)
        imp, space, target, head = self._per_sample(X, y)
        n, k = imp.shape
        per_sample = np.empty(n)
        for sl in self._chunks(n, k, False):
            codes, W, r = self._space_slice(space, sl)
            # same seed in every chunk: the same random subsets for all samples
            _, per_sample[sl] = c_mufidelity(
                head,
                codes,
                W,
                imp[sl],
                residual=r,
                target=target[sl],
                random_state=self._design_seed,
                absolute=not self._signed_importances,
                return_per_sample=True,
                **self._engine_kw(),
            )
        return float(np.mean(per_sample))
