"""Erasure: how well fresh probes recover an attribute (leakage).

The default probes (:func:`make_probe`) live here, at the bottom of the
import graph: :mod:`skconcepts.erasure` builds on them."""

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_array

from .._backend import seed_from

__all__ = ["leakage", "make_probe"]


def make_probe(kind, random_state=None):
    """A fresh probe: ``"linear"`` or ``"mlp"``, both after a ``StandardScaler``.

    Parameters
    ----------
    kind : {"linear", "mlp"}
        ``"linear"``: ``LogisticRegression(max_iter=1000)``. ``"mlp"``:
        ``MLPClassifier(hidden_layer_sizes=(64,), max_iter=400)`` (ReLU,
        Adam), seeded with ``random_state``.
    random_state : int, RandomState instance or None, default=None
        Seed of the MLP's initialisation and shuffling.

    Returns
    -------
    probe : Pipeline
        Unfitted ``StandardScaler`` + classifier.
    """
    if kind == "linear":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    if kind == "mlp":
        return make_pipeline(
            StandardScaler(),
            MLPClassifier(
                hidden_layer_sizes=(64,),
                max_iter=400,
                random_state=seed_from(random_state),
            ),
        )
    raise ValueError(f"Unknown probe {kind!r}; use 'linear', 'mlp' or an estimator.")


def _named_probes(probes, random_state):
    """``[(name, unfitted classifier, built-in?)]`` from leakage's ``probes``."""
    if isinstance(probes, str) or hasattr(probes, "fit"):
        probes = (probes,)
    out = []
    for p in probes:
        name, est = p if isinstance(p, tuple) else (None, p)
        if isinstance(est, str):
            out.append((name or est, make_probe(est, random_state=random_state), True))
        elif hasattr(est, "fit") and hasattr(est, "predict"):
            out.append((name or type(est).__name__, clone(est), False))
        else:
            raise ValueError(
                f"A probe must be 'linear', 'mlp', a classifier or a (name, probe) "
                f"pair; got {est!r}."
            )
    return out


def leakage(X, y, *, probes=("linear", "mlp"), test_size=0.3, random_state=None):
    """How well fresh probes recover an attribute: held-out balanced accuracy.

    The evaluation protocol of erasure: ``X`` (typically the output of an
    eraser) is split into a stratified train/test split, each probe is
    trained from scratch on the training part, and its balanced accuracy on
    the test part is returned. Chance (the majority-class guess) is
    ``1 / n_classes``; after a perfect erasure every probe is near it.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Activations (erased or not).
    y : array-like of shape (n_samples,)
        Attribute to recover (class labels).
    probes : sequence, default=("linear", "mlp")
        Each item is ``"linear"`` (``StandardScaler`` then
        ``LogisticRegression``), ``"mlp"`` (``StandardScaler`` then
        ``MLPClassifier(hidden_layer_sizes=(64,), max_iter=400)``; its
        convergence warnings are silenced), an unfitted classifier (cloned;
        keyed by its class name) or a ``(name, probe)`` pair.
    test_size : float, default=0.3
        Fraction of the samples held out for testing.
    random_state : int, RandomState instance or None, default=None
        Seeds the split and the MLP probe.

    Returns
    -------
    scores : dict
        Probe name -> balanced accuracy on the held-out part.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import leakage
    >>> rng = np.random.RandomState(0)
    >>> y = rng.randint(0, 2, 200)
    >>> X = np.c_[y + 0.1 * rng.normal(size=200), rng.normal(size=200)]
    >>> scores = leakage(X, y, probes=("linear",), random_state=0)
    >>> round(scores["linear"], 2)
    1.0
    >>> scores = leakage(X[:, 1:], y, probes=("linear",), random_state=0)
    >>> bool(abs(scores["linear"] - 0.5) < 0.15)  # chance: nothing to recover
    True
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_consistent_length, column_or_1d

    X = check_array(X, dtype=[np.float64, np.float32])
    y = column_or_1d(y, warn=True)
    check_consistent_length(X, y)
    check_classification_targets(y)
    # probes see the labels encoded (0 .. n_classes - 1): scikit-learn 1.6's
    # MLP early stopping fails on string labels
    classes, y, counts = np.unique(y, return_inverse=True, return_counts=True)
    if len(classes) < 2:
        raise ValueError("y has 1 class; leakage needs at least 2 classes.")
    rng = check_random_state(random_state)
    split_seed, probe_seed = rng.randint(np.iinfo(np.int32).max, size=2)
    stratify = y if counts.min() >= 2 else None
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=test_size, random_state=split_seed, stratify=stratify
    )
    scores = {}
    for name, probe, builtin in _named_probes(probes, probe_seed):
        with warnings.catch_warnings():
            if builtin:  # our MLP may stop at max_iter on erased data
                warnings.simplefilter("ignore", ConvergenceWarning)
            probe.fit(X_tr, y_tr)
        scores[name] = float(balanced_accuracy_score(y_te, probe.predict(X_te)))
    return scores
