"""Bad inputs and parameters raise clear errors, for every public estimator.

The estimators are the ones the common checks run on
(:func:`skconcepts.utils.all_estimators` with the instances of
``check_instances``), so estimators added later are covered automatically.
Every error must be a ``ValueError``/``TypeError``/``NotFittedError`` whose
message names the problem, and the caller's array must be left unmodified.
"""

import copy

import numpy as np
import pytest
import torch
from _instances import estimator_params
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from skconcepts.base import ConceptExtractor

ESTIMATORS = estimator_params()


def _subset(pred):
    """The estimators a check applies to (a broken factory always fails)."""
    out = []
    for p in ESTIMATORS:
        est = p.values[0]
        if isinstance(est, Exception) or pred(est):
            out.append(p)
    return out


TRANSFORMERS = _subset(lambda e: hasattr(e, "transform"))
SUPERVISED = _subset(lambda e: e.__sklearn_tags__().target_tags.required)
WITH_N_CONCEPTS = _subset(lambda e: "n_concepts" in e.get_params())
WITH_DEVICE = _subset(lambda e: "device" in e.get_params())
POSITIVE_ONLY = _subset(lambda e: e.__sklearn_tags__().input_tags.positive_only)

_FITTED = {}


def _est(est):
    if isinstance(est, Exception):
        raise est
    return clone(est)


def _fitted(estimator):
    """A fitted clone, fitted once per instance and shared by the tests."""
    key = id(estimator)
    if key not in _FITTED:
        est = _est(estimator)
        X, y = _Xy(est)
        _FITTED[key] = _fit(est, X, y)
    return _FITTED[key]


def _tags(est):
    return est.__sklearn_tags__()


