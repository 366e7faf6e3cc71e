"""joblib persistence, and fitted state that loads without the fitting device.

For every public estimator (the instances of the common checks): a
``joblib.dump`` / ``joblib.load`` round trip gives the same outputs, and the
fitted state holds no torch tensor (NumPy arrays instead; a torch module, where
an estimator keeps one, lives on the CPU), so a model fitted on a GPU loads
on a machine without one.
"""

import joblib
import numpy as np
import pytest
import torch
from _instances import estimator_params
from sklearn.base import BaseEstimator, clone

ESTIMATORS = estimator_params()


def _fitted(estimator, n=40, d=6):
    if isinstance(estimator, Exception):
        raise estimator
    est = clone(estimator)
    if "random_state" in est.get_params():
        # a fixed seed makes every output (a score that trains fresh probes
        # included) a function of the fitted state and the data
        est.set_params(random_state=0)
    rng = np.random.RandomState(0)
    X = rng.rand(n, d) + 0.1
    y = np.arange(n) % 2 if est.__sklearn_tags__().target_tags.required else None
    est.fit(X) if y is None else est.fit(X, y)
    return est, X, y


def _outputs(est, X, y):
    out = {}
    for method in ("transform", "predict", "inverse_transform", "score"):
        if not hasattr(est, method):
            continue
        if method == "inverse_transform":
            if not hasattr(est, "transform"):
                continue
            out[method] = est.inverse_transform(est.transform(X))
        elif method == "score" and y is not None:
            out[method] = est.score(X, y)
        else:
            out[method] = getattr(est, method)(X)
    return out


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_joblib_round_trip(estimator, tmp_path):
    est, X, y = _fitted(estimator)
    # every output is compared: with random_state fixed each one (a score
    # that trains fresh probes included) is a function of the fitted state
    before = _outputs(est, X, y)
    assert before, "the estimator has no output to compare"
    path = tmp_path / "model.joblib"
    joblib.dump(est, path)
    loaded = joblib.load(path)
    after = _outputs(loaded, X, y)
    for key, val in before.items():
        np.testing.assert_array_equal(np.asarray(after[key]), np.asarray(val))


def _walk(obj, path, seen, found):
    """Collect (path, problem) for tensors, and modules with non-CPU state."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        found.append((path, f"torch.Tensor on {obj.device}"))
    elif isinstance(obj, torch.nn.Module):
        for name, t in list(obj.named_parameters()) + list(obj.named_buffers()):
            if t.device.type != "cpu":
                found.append((f"{path}.{name}", f"module state on {t.device}"))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _walk(v, f"{path}[{k!r}]", seen, found)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for i, v in enumerate(obj):
            _walk(v, f"{path}[{i}]", seen, found)
    elif isinstance(obj, BaseEstimator):
        _walk(vars(obj), path, seen, found)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_fitted_state_has_no_tensors(estimator):
    est, _, _ = _fitted(estimator)
    found = []
    _walk(vars(est), type(est).__name__, set(), found)
    assert not found, found
    # fitted arrays (attributes ending with "_") are NumPy, not tensors
    for key, val in vars(est).items():
        if key.endswith("_") and not key.startswith("_") and hasattr(val, "shape"):
            assert isinstance(val, np.ndarray | np.generic), (key, type(val))


def test_nmf_pickle_has_no_torch_reference(tmp_path):
    """The NMF family pickles to NumPy only: nothing to map from a GPU."""
    import pickle

    from skconcepts import ConvexNMFConcepts, NMFConcepts, SemiNMFConcepts

    X = np.random.RandomState(0).rand(30, 5)
    for Est in (NMFConcepts, SemiNMFConcepts, ConvexNMFConcepts):
        blob = pickle.dumps(Est(2, device="cpu", random_state=0).fit(X))
        assert b"torch" not in blob
