"""Concept extractors as the meta-estimators see them: one duck-typed contract.

:class:`~skconcepts.SobolConceptImportance`,
:class:`~skconcepts.ConceptAttribution` and :class:`~skconcepts.TaCoEraser`
(its ``decomposition``) work *around* a concept extractor. What they accept is
decided here, once:

- a scikit-learn estimator with ``fit`` and ``transform`` (ours, or
  scikit-learn's ``NMF``, ``PCA``, ...), cloned and fitted by the
  meta-estimator;
- with ``prefit=True``, a fitted object used as is: a scikit-learn estimator,
  or any object with ``transform`` and a decoder (``inverse_transform``, or
  ``components_``), with or without ``fit`` and scikit-learn's base classes
  (e.g. a pretrained sparse autoencoder brought from elsewhere).

The decoder ``u -> u @ W + b`` is read off ``inverse_transform`` when there is
one, else ``W = components_`` and ``b = 0`` (see
:func:`skconcepts.importance.affine_decoder`). The input tags of the
meta-estimator (``positive_only``, ``allow_nan``) and ``non_deterministic``
come from the extractor when it has scikit-learn tags, and are scikit-learn's
defaults otherwise; :class:`MetaExtractorMixin` holds the shared tags and input
validation.
"""

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_non_negative

from ._compat import check_is_fitted, validate_data
from ._faults import VersionedStateMixin, check_overflow
from ._io import memmap_face

__all__ = [
    "ACCEPTED",
    "MetaExtractorMixin",
    "check_extractor",
    "check_extractor_fitted",
    "extractor_tags",
    "fitted_extractor",
]

#: What a meta-estimator accepts as extractor, quoted in every error message.
ACCEPTED = (
    "skconcepts accepts as extractor a scikit-learn estimator with fit and "
    "transform (cloned and fitted; e.g. NMFConcepts, TopKSAE, sklearn's PCA or "
    "NMF), or, with prefit=True, a fitted object with transform plus "
    "inverse_transform or components_ (no fit or scikit-learn base needed)."
)


def _describe(obj):
    return f"{type(obj).__name__} object" if not isinstance(obj, type) else repr(obj)


def check_extractor(extractor, *, prefit, name="extractor"):
    """Check that ``extractor`` fits the contract; raise ``TypeError`` if not.

    Parameters
    ----------
    extractor : object
        The extractor given to a meta-estimator.
    prefit : bool
        Whether it is used as fitted (then it needs no ``fit``).
    name : str, default="extractor"
        The parameter's name, for the message.

    Returns
    -------
    extractor : object
        Unchanged.
    """
    if isinstance(extractor, type):
        raise TypeError(
            f"{name} must be an instance, not the class {extractor.__name__}; "
            f"pass {extractor.__name__}(...). {ACCEPTED}"
        )
    missing = [m for m in ("transform",) if not callable(getattr(extractor, m, None))]
    if not prefit and not callable(getattr(extractor, "fit", None)):
        missing.append("fit (or pass prefit=True to use a fitted object as is)")
    if prefit and not (
        callable(getattr(extractor, "inverse_transform", None))
        or hasattr(extractor, "components_")
    ):
        missing.append("inverse_transform or components_ (the decoder)")
    if missing:
        raise TypeError(
            f"{name} ({_describe(extractor)}) has no {' and no '.join(missing)}. "
            f"{ACCEPTED}"
        )
    return extractor


def check_decoder(extractor, name="extractor"):
    """A fitted extractor must decode: ``inverse_transform`` or ``components_``."""
    if not (
        callable(getattr(extractor, "inverse_transform", None))
        or hasattr(extractor, "components_")
    ):
        raise TypeError(
            f"The fitted {name} ({_describe(extractor)}) has neither "
            "inverse_transform nor components_, so its concepts cannot be "
            f"decoded back to activations. {ACCEPTED}"
        )


