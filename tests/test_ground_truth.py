"""The hierarchical generator and the ground-truth metrics of SAEs."""

import numpy as np
import pytest

from skconcepts.datasets import make_hierarchical_features
from skconcepts.metrics import absorption_score, feature_f1, feature_mcc

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


# ---------------------------------------------------------------------------
# feature_mcc, feature_f1, absorption_score


def _truth(n=3000, seed=0, **kw):
    kw = {"n_trees": 3, "branching": 3, "random_state": seed, **kw}
    return make_hierarchical_features(n, 24, 20, **kw)


def test_mcc_identical_permuted_scaled_is_one():
    _, _, codes, _ = _truth()
    perm = np.random.RandomState(1).permutation(codes.shape[1])
    scale = np.linspace(0.5, 3.0, codes.shape[1])
    assert feature_mcc(codes, codes) == pytest.approx(1.0)
    assert feature_mcc(codes, codes[:, perm] * scale) == pytest.approx(1.0)
    # extra dead latents change nothing and give no NaN
    padded = np.hstack([codes[:, perm], np.zeros((codes.shape[0], 5))])
    score, rows, cols, corr = feature_mcc(codes, padded, return_matching=True)
    assert score == pytest.approx(1.0)
    np.testing.assert_array_equal(cols, np.argsort(perm))


def test_mcc_is_one_to_one_and_averaged_over_true_features():
    rng = np.random.RandomState(0)
    true = rng.exponential(size=(20000, 2))
    # one latent mixing two independent features: correlation 1/sqrt(2) with
    # each, but it can be matched to only one of them
    mixed = true.sum(axis=1, keepdims=True)
    assert feature_mcc(true, mixed) == pytest.approx(0.5 / np.sqrt(2), abs=0.02)
    noise = rng.exponential(size=(20000, 2))
    assert feature_mcc(true, noise) < 0.05


def test_f1_identical_permuted_scaled_is_one():
    _, atoms, codes, _ = _truth()
    perm = np.random.RandomState(2).permutation(codes.shape[1])
    scaled = codes[:, perm] * 7.0
    for matching in ("best", "hungarian"):
        assert feature_f1(codes, scaled, matching=matching) == pytest.approx(1.0)
    decoder = 3.0 * atoms[perm]
    f1 = feature_f1(
        codes, scaled, matching="decoder", directions=atoms, decoder=decoder
    )
    assert f1 == pytest.approx(1.0)


def test_f1_analytic_values():
    true = np.zeros((8, 2))
    true[:4, 0] = 1.0
    true[4:, 1] = 1.0
    codes = np.zeros((8, 1))
    codes[:2, 0] = 1.0  # fires on half of feature 0: precision 1, recall 1/2
    f1, scores, matches = feature_f1(true, codes, return_scores=True)
    assert scores[0] == pytest.approx(2 / 3) and scores[1] == 0.0
    # two features with the same firing, one latent: "best" lets both use it,
    # "hungarian" gives it to one only
    twins = np.hstack([true[:, :1], 2 * true[:, :1]])
    assert feature_f1(twins, true[:, :1]) == pytest.approx(1.0)
    assert feature_f1(twins, true[:, :1], matching="hungarian") == pytest.approx(0.5)
    # SynthSAEBench's pairing: by decoder cosine, averaged over latents; a
    # dead latent counts 0, a latent pointing at the wrong feature scores its F1
    eye = np.eye(2)
    codes2 = np.hstack([true, np.zeros((8, 1))])
    decoder = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    f1, scores, matches = feature_f1(
        true,
        codes2,
        matching="decoder",
        directions=eye,
        decoder=decoder,
        return_scores=True,
    )
    assert matches.tolist() == [0, 0, 1]
    assert scores.tolist() == [1.0, 0.0, 0.0]
    assert f1 == pytest.approx(1 / 3)


def _absorbing(codes, atoms, parents, absorbed_parents):
    """A dictionary where the children of ``absorbed_parents`` absorb them."""
    decoder = atoms.astype(np.float64).copy()
    sae = codes.astype(np.float64).copy()
    for c in np.flatnonzero(np.isin(parents, absorbed_parents)):
        p = parents[c]
        on = codes[:, c] > 0
        decoder[c] = (atoms[c] + atoms[p]) / np.sqrt(2)
        sae[on, c] = np.sqrt(2) * codes[on, c]
        sae[on, p] = 0.0
    return sae, decoder


