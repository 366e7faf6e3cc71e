"""The base class every concept extractor inherits.

A concept extractor factors an activation matrix ``X`` (``n_samples x
n_features``) into codes ``U`` (``n_samples x n_concepts``) and a dictionary
``components_`` (``n_concepts x n_features``) so that ``X ~ U @ components_``
(plus an optional offset). Scale convention: the rows of ``components_`` have
unit L2 norm (a dead atom's row is zero) and the codes carry the magnitude.
The base class keeps the contracts of ``shared/design.md``: parameter
validation, NumPy fitted state, device resolution at call time, dtype
preservation, batched transfer to the device, ``inverse_transform``,
``score`` (reconstruction R^2) and feature names.
"""

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.utils.validation import check_array

from ._backend import (
    default_batch_size,
    iter_batches,
    resolve_device,
    to_numpy,
    torch_dtype,
)
from ._compat import check_is_fitted, validate_data
from ._faults import VersionedStateMixin, check_overflow
from ._io import memmap_face
from ._stats import R2Accumulator

__all__ = ["ConceptExtractor", "DEVICE_CONSTRAINT"]

#: The hooks of the callback protocol shared by every iterative fit (the NMF
#: family and the SAEs): ``on_train_begin(estimator, session)``,
#: ``on_epoch_end(estimator, session, record) -> bool`` (a true return stops
#: training) and ``on_train_end(estimator, session)``.
CALLBACK_METHODS = ("on_train_begin", "on_epoch_end", "on_train_end")


def check_callbacks(callbacks):
    """The callbacks as a list, each with at least one hook of the protocol.

    Raises a ``TypeError`` for a skorch callback (another protocol) and for an
    object without any of :data:`CALLBACK_METHODS`.
    """
    callbacks = list(callbacks or [])
    for cb in callbacks:
        if type(cb).__module__.startswith("skorch"):
            raise TypeError(
                f"{type(cb).__name__} is a skorch callback; skconcepts calls "
                "on_train_begin(estimator, session), on_epoch_end(estimator, "
                "session, record) and on_train_end(estimator, session). Use "
                "skconcepts.sae.Checkpoint / LearningRateSchedule, "
                "early_stopping=True and verbose=1, or wrap it in an object with "
                "those methods."
            )
        if not any(callable(getattr(cb, m, None)) for m in CALLBACK_METHODS):
            raise TypeError(
                f"callback {cb!r} has none of the methods {CALLBACK_METHODS}."
            )
    return callbacks


def call_hook(callbacks, name, *args):
    """Call hook ``name`` of every callback that has it; True if one asked to stop."""
    stop = False
    for cb in callbacks:
        fn = getattr(cb, name, None)
        if callable(fn) and fn(*args):
            stop = True
    return stop


def unit_rows(W):
    """``(W / norms, norms)`` for the rows of a torch tensor ``W``.

    The scale convention of every concept extractor: ``components_`` has
    unit-norm rows and the codes carry the magnitude. A zero row (a dead atom)
    stays zero, with norm 1 (its codes are zero anyway).
    """
    import torch

    norms = torch.linalg.vector_norm(W, dim=1)
    norms = torch.where(norms > 0, norms, torch.ones_like(norms))
    return W / norms[:, None], norms


#: Constraint for the ``device`` parameter: any string, resolved (and checked
#: against the machine) at fit/transform time by ``resolve_device``.
DEVICE_CONSTRAINT = [str, None]