def check_extractor_fitted(extractor, name="extractor"):
    """Raise ``ValueError`` when a prefit scikit-learn extractor is not fitted.

    An object without ``fit`` (a third-party model) is taken as fitted.
    """
    if not callable(getattr(extractor, "fit", None)):
        return
    if extractor_tags(extractor) is None:  # no scikit-learn tags: its own word
        is_fitted = getattr(extractor, "__sklearn_is_fitted__", None)
        if callable(is_fitted) and not is_fitted():
            raise ValueError(
                f"prefit=True but the {name} says it is not fitted "
                "(__sklearn_is_fitted__). Fit it first, or use prefit=False."
            )
        return
    try:
        check_is_fitted(extractor)
    except NotFittedError as exc:
        raise ValueError(
            f"prefit=True but the {name} is not fitted. Fit it first, or use "
            "prefit=False; to keep a fitted extractor through clone() "
            "(GridSearchCV, cross_validate) wrap it in "
            "sklearn.frozen.FrozenEstimator."
        ) from exc
    except TypeError:  # fit but no scikit-learn estimator: taken as fitted
        return


def fitted_extractor(extractor, X, *, prefit, fit=None, name="extractor"):
    """The fitted extractor: ``extractor`` itself (prefit) or a fitted clone.

    Parameters
    ----------
    extractor : object
        Checked with :func:`check_extractor`.
    X : ndarray
        Training activations (unused when ``prefit``).
    prefit : bool
        Use ``extractor`` as fitted.
    fit : callable, default=None
        ``fit(unfitted) -> fitted`` replacing ``clone(extractor).fit(X)``
        (e.g. a seeded clone fitted by row batches).
    name : str, default="extractor"
        The parameter's name, for messages.
    """
    check_extractor(extractor, prefit=prefit, name=name)
    if prefit:
        check_extractor_fitted(extractor, name)
        return extractor
    if not callable(getattr(extractor, "get_params", None)):
        raise TypeError(
            f"{name} ({_describe(extractor)}) has fit but no get_params, so it "
            "cannot be cloned and fitted: pass prefit=True to use it as fitted, "
            f"or derive it from sklearn.base.BaseEstimator. {ACCEPTED}"
        )
    fitted = fit(extractor) if fit is not None else clone(extractor).fit(X)
    check_decoder(fitted, name)
    return fitted


def extractor_tags(extractor):
    """scikit-learn tags of ``extractor``, or None when it has none.

    Never raises: a plain object (no ``__sklearn_tags__``) or one whose tags
    cannot be computed gives None, and the caller keeps its defaults.
    """
    if extractor is None or isinstance(extractor, (str, type)):
        return None
    if not hasattr(extractor, "__sklearn_tags__"):
        return None
    from sklearn.utils import get_tags

    try:
        return get_tags(extractor)
    except Exception:  # a broken third-party tag method: defaults
        return None


class MetaExtractorMixin(VersionedStateMixin):
    """Tags and input validation shared by the meta-estimators.

    A subclass says which object holds the extractor in
    :meth:`_extractor_for_tags`; the input tags it takes from it are
    ``positive_only`` (the meta-estimator refuses negative ``X`` with the
    message scikit-learn's checks expect), ``allow_nan`` and the
    ``non_deterministic`` flag. Dense input only; float64 and float32 are
    preserved; values whose squares overflow the dtype are refused
    (:func:`skconcepts._faults.check_overflow`). Pickles carry the skconcepts
    version (:class:`skconcepts._faults.VersionedStateMixin`).
    """

    def _extractor_for_tags(self):  # pragma: no cover - overridden
        return getattr(self, "extractor", None)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        if tags.transformer_tags is not None:  # a regressor has none
            tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        inner = extractor_tags(self._extractor_for_tags())
        if inner is not None:
            tags.input_tags.positive_only = inner.input_tags.positive_only
            tags.input_tags.allow_nan = inner.input_tags.allow_nan
            tags.non_deterministic = inner.non_deterministic
        return tags

    def _validate_X(self, X, y="no_validation", *, reset):
        """Validate ``X`` (and ``y`` when given) as the extractor's tags ask.

        A chunked on-disk array (zarr, HDF5, dask) is given a memmap face by
        :func:`skconcepts._io.memmap_face` instead of being loaded whole;
        memmaps are not copied.
        """
        from sklearn.utils import get_tags

        tags = get_tags(self).input_tags
        out = validate_data(
            self,
            memmap_face(X),
            y,
            dtype=[np.float64, np.float32],
            ensure_all_finite="allow-nan" if tags.allow_nan else True,
            reset=reset,
        )
        X_out = out if isinstance(y, str) else out[0]
        if tags.positive_only:  # check_X_y has no ensure_non_negative
            check_non_negative(X_out, f"X in {type(self).__name__}")
        check_overflow(X_out, type(self).__name__)
        return out
