"""How skconcepts fails well: divergence, interruption, overflow, stale pickles.

Shared by every estimator (``docs/guide/faults.md`` is the user's page):

- :class:`DivergenceError` (a ``ValueError``, as scikit-learn's SGD and MLP
  raise on floating-point overflow) and :func:`check_divergence`: a
  non-finite loss or a training R^2 below :data:`R2_FLOOR` stops a fit;
  :func:`check_finite_state` refuses to return non-finite fitted arrays;
  :func:`warn_far_from_converged` issues scikit-learn's
  ``ConvergenceWarning``.
- :func:`deferred_interrupt`: during a training loop the first Ctrl-C
  (SIGINT) only sets a flag that the loop reads after each step, so the
  step finishes and the fit ends with what was learnt (skorch's behaviour);
  a second Ctrl-C interrupts at once. :func:`warn_interrupted`.
- :func:`check_overflow`: inputs whose squares or Gram products overflow the
  working dtype (or all underflow: subnormal-scale data) are refused with a
  ``ValueError`` before any solver runs.
- :class:`InconsistentSkconceptsVersionWarning` and
  :class:`VersionedStateMixin`: pickles carry ``_skconcepts_version`` and
  loading under another version warns, as scikit-learn's
  ``InconsistentVersionWarning`` does.
"""

import contextlib
import math
import signal
import threading
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning, InconsistentVersionWarning

from ._backend import TEMP_MEMORY_SHARE, working_memory_bytes

__all__ = [
    "DivergenceError",
    "InconsistentSkconceptsVersionWarning",
    "R2_FLOOR",
    "VersionedStateMixin",
    "check_divergence",
    "check_finite_state",
    "check_finite_tensors",
    "check_overflow",
    "deferred_interrupt",
    "warn_far_from_converged",
    "warn_interrupted",
]

#: A training R^2 below this stops a fit as diverged. Predicting the mean
#: scores 0 and a random start of a dictionary scores about -1 (a residual of
#: the size of the data); -100 is a residual ten times the data's spread.
R2_FLOOR = -100.0

_SCALE_FIX = (
    "input on an extreme scale (standardise or rescale X, e.g. with "
    "sklearn.preprocessing.StandardScaler)"
)


def _fixes(estimator):
    """The likely causes and fixes of a divergence, for this estimator."""
    params = (
        estimator.get_params(deep=False) if hasattr(estimator, "get_params") else {}
    )
    if "learning_rate" in params:
        return (
            "Likely causes and fixes: a learning rate too large (lower "
            "learning_rate), unclipped gradients (set max_grad_norm, e.g. 1.0), "
            f"or {_SCALE_FIX}."
        )
    return (
        f"Likely causes and fixes: {_SCALE_FIX}, or too many concepts for the "
        "data (lower n_concepts, or regularise with alpha_W / alpha_H)."
    )


class DivergenceError(ValueError):
    """A fit diverged: a non-finite loss or a training R^2 below the floor.

    A subclass of ``ValueError`` (scikit-learn's ``SGDRegressor`` and
    ``MLPRegressor`` raise ``ValueError`` on floating-point overflow), so
    model selection with ``error_score`` treats it as a failed fit.
    """


class InconsistentSkconceptsVersionWarning(InconsistentVersionWarning):
    """An estimator is unpickled under another skconcepts version.

    A subclass of scikit-learn's ``InconsistentVersionWarning`` (one filter
    catches both).

    Parameters
    ----------
    estimator_name : str
        Estimator name.
    current_version : str
        The running skconcepts version.
    original_version : str
        The version that pickled the estimator.
    """

    def __init__(self, *, estimator_name, current_version, original_version):
        super().__init__(
            estimator_name=estimator_name,
            current_sklearn_version=current_version,
            original_sklearn_version=original_version,
        )
        self.current_version = current_version
        self.original_version = original_version

    def __str__(self):
        return (
            f"Trying to unpickle estimator {self.estimator_name} from skconcepts "
            f"version {self.original_version} when using version "
            f"{self.current_version}. This might lead to breaking code or invalid "
            "results. Use at your own risk, or refit the estimator under this "
            "version."
        )


