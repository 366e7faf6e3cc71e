"""Head adapters: one interface over callables, torch modules and fitted models.

A *head* maps activations ``(m, n_features)`` to model outputs ``(m,)`` or
``(m, n_outputs)``. The importance estimators accept three kinds:

- a torch ``nn.Module``: evaluated on tensors on the requested device, in
  eval mode (the mode is restored afterwards), under ``no_grad`` unless a
  gradient is asked for;
- a fitted scikit-learn model: ``decision_function``, else
  ``predict_proba``, else ``predict``, on NumPy arrays;
- any other callable: called on NumPy arrays.
"""

import contextlib
import copy
import sys

import numpy as np

from .._backend import _torch

__all__ = ["as_head"]


def _is_torch_module(obj):
    # an object cannot be a torch module unless torch was imported: checking
    # sys.modules keeps NumPy-only work free of torch's import time
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


class _Head:
    """A head wrapped so that the engine can call it uniformly.

    Parameters
    ----------
    head : callable, torch.nn.Module or fitted scikit-learn model
        See the module docstring.

    Attributes
    ----------
    kind : {"torch", "sklearn", "callable"}
    is_torch : bool
        True when the head takes tensors (and can give gradients).
    classes : ndarray or None
        The head's ``classes_`` when it has one (scikit-learn classifiers).
    """

    def __init__(self, head):
        if isinstance(head, _Head):
            head = head.head
        self.head = head
        if _is_torch_module(head):
            self.kind = "torch"
            self._method = head
        elif any(
            hasattr(head, m) for m in ("decision_function", "predict_proba", "predict")
        ) and hasattr(head, "get_params"):
            from sklearn.exceptions import NotFittedError
            from sklearn.utils.validation import check_is_fitted

            try:
                check_is_fitted(head)
            except NotFittedError as exc:
                raise ValueError(
                    f"The head {type(head).__name__} is a scikit-learn estimator "
                    "that is not fitted. Pass a fitted model; to keep it fitted "
                    "when the importance estimator is cloned (GridSearchCV, "
                    "cross_validate), wrap it in "
                    "sklearn.frozen.FrozenEstimator."
                ) from exc
            self.kind = "sklearn"
            for name in ("decision_function", "predict_proba", "predict"):
                if hasattr(head, name):
                    self._method = getattr(head, name)
                    break
        elif callable(head):
            self.kind = "callable"
            self._method = head
        else:
            hint = ""
            if isinstance(head, (np.ndarray, list, tuple)):
                hint = (
                    " The functions of skconcepts.importance and "
                    "skconcepts.metrics take the head first: "
                    "f(head, codes, components, ...), as "
                    "sklearn.inspection.permutation_importance(estimator, X, y)."
                )
            raise ValueError(
                "head must be a callable on arrays, a torch nn.Module or a fitted "
                f"scikit-learn model; got {type(head).__name__}.{hint}"
            )
        self.is_torch = self.kind == "torch"
        classes = getattr(head, "classes_", None) if self.kind == "sklearn" else None
        self.classes = None if classes is None else np.asarray(classes)

    def param_dtype(self):
        """The floating dtype of a torch head's parameters (None if not torch)."""
        if not self.is_torch:
            return None
        for p in self.head.parameters():
            if p.is_floating_point():
                return p.dtype
        return None

    @contextlib.contextmanager
    def prepared(self, device, *, grad=False):
        """Yield a function ``z -> (m, n_outputs)`` output for ``device``.

        For a torch head the function takes and returns tensors on
        ``device``; the module is put in eval mode for the duration (and
        copied when its parameters live on another device, so the user's
        module is never moved). For the other kinds it takes a NumPy array
        and returns a NumPy array.
        """
        if not self.is_torch:

            def call_np(z):
                return _as_2d(np.asarray(self._method(z)), z.shape[0])

            yield call_np
            return
        torch = _torch()
        module = self.head
        params = list(module.parameters()) + list(module.buffers())
        if any(p.device != device for p in params):
            module = copy.deepcopy(module).to(device)
        was_training = module.training
        module.eval()
        try:
            ctx = torch.enable_grad() if grad else torch.no_grad()
            with ctx:

                def call_torch(z):
                    out = module(z)
                    return _as_2d(out, z.shape[0])

                yield call_torch
        finally:
            module.train(was_training)


def _as_2d(out, n_rows):
    """Check the head's output has ``n_rows`` rows and make it 2-D."""
    shape = tuple(out.shape)
    if len(shape) == 0 or shape[0] != n_rows or len(shape) > 2:
        raise ValueError(
            f"The head returned an output of shape {shape} for {n_rows} input "
            f"rows; it must return ({n_rows},) or ({n_rows}, n_outputs)."
        )
    if len(shape) == 1:
        return out.reshape(n_rows, 1)
    return out


def as_head(head):
    """Wrap ``head`` (callable, torch module, fitted model) in a :class:`_Head`."""
    return head if isinstance(head, _Head) else _Head(head)
