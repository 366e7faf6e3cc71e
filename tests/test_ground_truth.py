"""The hierarchical generator and the ground-truth metrics of SAEs."""

import numpy as np
import pytest

from skconcepts.datasets import make_hierarchical_features

# ---------------------------------------------------------------------------
# make_hierarchical_features


def _rates(n=40000, **kw):
    kw.setdefault("random_state", 0)
    X, atoms, codes, parents = make_hierarchical_features(n, 16, 40, **kw)
    return X, atoms, codes, parents, codes > 0


@pytest.mark.parametrize("exclusive", [True, False])
def test_children_never_fire_without_their_parent(exclusive):
    *_, parents, fires = _rates(
        8000, n_trees=3, branching=3, depth=2, mutually_exclusive=exclusive
    )
    children = np.flatnonzero(parents >= 0)
    assert children.size == 3 * 12
    # depth 2: grandchildren's parents are themselves children
    assert np.any(parents[parents[children]] >= 0)
    assert fires[:, children].any(axis=0).all()
    assert not np.any(fires[:, children] & ~fires[:, parents[children]])


def test_firing_rates_as_specified():
    n = 40000
    X, atoms, codes, parents, fires = _rates(
        n, n_trees=4, branching=4, child_rate=0.6, zipf_exponent=0.7, p_max=0.3
    )
    top = np.flatnonzero(parents < 0)
    expected = np.maximum(0.3 * np.arange(1, top.size + 1) ** -0.7, 5e-4)
    rate = fires[:, top].mean(axis=0)
    se = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(rate - expected) < 5 * se)
    # tree roots are the first, most frequent top-level features
    assert top[:4].tolist() == [0, 5, 10, 15]
    children = np.flatnonzero(parents >= 0)
    on = fires[:, parents[children]]
    conditional = (fires[:, children] & on).sum(axis=0) / on.sum(axis=0)
    assert np.allclose(conditional, 0.6 / 4, atol=0.03)
    # magnitudes are positive with mean 1, and X is their combination
    assert codes.min() >= 0 and abs(codes[fires].mean() - 1) < 0.01
    assert np.allclose(X, codes @ atoms, atol=1e-4)
    assert np.allclose(np.linalg.norm(atoms, axis=1), 1, atol=1e-5)


def test_mutual_exclusion_of_siblings():
    for exclusive in (True, False):
        *_, parents, fires = _rates(
            20000, n_trees=2, branching=4, child_rate=0.9, mutually_exclusive=exclusive
        )
        siblings = fires[:, np.flatnonzero(parents == 0)].sum(axis=1)
        if exclusive:
            assert siblings.max() == 1
            # a firing parent has a child with probability child_rate
            assert abs(np.mean(siblings[fires[:, 0]]) - 0.9) < 0.02
        else:
            assert siblings.max() >= 2


def test_correlation_couples_firings():
    def mean_offdiag(correlation):
        *_, parents, fires = _rates(20000, n_trees=0, correlation=correlation)
        c = np.corrcoef(fires[:, :10].T)
        return np.abs(c[~np.eye(10, dtype=bool)]).mean()

    assert mean_offdiag(0.0) < 0.02
    assert mean_offdiag(0.8) > 2 * mean_offdiag(0.0) + 0.03


def test_generator_orthogonal_and_deterministic():
    _, atoms, _, _ = make_hierarchical_features(
        50, 32, 20, n_trees=2, orthogonal=True, random_state=1
    )
    assert np.allclose(atoms @ atoms.T, np.eye(20), atol=1e-5)
    a = make_hierarchical_features(200, 8, 30, n_trees=2, random_state=3)
    b = make_hierarchical_features(200, 8, 30, n_trees=2, random_state=3)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert a[0].dtype == np.float32 and a[3].dtype == np.int64


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_atoms=10, n_trees=3, branching=4), "need n_atoms >= 15"),
        (dict(orthogonal=True, n_atoms=40), "orthogonal=True needs"),
        (dict(child_rate=1.5), "child_rate must be in"),
        (dict(p_min=0.9), "p_min must be in"),
        (dict(correlation=1.0), "correlation must be in"),
        (dict(depth=0), "depth must be an integer"),
        (dict(noise=-1.0), "noise must be >= 0"),
    ],
)
def test_generator_bad_input(kwargs, match):
    kw = dict(n_samples=10, n_features=16, n_atoms=40, n_trees=2, random_state=0)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        make_hierarchical_features(**kw)