def _package_version():
    from . import __version__

    return __version__


class VersionedStateMixin:
    """``__getstate__`` / ``__setstate__`` that carry the skconcepts version.

    Goes before ``BaseEstimator`` in the bases (scikit-learn's methods add
    and check ``_sklearn_version``; these add and check
    ``_skconcepts_version``).
    """

    def __getstate__(self):
        state = super().__getstate__()
        if state is self.__dict__:  # never edit the live attributes
            state = dict(state)
        state["_skconcepts_version"] = _package_version()
        return state

    def __setstate__(self, state):
        state = dict(state)
        original = state.pop("_skconcepts_version", "unknown (older than 0.1)")
        current = _package_version()
        if original != current:
            warnings.warn(
                InconsistentSkconceptsVersionWarning(
                    estimator_name=type(self).__name__,
                    current_version=current,
                    original_version=original,
                ),
                stacklevel=2,
            )
        super().__setstate__(state)


# ------------------------------------------------------------- divergence


def check_divergence(estimator, record, *, loss_key="loss", floor=R2_FLOOR):
    """Raise :class:`DivergenceError` when an epoch's record shows divergence.

    Diverged: ``record[loss_key]`` (or ``train_r2``) is not finite, or
    ``record["train_r2"]`` is below ``floor``.
    """
    loss = record.get(loss_key, 0.0)
    r2 = record.get("train_r2", 0.0)
    epoch = record.get("epoch", "?")
    name = type(estimator).__name__
    if not (math.isfinite(loss) and math.isfinite(r2)):
        raise DivergenceError(
            f"{name} diverged at epoch {epoch}: the training loss is {loss} "
            f"(training R^2 {r2}). No model is returned. {_fixes(estimator)}"
        )
    if r2 < floor:
        raise DivergenceError(
            f"{name} diverged at epoch {epoch}: the training R^2 is {r2:.4g}, "
            f"below the floor {floor:g} (the model reconstructs X far worse than "
            f"its mean). No model is returned. {_fixes(estimator)}"
        )


def check_finite_state(estimator, names):
    """Raise :class:`DivergenceError` if a fitted array in ``names`` is not finite."""
    bad = []
    for name in names:
        value = getattr(estimator, name, None)
        if value is None:
            continue
        arr = np.asarray(value)
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            bad.append(name)
    if bad:
        raise DivergenceError(
            f"{type(estimator).__name__} diverged: the fitted {', '.join(bad)} "
            f"hold non-finite values. No model is returned. {_fixes(estimator)}"
        )


def check_finite_tensors(estimator, named_tensors):
    """Raise :class:`DivergenceError` if a torch tensor of ``(name, tensor)``
    pairs is not finite (checked before a running model is exported, so that a
    diverged fit leaves the former fitted state as it was)."""
    import torch

    bad = [
        name
        for name, t in named_tensors
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]
    if bad:
        raise DivergenceError(
            f"{type(estimator).__name__} diverged: the model's {', '.join(bad)} "
            f"hold non-finite values. No model is returned. {_fixes(estimator)}"
        )


def warn_far_from_converged(estimator, r2, *, what="fit"):
    """``ConvergenceWarning`` when a fit ends with a training R^2 below 0.

    Below 0 the model reconstructs the training data worse than its mean: the
    fit is far from converged (too few epochs or a poor learning rate).
    """
    if math.isfinite(r2) and r2 < 0:
        warnings.warn(
            f"{type(estimator).__name__}.{what} ended far from converged: the "
            f"training R^2 is {r2:.4g} (below 0, worse than predicting the mean). "
            "Train longer (max_epochs / max_iter), lower the learning rate, or "
            "rescale X.",
            ConvergenceWarning,
            stacklevel=4,
        )