class ConceptExtractor(
    VersionedStateMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    BaseEstimator,
):
    """Base class for concept extractors (NMF family, SAEs, ...).

    Subclasses implement ``fit`` (decorated with ``_fit_context``), set
    ``components_`` and implement :meth:`_encode`, which maps a batch of
    activations (a tensor on the device) to codes using the fitted state that
    :meth:`_device_state` moved to the device. They may override
    :meth:`_decode` and :meth:`_decode_offset` when decoding is more than
    ``U @ components_``.

    The class attribute ``_positive_only`` marks methods that need
    non-negative input (NMF): ``fit``, ``transform`` and ``score`` then reject
    negative values with scikit-learn's "Negative values in data" error.

    Attributes
    ----------
    components_ : ndarray of shape (n_concepts, n_features)
        The concepts, one per row (set by the subclass's ``fit``). Every
        extractor of the package gives them unit L2 norm (a dead atom's row
        is zero, and so are its codes); the codes carry the magnitude.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during ``fit``, when they are all strings.

    Notes
    -----
    Fitted state is kept in NumPy arrays so that a model fitted on a GPU can be
    pickled and loaded on a machine without one. Nothing is cached on ``self``
    outside ``fit``. A pickle carries the skconcepts version
    (``_skconcepts_version``); loading it under another version warns with
    :class:`skconcepts._faults.InconsistentSkconceptsVersionWarning`.

    Examples
    --------
    A minimal extractor: fixed concepts, codes by projection.

    >>> import numpy as np
    >>> from skconcepts import ConceptExtractor
    >>> class FirstAxes(ConceptExtractor):
    ...     def __init__(self, device="cpu"):
    ...         self.device = device
    ...     def fit(self, X, y=None):
    ...         X = self._validate_X(X, reset=True)
    ...         self.components_ = np.eye(2, X.shape[1], dtype=X.dtype)
    ...         return self
    ...     def _encode(self, Xb, state):
    ...         return Xb @ state["components"].T
    >>> X = np.array([[1.0, 2.0, 0.0], [3.0, 4.0, 0.0]])
    >>> est = FirstAxes().fit(X)
    >>> est.transform(X)
    array([[1., 2.],
           [3., 4.]])
    >>> est.score(X), est.get_feature_names_out().tolist()
    (1.0, ['firstaxes0', 'firstaxes1'])
    """

    _positive_only = False

    _parameter_constraints: dict = {
        "device": DEVICE_CONSTRAINT,
    }

    # ------------------------------------------------------------------ tags
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = self._positive_only
        tags.input_tags.sparse = False
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # ---------------------------------------------------------- validation
    def _validate_X(self, X, *, reset):
        """Validate ``X`` (and set ``n_features_in_`` when ``reset``).

        Returns a float32 or float64 array (float16 is converted to
        float64); memmaps are not copied, and a chunked on-disk array (zarr,
        HDF5, dask) is given a memmap face by :func:`skconcepts._io.as_memmap`
        instead of being loaded whole. Values whose squares or Gram products
        overflow the dtype are refused with a ``ValueError``
        (:func:`skconcepts._faults.check_overflow`).
        """
        X = validate_data(
            self,
            memmap_face(X),
            dtype=[np.float64, np.float32],
            ensure_non_negative=self._positive_only,
            reset=reset,
        )
        check_overflow(X, type(self).__name__)
        return X

    def _resolve_device(self):
        return resolve_device(getattr(self, "device", "auto"))

    def _batch_size_for(self, n_features, itemsize=8):
        bs = getattr(self, "batch_size", None)
        if bs is None:
            bs = default_batch_size(n_features, itemsize=itemsize)
        return bs

    def _transform_batch_rows(self, n_features, itemsize):
        """Rows per batch of the batched passes (transform, score, ...).

        Default: ``batch_size`` when the estimator has one that is not None,
        else a share of scikit-learn's ``working_memory``
        (:func:`skconcepts._backend.default_batch_size`). The SAEs override
        it (their ``batch_size`` is the training minibatch only).
        """
        return self._batch_size_for(n_features, itemsize)

    @property
    def _n_features_out(self):
        """Number of concepts, used by ``get_feature_names_out``."""
        return self.components_.shape[0]

    # ------------------------------------------------------------- hooks
    def _device_state(self, device, dtype):
        """Fitted state as tensors on ``device`` for :meth:`_encode`.

        The default moves ``components_`` only. Returned, never stored.
        """
        import torch

        return {
            "components": torch.as_tensor(self.components_, dtype=dtype, device=device)
        }

    def _encode(self, Xb, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def _decode_offset(self):
        """Offset added when decoding (e.g. an SAE's decoder bias), or None."""
        return None

    def _decode(self, U, state):
        """Decode a batch of codes (a tensor) back to the input space."""
        out = U @ state["components"]
        offset = state.get("offset")
        if offset is not None:
            out = out + offset
        return out

    def _state_with_offset(self, device, dtype):
        import torch

        state = self._device_state(device, dtype)
        offset = self._decode_offset()
        if offset is not None and "offset" not in state:
            state["offset"] = torch.as_tensor(offset, dtype=dtype, device=device)
        return state

    def _inference_context(self, dtype):
        """``(device, state)``: the resolved device and the fitted state on it."""
        device = self._resolve_device()
        return device, self._state_with_offset(device, dtype)

    def _map_batches(self, X, fn, out_width=None, *, context=None, batch_rows=None):
        """The one batched pass: ``fn`` on row batches of ``X`` on the device.

        Every batched pass of the package goes through here: ``transform``,
        ``inverse_transform``, ``score``, the SAE engine's fit metrics and
        ``AlignedSAE``'s passes.

        Parameters
        ----------
        X : ndarray or memmap of shape (n_samples, n)
            Validated rows (float32 / float64); one batch is read at a time.
        fn : callable
            ``fn(xb, state, rows)`` with ``xb`` the batch (a tensor on the
            device, in the dtype of ``X``), ``state`` the fitted state on the
            device and ``rows`` the batch's slice of ``X``. Returns a tensor
            of ``out_width`` columns, or anything when ``out_width`` is None
            (``fn`` then accumulates what it needs).
        out_width : int or None, default=None
            Columns of the output array; None returns None.
        context : (device, state) or None, default=None
            None: :meth:`_inference_context`, resolved once for the pass.
        batch_rows : int or None, default=None
            Rows per batch; None: :meth:`_transform_batch_rows` of ``X``.

        Returns
        -------
        out : ndarray of shape (n_samples, out_width) in the dtype of ``X``, or None
        """
        import torch

        dtype = torch_dtype(X.dtype)
        device, state = context or self._inference_context(dtype)
        if batch_rows is None:
            batch_rows = self._transform_batch_rows(X.shape[1], X.dtype.itemsize)
        out = None
        if out_width is not None:
            out = np.empty((X.shape[0], out_width), dtype=X.dtype)
        with torch.no_grad():
            for sl, xb in iter_batches(X, batch_rows, device, dtype):
                res = fn(xb, state, sl)
                if out is not None:
                    out[sl] = to_numpy(res, X.dtype)
        return out

    # ------------------------------------------------------------ public API
    def transform(self, X):
        """Encode ``X`` as concept codes.

        Each row is encoded independently of the others, in batches on the
        estimator's device.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations. A NumPy memmap is read one batch at a time.

        Returns
        -------
        U : ndarray of shape (n_samples, n_concepts)
            Concept codes, in the dtype of ``X`` (float32 or float64).
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self._transform_validated(X)

    def _transform_validated(self, X):
        return self._map_batches(
            X, lambda xb, state, _: self._encode(xb, state), self._n_features_out
        )

    def inverse_transform(self, X):
        """Map concept codes back to the input space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_concepts)
            Concept codes, as returned by :meth:`transform`.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
            Reconstructed activations ``U @ components_`` (plus the decoder
            offset for estimators that have one).
        """
        check_is_fitted(self)
        U = check_array(X, dtype=[np.float64, np.float32])
        k = self._n_features_out
        if U.shape[1] != k:
            raise ValueError(
                f"X has {U.shape[1]} features (concepts), but "
                f"{type(self).__name__} has {k} concepts; inverse_transform expects "
                f"the codes returned by transform."
            )
        k_out = self.n_features_in_
        return self._map_batches(
            U,
            lambda ub, state, _: self._decode(ub, state),
            self.n_features_in_,
            batch_rows=self._transform_batch_rows(k_out, U.dtype.itemsize),
        )

    def score(self, X, y=None):
        """Reconstruction R^2 of ``X``: ``1 - ||X - X_hat||^2 / ||X - mean(X)||^2``.

        ``X_hat = inverse_transform(transform(X))`` and ``mean(X)`` is the
        per-feature mean. Computed in batches, so a memmap is never loaded
        whole. Greater is better; 1 is a perfect reconstruction.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        score : float
            Reconstruction R^2.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        device, state = self._inference_context(torch_dtype(X.dtype))
        acc = R2Accumulator(device, mean=np.mean(X, axis=0, dtype=np.float64))
        self._map_batches(
            X,
            lambda xb, st, _: acc.update(xb, self._decode(self._encode(xb, st), st)),
            context=(device, state),
        )
        return acc.score()