def test_absorption_clean_zero_absorbing_one():
    X, atoms, codes, parents = _truth(
        magnitude_std=0.0, orthogonal=True, mutually_exclusive=True
    )
    roots = np.unique(parents[parents >= 0])
    assert absorption_score(codes, codes, parents, atoms, atoms) == 0.0
    sae, decoder = _absorbing(codes, atoms, parents, roots)
    # the absorbing dictionary reconstructs X perfectly with a lower L0
    np.testing.assert_allclose(sae @ decoder, X, atol=1e-5)
    assert (sae > 0).sum() < (codes > 0).sum()
    score, scores = absorption_score(
        codes, sae, parents, atoms, decoder, return_scores=True
    )
    assert score == pytest.approx(1.0)
    assert np.isnan(scores[parents >= 0]).all() and np.all(scores[roots] == 1.0)
    # half of the parents absorbed
    sae, decoder = _absorbing(codes, atoms, parents, roots[:1])
    _, scores = absorption_score(
        codes, sae, parents, atoms, decoder, return_scores=True
    )
    assert scores[roots].tolist() == [1.0, 0.0, 0.0]


def test_absorption_needs_a_latent_carrying_the_parent():
    # the parent's latent is silent but no other latent takes its direction:
    # a miss, not absorption (random directions in 256 dimensions: small
    # cosines everywhere, most above cos_threshold)
    _, atoms, codes, parents = make_hierarchical_features(
        3000, 256, 20, n_trees=3, branching=3, magnitude_std=0.0, random_state=0
    )
    sae = codes.astype(np.float64).copy()
    for c in np.flatnonzero(parents >= 0):
        sae[codes[:, c] > 0, parents[c]] = 0.0
    assert absorption_score(codes, sae, parents, atoms, atoms) == 0.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda t, a, p: feature_mcc(t, t[:-1]), "same samples"),
        (lambda t, a, p: feature_mcc(t[:1], t[:1]), "at least 2 samples"),
        (lambda t, a, p: feature_f1(t, t, matching="cos"), "matching must be"),
        (lambda t, a, p: feature_f1(t, t, matching="decoder"), "pass directions="),
        (lambda t, a, p: feature_f1(t, t, threshold=-1), "threshold must be"),
        (
            lambda t, a, p: feature_f1(
                t, t, matching="decoder", directions=a, decoder=a[:-1]
            ),
            "one row per",
        ),
        (lambda t, a, p: absorption_score(t, t, p[:-1], a, a), "parents must be"),
        (lambda t, a, p: absorption_score(t, t, p + 0.5, a, a), "parents must be"),
        (
            lambda t, a, p: absorption_score(t, t, np.arange(p.size), a, a),
            "own parent",
        ),
        (lambda t, a, p: absorption_score(t, t, p, a[:, :3], a), "same space"),
        (
            lambda t, a, p: absorption_score(t, t, p, a, a, main_latents=[0]),
            "main_latents must",
        ),
    ],
)
def test_metrics_bad_input(call, match):
    _, atoms, codes, parents = _truth(200)
    with pytest.raises(ValueError, match=match):
        call(codes, atoms, parents)


def test_metrics_reject_nan_and_leave_input_alone():
    _, atoms, codes, parents = _truth(200)
    bad = codes.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        feature_mcc(codes, bad)
    before = codes.copy()
    absorption_score(codes, codes, parents, atoms, atoms)
    feature_f1(codes, codes, matching="decoder", directions=atoms, decoder=atoms)
    np.testing.assert_array_equal(codes, before)


def test_absorption_needs_an_aligned_latent():
    # a latent nearly orthogonal to the parent (cosine 0.01 < 0.025) with a
    # code so large that it projects the parent's activation: not absorption
    _, atoms, codes, parents = _truth(magnitude_std=0.0, orthogonal=True)
    sae, decoder = _absorbing(codes, atoms, parents, np.unique(parents[parents >= 0]))
    for c in np.flatnonzero(parents >= 0):
        p, on = parents[c], codes[:, c] > 0
        w = atoms[c] + 0.01 * atoms[p]
        decoder[c] = w / np.linalg.norm(w)
        sae[on, c] = 100.0
    assert absorption_score(codes, sae, parents, atoms, decoder) == 0.0
    assert absorption_score(
        codes, sae, parents, atoms, decoder, cos_threshold=0.0
    ) == pytest.approx(1.0)