# ------------------------------------------------------------- interrupt


class _InterruptFlag:
    """Set by the first SIGINT of a :func:`deferred_interrupt` block."""

    def __init__(self):
        self.requested = False


@contextlib.contextmanager
def deferred_interrupt(enabled=True):
    """Defer the first Ctrl-C (SIGINT) to the end of the current step.

    Yields a flag whose ``requested`` becomes True on the first SIGINT; the
    training loop reads it after every step and stops there. A second SIGINT
    raises ``KeyboardInterrupt`` at once (the previous handler is restored).
    Outside the main thread, or when the process replaced Python's default
    SIGINT handler, the handler is left alone (a ``KeyboardInterrupt`` then
    still stops the fit where it lands; the loops catch it).
    """
    flag = _InterruptFlag()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        yield flag
        return

    def handler(signum, frame):
        if flag.requested:  # a second Ctrl-C: stop now
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        flag.requested = True

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def warn_interrupted(estimator, epoch, what="fit"):
    """The warning of an interrupted fit (the estimator keeps what it learnt)."""
    warnings.warn(
        f"{type(estimator).__name__}.{what} was interrupted (KeyboardInterrupt) "
        f"during epoch {epoch}; training stopped at the end of the current step "
        "and the estimator is fitted with what was learnt so far "
        "(interrupted_ is True). Call partial_fit to continue training.",
        UserWarning,
        stacklevel=4,
    )


# --------------------------------------------------------------- overflow


def _block_rows(X, budget=None):
    # a float64 temporary per block: 1/16 of working_memory (64 MiB default)
    if budget is None:
        budget = working_memory_bytes(TEMP_MEMORY_SHARE)
    return max(1, budget // max(1, X.shape[1] * X.dtype.itemsize))


def check_overflow(X, name="the estimator"):
    """Refuse ``X`` whose squares or Gram products overflow (or underflow) its dtype.

    A Gram product ``X^T X`` or ``X X^T`` sums ``max(n_samples, n_features)``
    squares; with ``|x| > sqrt(finfo.max / max(n_samples, n_features))`` it
    can overflow to ``inf`` inside a solver (an SVD then fails with a
    ``LinAlgError``). At the other end, when every non-zero value is below
    ``sqrt(finfo.tiny)`` (subnormal-scale data) every square underflows to 0
    and the solvers see data of zero variance. Both are refused with a
    ``ValueError`` that suggests rescaling. Isolated subnormal entries among
    normal values are fine. Read by row blocks, so a memmap is not loaded
    whole.
    """
    if not hasattr(X, "dtype") or X.dtype.kind != "f" or X.size == 0:
        return
    n, d = X.shape[0], (X.shape[1] if X.ndim > 1 else 1)
    info = np.finfo(X.dtype)
    limit = math.sqrt(float(info.max) / max(n, d, 1))
    big = 0.0
    step = _block_rows(X) if X.ndim > 1 else X.shape[0]
    for s in range(0, n, step):
        block = X[s : s + step]
        big = max(big, abs(float(np.max(block))), abs(float(np.min(block))))
    if big > limit:
        raise ValueError(
            f"X holds values up to {big:.3g} in magnitude: their squares or Gram "
            f"products overflow {X.dtype} in {name} (the largest safe "
            f"magnitude for this shape is about {limit:.3g}). Rescale X (e.g. "
            "divide it by its largest absolute value, or use "
            "sklearn.preprocessing.StandardScaler), or pass float64."
        )
    small = math.sqrt(float(info.tiny))
    if 0.0 < big < small:
        raise ValueError(
            f"X holds no value larger than {big:.3g} in magnitude: their squares "
            f"underflow {X.dtype} (below {small:.3g}, so {name} would see data "
            "of zero variance). Rescale X (e.g. divide it by its largest "
            "absolute value, or use sklearn.preprocessing.StandardScaler)."
        )