def _Xy(est, n=30, d=5, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.rand(n, d) + 0.1  # positive: valid for every estimator
    y = np.arange(n) % 2 if _tags(est).target_tags.required else None
    return X, y


def _fit(est, X, y):
    return est.fit(X) if y is None else est.fit(X, y)


def _raises_and_unmodified(fn, X, exc, match):
    """``fn(X)`` raises ``exc`` matching ``match`` and leaves ``X`` unchanged."""
    X_copy = np.array(X, copy=True)
    with pytest.raises(exc, match=match):
        fn(X)
    if X_copy.dtype.kind in "fc":
        np.testing.assert_array_equal(np.asarray(X), X_copy)
    else:
        assert np.all(np.asarray(X) == X_copy)


def _fit_fn(est, y):
    return lambda X: _fit(clone(est), X, y)


# ------------------------------------------------------------------ values


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_nan_and_inf_rejected(estimator):
    est = _est(estimator)
    X, y = _Xy(est)
    for bad, match in ((np.nan, "NaN"), (np.inf, "infinity")):
        Xb = X.copy()
        Xb[3, 2] = bad
        _raises_and_unmodified(_fit_fn(est, y), Xb, ValueError, match)
    if hasattr(est, "transform"):
        Xb = X.copy()
        Xb[0, 0] = np.nan
        _raises_and_unmodified(_fitted(estimator).transform, Xb, ValueError, "NaN")


@pytest.mark.parametrize("estimator", POSITIVE_ONLY)
def test_negative_values_rejected_when_positive_only(estimator):
    est = _est(estimator)
    X, y = _Xy(est)
    Xn = X.copy()
    Xn[1, 1] = -1.0
    _raises_and_unmodified(_fit_fn(est, y), Xn, ValueError, "Negative values")
    fitted = _fitted(estimator)
    _raises_and_unmodified(fitted.transform, Xn, ValueError, "Negative values")


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_overflowing_values_rejected(estimator):
    # squares / Gram products of 3e38 overflow float32: before the check the
    # NMF family ended in a LinAlgError from an SVD ("non-finite values")
    est = _est(estimator)
    X, y = _Xy(est)
    Xb = X.astype(np.float32)
    Xb[0, 0] = 3e38
    _raises_and_unmodified(_fit_fn(est, y), Xb, ValueError, "overflow.*Rescale")
    if hasattr(est, "transform"):
        Xt = X.copy()
        Xt[0, 0] = 1e300  # float64 too
        _raises_and_unmodified(_fitted(estimator).transform, Xt, ValueError, "overflow")


def _finite_outputs(fitted, X):
    """Everything a fitted estimator returns on ``X`` is finite (never NaN)."""
    if hasattr(fitted, "transform"):
        out = np.asarray(fitted.transform(X))
        assert np.isfinite(out).all()
        return out
    return None


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_float16_converted(estimator):
    # float16 is converted (to float64, scikit-learn's rule for a dtype not
    # in the accepted list), fitted and transformed without NaN
    est = _est(estimator)
    X, y = _Xy(est)
    X16 = X.astype(np.float16)
    X16_copy = X16.copy()
    fitted = _fit(est, X16, y)
    out = _finite_outputs(fitted, X16)
    if out is not None and isinstance(fitted, ConceptExtractor):
        assert out.dtype == np.float64
    np.testing.assert_array_equal(X16, X16_copy)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_subnormal_values(estimator):
    est = _est(estimator)
    X, y = _Xy(est)
    # isolated subnormal entries among normal values: a normal fit
    Xm = X.astype(np.float32)
    Xm[::3, 1] = 1e-42
    fitted = _fit(est, Xm, y)
    _finite_outputs(fitted, Xm)
    for name in ("components_", "reconstruction_r2_", "importances_"):
        if hasattr(fitted, name):
            assert np.isfinite(np.asarray(getattr(fitted, name), float)).all(), name
    # data on a subnormal scale (every square underflows to 0): refused
    # clearly (TaCoEraser's probe ended in "outputs contain NaN or infinity")
    Xs = (X * 1e-40).astype(np.float32)
    assert np.abs(Xs).max() < np.finfo(np.float32).tiny
    _raises_and_unmodified(_fit_fn(est, y), Xs, ValueError, "underflow.*Rescale")


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_all_zero_column_works(estimator):
    est = _est(estimator)
    X, y = _Xy(est)
    X = X.copy()
    X[:, 2] = 0.0
    fitted = _fit(est, X, y)
    out = _finite_outputs(fitted, X)
    if isinstance(fitted, ConceptExtractor):
        assert np.isfinite(fitted.components_).all()
        assert np.isfinite(fitted.score(X))
        assert np.isfinite(fitted.inverse_transform(out)).all()


# ------------------------------------------------------------------ shapes


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_bad_shapes_rejected(estimator):
    est = _est(estimator)
    X, y = _Xy(est)
    fit = _fit_fn(est, y)
    empty_y = None if y is None else y[:0]
    _raises_and_unmodified(
        lambda A: _fit(clone(est), A, empty_y), X[:0], ValueError, "0 sample"
    )
    _raises_and_unmodified(fit, X[:, 0], ValueError, "Expected 2D array")
    _raises_and_unmodified(fit, X[:, :, None], ValueError, "dim 3")


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_strings_rejected(estimator):
    est = _est(estimator)
    X, y = _Xy(est)
    Xs = X.astype(str)
    Xs[0, 0] = "a"
    _raises_and_unmodified(_fit_fn(est, y), Xs, ValueError, "convert|string")


@pytest.mark.parametrize("estimator", TRANSFORMERS)
def test_wrong_n_features_and_not_fitted(estimator):
    est = _est(estimator)
    X, _ = _Xy(est)
    with pytest.raises(NotFittedError, match="not fitted"):
        est.transform(X)
    fitted = _fitted(estimator)
    _raises_and_unmodified(fitted.transform, X[:, :3], ValueError, "features")


@pytest.mark.parametrize("estimator", SUPERVISED)
def test_y_of_wrong_length_rejected(estimator):
    est = _est(estimator)
    X, y = _Xy(est)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(X, y[:-3])


# -------------------------------------------------------------- parameters


@pytest.mark.parametrize("estimator", WITH_N_CONCEPTS)
def test_bad_n_concepts_rejected(estimator):
    est = _est(estimator)
    X, y = _Xy(est)
    for bad in (0, -2, 2.5, "3"):
        with pytest.raises((ValueError, TypeError), match="n_concepts"):
            _fit(clone(est).set_params(n_concepts=bad), X, y)


@pytest.mark.parametrize("estimator", WITH_DEVICE)
def test_absent_device_rejected(estimator):
    est = _est(estimator)
    if torch.cuda.is_available():
        pytest.skip("CUDA is present: cuda:7 may exist")
    X, y = _Xy(est)
    X_copy = X.copy()
    with pytest.raises(ValueError, match="cuda:7"):
        _fit(clone(est).set_params(device="cuda:7"), X, y)
    with pytest.raises(ValueError, match="device"):
        _fit(clone(est).set_params(device="gpu-please"), X, y)
    np.testing.assert_array_equal(X, X_copy)
    # a concept extractor resolves its device at transform time as well
    if isinstance(est, ConceptExtractor):
        fitted = copy.deepcopy(_fitted(estimator)).set_params(device="cuda:7")
        with pytest.raises(ValueError, match="cuda:7"):
            fitted.transform(X)


# ------------------------------------------------------ valid input intact


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_valid_input_left_unmodified(estimator):
    est = _est(estimator)
    X, y = _Xy(est)
    X32 = X.astype(np.float32)
    X32_copy = X32.copy()
    fitted = _fit(est, X32, y)
    if hasattr(fitted, "transform"):
        fitted.transform(X32)
    np.testing.assert_array_equal(X32, X32_copy)
    fitted = _fitted(estimator)
    if hasattr(fitted, "transform"):
        X_copy = X.copy()
        fitted.transform(X)
        np.testing.assert_array_equal(X, X_copy)


# ------------------------------------------------- meta-estimators' extractors


def _meta(kind, extractor, **kw):
    from skconcepts.erasure import TaCoEraser
    from skconcepts.importance import ConceptAttribution, SobolConceptImportance
    from skconcepts.utils._test_common import _importance_check_head

    if kind == "TaCoEraser":
        return TaCoEraser(decomposition=extractor, n_remove=1, n_designs=4, **kw)
    cls = SobolConceptImportance if kind == "Sobol" else ConceptAttribution
    return cls(extractor, _importance_check_head, **kw)


class _OnlyComponents:
    components_ = np.eye(5)[:2]


class _NoDecoder:
    def transform(self, X):
        return np.asarray(X)[:, :2]


@pytest.mark.parametrize("kind", ["Sobol", "Attribution", "TaCoEraser"])
def test_meta_estimators_name_what_the_extractor_lacks(kind):
    from sklearn.decomposition import PCA

    X, y = np.random.RandomState(0).rand(30, 5) + 0.1, np.arange(30) % 2
    cases = [
        (_OnlyComponents(), True, "has no transform"),
        (_NoDecoder(), True, "inverse_transform or components_"),
        (_NoDecoder(), False, "has no fit"),
        (PCA, False, "not the class PCA"),
        ("not an extractor" if kind != "TaCoEraser" else 3, False, "has no transform"),
    ]
    for extractor, prefit, match in cases:
        est = _meta(kind, extractor, prefit=prefit)
        with pytest.raises(TypeError, match=match) as info:
            est.fit(X, y)
        assert "skconcepts accepts as extractor" in str(info.value)


@pytest.mark.parametrize("kind", ["Sobol", "Attribution", "TaCoEraser"])
def test_meta_estimators_refuse_what_the_extractor_refuses(kind):
    from skconcepts import NMFConcepts

    est = _meta(kind, NMFConcepts(n_concepts=2, max_iter=20, random_state=0))
    X, y = np.random.RandomState(0).rand(30, 5) + 0.1, np.arange(30) % 2
    Xn = X.copy()
    Xn[1, 1] = -1.0
    _raises_and_unmodified(lambda A: est.fit(A, y), Xn, ValueError, "Negative values")
    est.fit(X, y)
    _raises_and_unmodified(est.transform, Xn, ValueError, "Negative values")
