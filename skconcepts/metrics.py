"""Metrics for concept dictionaries, codes, importances and erasure."""

import numpy as np
from sklearn.utils.validation import check_array

__all__ = ["leakage", "reconstruction_r2", "relative_error"]


def _pair(X, X_hat):
    X = check_array(X, dtype=[np.float64, np.float32])
    X_hat = check_array(X_hat, dtype=[np.float64, np.float32])
    if X.shape != X_hat.shape:
        raise ValueError(
            f"X and X_hat must have the same shape; got {X.shape} and {X_hat.shape}."
        )
    return X, X_hat


def reconstruction_r2(X, X_hat):
    """Reconstruction R^2: ``1 - ||X - X_hat||^2 / ||X - mean(X)||^2``.

    The mean is taken per feature (column), so a reconstruction that only
    predicts the mean activation scores 0.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Original activations.
    X_hat : array-like of shape (n_samples, n_features)
        Reconstruction.

    Returns
    -------
    r2 : float

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import reconstruction_r2
    >>> X = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> reconstruction_r2(X, X)
    1.0
    >>> reconstruction_r2(X, np.full_like(X, 0.0) + X.mean(axis=0))
    0.0
    """
    X, X_hat = _pair(X, X_hat)
    sse = float(np.sum((X.astype(np.float64) - X_hat) ** 2))
    sst = float(np.sum((X - X.mean(axis=0, dtype=np.float64)) ** 2))
    if sst == 0.0:
        return 1.0 if sse == 0.0 else 0.0
    return 1.0 - sse / sst


def relative_error(X, X_hat):
    """Relative Frobenius error ``||X - X_hat||_F / ||X||_F``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Original activations.
    X_hat : array-like of shape (n_samples, n_features)
        Reconstruction.

    Returns
    -------
    err : float

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import relative_error
    >>> relative_error(np.ones((2, 2)), np.zeros((2, 2)))
    1.0
    """
    X, X_hat = _pair(X, X_hat)
    num = np.linalg.norm(X.astype(np.float64) - X_hat)
    den = np.linalg.norm(X.astype(np.float64))
    return float(num / den) if den > 0 else float(num)


def _named_probes(probes, random_state):
    """``[(name, unfitted classifier)]`` from the ``probes`` argument of leakage."""
    from sklearn.base import clone

    from .erasure._probes import make_probe

    if isinstance(probes, str) or hasattr(probes, "fit"):
        probes = (probes,)
    out = []
    for p in probes:
        name, est = p if isinstance(p, tuple) else (None, p)
        if isinstance(est, str):
            out.append((name or est, make_probe(est, random_state=random_state)))
        elif hasattr(est, "fit") and hasattr(est, "predict"):
            out.append((name or type(est).__name__, clone(est)))
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
        ``MLPClassifier(hidden_layer_sizes=(64,))``), an unfitted classifier
        (cloned; keyed by its class name) or a ``(name, probe)`` pair.
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
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_consistent_length, column_or_1d

    X = check_array(X, dtype=[np.float64, np.float32])
    y = column_or_1d(y, warn=True)
    check_consistent_length(X, y)
    check_classification_targets(y)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError("y has 1 class; leakage needs at least 2 classes.")
    rng = check_random_state(random_state)
    split_seed, probe_seed = rng.randint(np.iinfo(np.int32).max, size=2)
    stratify = y if counts.min() >= 2 else None
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=test_size, random_state=split_seed, stratify=stratify
    )
    scores = {}
    for name, probe in _named_probes(probes, probe_seed):
        probe.fit(X_tr, y_tr)
        scores[name] = float(balanced_accuracy_score(y_te, probe.predict(X_te)))
    return scores
