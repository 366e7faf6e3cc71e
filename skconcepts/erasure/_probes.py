"""Probes for erasure: the default classifiers and their margin heads.

A *probe* is a classifier trained to recover an attribute from activations.
TaCo needs two things from it:

- a fresh, seeded probe, for the Sobol' ranking, the stopping rule of
  ``n_remove="auto"``, :meth:`TaCoEraser.score` and
  :func:`skconcepts.metrics.leakage` (:func:`make_probe`, :func:`seeded_clone`);
- a *margin head* of a fitted probe, the scalar whose variance the Sobol'
  indices decompose (:func:`margin_head`): the top-1 minus top-2 logit for
  several classes (as the TaCo reference does), the signed decision value
  for two classes.

An ``MLPClassifier`` (alone, or after ``StandardScaler`` steps in a
``Pipeline``) is turned into a torch module holding the same weights, so the
thousands of masked evaluations of the Sobol' design run batched on the
estimator's device; any other fitted classifier is evaluated through its
``decision_function`` (else ``predict_proba``) on NumPy arrays.
"""

import numpy as np
from sklearn.base import clone
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from .._backend import _torch
from ..metrics._erasure import make_probe

__all__ = ["make_probe", "margin_head", "seeded_clone"]


def seeded_clone(estimator, seed):
    """Clone ``estimator`` and seed every nested ``random_state`` left at None."""
    est = clone(estimator)
    params = est.get_params(deep=True)
    fixed = {
        key: int(seed)
        for key, value in params.items()
        if (key == "random_state" or key.endswith("__random_state")) and value is None
    }
    if fixed:
        est.set_params(**fixed)
    return est


def _split_mlp(probe):
    """``(scalers, mlp)`` when ``probe`` is an MLP behind StandardScalers, else None."""
    if isinstance(probe, MLPClassifier):
        return [], probe
    if isinstance(probe, Pipeline):
        steps = [s for _, s in probe.steps if s not in (None, "passthrough")]
        if steps and isinstance(steps[-1], MLPClassifier):
            scalers = steps[:-1]
            if all(isinstance(s, StandardScaler) for s in scalers):
                return scalers, steps[-1]
    return None


def _fold_mlp(scalers, mlp, n_features, dtype):
    """Weights of ``mlp`` with the affine scalers folded into the first layer."""
    W = [np.asarray(w, dtype=np.float64) for w in mlp.coefs_]
    b = [np.asarray(c, dtype=np.float64) for c in mlp.intercepts_]
    shift = np.zeros(n_features)
    scale = np.ones(n_features)
    for s in scalers:  # x -> (x - mean) / scale, composed left to right
        # what StandardScaler.transform does: it stores mean_ even with
        # with_mean=False (and may store scale_), but only subtracts (divides)
        # when with_mean (with_std) is set
        mean = s.mean_ if s.with_mean and s.mean_ is not None else 0.0
        sc = s.scale_ if s.with_std and s.scale_ is not None else 1.0
        shift = (shift - mean) / sc
        scale = scale / sc
    # first layer on x: ((x * scale) + shift) @ W0 + b0
    b[0] = b[0] + shift @ W[0]
    W[0] = scale[:, None] * W[0]
    return [w.astype(dtype) for w in W], [c.astype(dtype) for c in b]


def _margin(out, torch_mod=None):
    """Signed value for one column, else top-1 minus top-2 along the last axis."""
    if out.ndim == 1:
        return out
    if out.shape[1] == 1:
        return out[:, 0]
    if torch_mod is not None:
        top = torch_mod.topk(out, 2, dim=1).values
        return top[:, 0] - top[:, 1]
    top = np.sort(out, axis=1)
    return top[:, -1] - top[:, -2]


def _mlp_module(scalers, mlp, n_features, dtype):
    torch = _torch()
    W, b = _fold_mlp(scalers, mlp, n_features, dtype)
    acts = {
        "identity": lambda h: h,
        "relu": torch.relu,
        "tanh": torch.tanh,
        "logistic": torch.sigmoid,
    }
    act = acts[mlp.activation]

    class _MLPMargin(torch.nn.Module):
        """The MLP's output logits reduced to a margin (see ``margin_head``)."""

        def __init__(self):
            super().__init__()
            self.weights = torch.nn.ParameterList(
                [torch.nn.Parameter(torch.as_tensor(w), requires_grad=False) for w in W]
            )
            self.biases = torch.nn.ParameterList(
                [torch.nn.Parameter(torch.as_tensor(c), requires_grad=False) for c in b]
            )

        def forward(self, x):
            h = x
            last = len(self.weights) - 1
            for i, (w, c) in enumerate(zip(self.weights, self.biases, strict=True)):
                h = h @ w + c
                if i < last:
                    h = act(h)
            return _margin(h, torch)

    return _MLPMargin()


def _wrap_torch_module(module):
    torch = _torch()

    class _Margin(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return _margin(self.inner(x), torch)

    return _Margin(module)


def margin_head(model, n_features, dtype=np.float64):
    """The scalar head whose Sobol' indices rank the concepts.

    Parameters
    ----------
    model : fitted classifier, torch.nn.Module or callable
        A fitted scikit-learn classifier (an ``MLPClassifier``, possibly after
        ``StandardScaler`` steps, becomes a torch module with the same
        weights), a torch module, or a callable on NumPy arrays returning
        ``(m,)`` or ``(m, n_outputs)``.
    n_features : int
        Number of input features.
    dtype : numpy dtype, default=float64
        dtype of the torch module's weights (the input dtype).

    Returns
    -------
    head : torch.nn.Module or callable
        Maps ``(m, n_features)`` activations to ``(m,)``: the output itself
        when it is one column (the signed logit or decision value of a binary
        classifier), else the top-1 minus top-2 output (logits of an MLP,
        ``decision_function`` of a linear model, else probabilities; for
        ``predict_proba`` with two classes, ``p_1 - p_0``).
    """
    torch = _torch()
    if isinstance(model, torch.nn.Module):
        return _wrap_torch_module(model)
    parts = _split_mlp(model)
    if parts is not None:
        return _mlp_module(*parts, n_features, dtype)
    if hasattr(model, "decision_function"):
        method = model.decision_function

        def head(z):
            return _margin(np.asarray(method(z), dtype=np.float64))

        return head
    if hasattr(model, "predict_proba"):
        method = model.predict_proba

        def head(z):
            p = np.asarray(method(z), dtype=np.float64)
            if p.ndim == 2 and p.shape[1] == 2:
                return p[:, 1] - p[:, 0]
            return _margin(p)

        return head
    if not callable(model):
        raise ValueError(
            f"{type(model).__name__} has neither decision_function nor "
            "predict_proba and is not callable; it cannot give a margin head."
        )

    def head(z):
        return _margin(np.asarray(model(z), dtype=np.float64))

    return head
