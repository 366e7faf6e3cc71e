"""Fault injection: fits that diverge, are interrupted or killed, inputs that
overflow, pickles from another version (issue 15, docs/guide/faults.md)."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.exceptions import InconsistentVersionWarning

from skconcepts import (
    ConvexNMFConcepts,
    NMFConcepts,
    SemiNMFConcepts,
    SobolConceptImportance,
    TopKSAE,
)
from skconcepts._faults import InconsistentSkconceptsVersionWarning


def _X(n=200, d=8, seed=0):
    rng = np.random.RandomState(seed)
    return rng.rand(n, 4) @ rng.rand(4, d) + 0.01 * rng.rand(n, d)


# --------------------------------------------------------------- overflow


@pytest.mark.parametrize("cls", [NMFConcepts, SemiNMFConcepts, ConvexNMFConcepts])
def test_overflow_is_a_value_error_not_a_linalg_error(cls):
    # the case: X[0, 0] = 3e38 in float32 ended in a LinAlgError
    # ("input matrix contained non-finite values") from an SVD
    X = _X().astype(np.float32)
    X[0, 0] = 3e38
    with pytest.raises(ValueError, match="overflow float32.*Rescale"):
        cls(3, random_state=0).fit(X)
    # the same data rescaled fits
    cls(3, random_state=0, max_iter=20).fit(X / 3e38)


def test_overflow_limit_scales_with_the_gram_size():
    from skconcepts._faults import check_overflow

    X = np.ones((100, 4), dtype=np.float32)
    X[0, 0] = 1e19  # 1e38 * 100 rows > 3.4e38
    with pytest.raises(ValueError, match="overflow"):
        check_overflow(X)
    X[0, 0] = 1e17  # 1e34 * 100 = 1e36: safe
    check_overflow(X)


# --------------------------------------------------------------- versions


def _head(U):
    return U.sum(1)


def _stale(est, version):
    state = est.__getstate__()
    assert state["_skconcepts_version"] == __import__("skconcepts").__version__
    state["_skconcepts_version"] = version
    return type(est).__new__(type(est)), state


@pytest.mark.parametrize(
    "make",
    [
        lambda: NMFConcepts(3, random_state=0, max_iter=20).fit(_X()),
        lambda: TopKSAE(8, 2, max_epochs=2, random_state=0).fit(_X()),
        lambda: SobolConceptImportance(
            NMFConcepts(3, random_state=0, max_iter=20),
            _head,
            n_designs=8,
            random_state=0,
        ).fit(_X()),
    ],
    ids=["NMFConcepts", "TopKSAE", "SobolConceptImportance"],
)
def test_pickle_from_another_version_warns(make):
    est = make()
    # same version: silent, and the attribute does not stay on the object
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = pickle.loads(pickle.dumps(est))
    assert not hasattr(loaded, "_skconcepts_version")
    assert not hasattr(est, "_skconcepts_version")
    # another version: scikit-learn's kind of warning, naming both versions
    new, state = _stale(est, "0.0.1")
    with pytest.warns(InconsistentSkconceptsVersionWarning, match="0.0.1") as rec:
        new.__setstate__(state)
    assert isinstance(rec[0].message, InconsistentVersionWarning)
    assert rec[0].message.original_version == "0.0.1"
    # a pickle from before versions were stored warns too
    new, state = _stale(est, None)
    state.pop("_skconcepts_version")
    with pytest.warns(InconsistentSkconceptsVersionWarning, match="unknown"):
        new.__setstate__(state)
