"""ConceptShift against ground truth: synthetic models with known shifted concepts.

The synthetic "original model" has ``k`` concept clusters; the "changed
model" moves every sample by one common drift plus, for a known subset of
the clusters, an extra shift of its own, and adds noise. The fitted concepts
are matched to the true clusters through their means.
"""

import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture

from skconcepts import ConceptShift, NMFConcepts

SEEDS = range(5)
CHANGED = (1, 4)


def make_shifted(seed, n=600, d=16, k=6, changed=CHANGED, drift=2.0, extra=3.0,
                 noise=0.3):  # fmt: skip
    rng = np.random.RandomState(seed)
    centres = 4.0 * rng.normal(size=(k, d))
    labels = rng.randint(k, size=n)
    X = centres[labels] + rng.normal(size=(n, d))
    common = rng.normal(size=d)
    common *= drift / np.linalg.norm(common)
    extra_shift = np.zeros((k, d))
    for c in changed:
        v = rng.normal(size=d)
        extra_shift[c] = extra * v / np.linalg.norm(v)
    Y = X + common + extra_shift[labels] + noise * rng.normal(size=(n, d))
    return X, Y, labels, centres, common, extra_shift


def _true_cluster(est, centres):
    """The true cluster of every fitted concept (nearest centre of its mean)."""
    d2 = ((est.concept_means_[:, None] - centres[None]) ** 2).sum(-1)
    return d2.argmin(1)


@pytest.mark.parametrize("seed", SEEDS)
def test_changed_concepts_are_found(seed):
    X, Y, _, centres, common, extra = make_shifted(seed)
    est = ConceptShift(n_concepts=6, random_state=seed).fit(X, Y)
    true = _true_cluster(est, centres)
    assert sorted(true) == list(range(6))  # one concept per cluster
    assert sorted(true[est.changed_concepts_]) == list(CHANGED)
    # the shift vectors are the true ones, the reference the common drift
    assert_allclose(est.shift_vectors_, common + extra[true], atol=0.15)
    assert_allclose(est.reference_shift_, common, atol=0.15)
    # the unchanged concepts keep their direction, the changed ones turn
    unchanged = ~np.isin(true, CHANGED)
    assert est.concept_alignment_[unchanged].min() > 0.99
    assert (
        est.concept_alignment_[~unchanged].max()
        < est.concept_alignment_[unchanged].min()
    )
    assert est.shift_zscores_[unchanged].max() < 3.0
    assert est.shift_zscores_[~unchanged].min() > 6.0


def test_predict_beats_the_mean_shift_on_held_out_data():
    # over five seeds and held-out rows; fails when the per-concept weights
    # are replaced by the mean shift (the two predictions are then equal)
    ratios = []
    for seed in SEEDS:
        X, Y, *_ = make_shifted(seed, n=1200)
        est = ConceptShift(n_concepts=6, random_state=seed).fit(X[:600], Y[:600])
        err = 1.0 - est.score(X[600:], Y[600:])
        err_base = 1.0 - est.baseline_score(X[600:], Y[600:])
        ratios.append(err / err_base)
        assert est.shift_r2_ > 0.5
    # the concept shifts remove most of the error the mean shift leaves
    assert np.max(ratios) < 0.5, ratios


def test_equal_shifts_give_the_baseline():
    # every concept moves the same way: no changed concept, and the
    # prediction is the mean shift's (exactly so without noise)
    for seed in SEEDS:
        X, Y, *_ = make_shifted(seed, changed=())
        est = ConceptShift(n_concepts=6, random_state=seed).fit(X, Y)
        assert est.changed_concepts_.size == 0
        assert est.shift_zscores_.max() < 3.0
        assert abs(est.train_score_ - est.baseline_score_) < 1e-3
    X, Y, *_ = make_shifted(0, changed=(), noise=0.0)
    est = ConceptShift(n_concepts=6, random_state=0).fit(X, Y)
    assert_allclose(est.predict(X), X + est.mean_shift_, atol=1e-12)
    assert_allclose(est.shift_zscores_, 0.0)
    assert est.train_score_ == pytest.approx(est.baseline_score_, abs=1e-12)


def test_reference_choices():
    # a subset moves: against the mean shift every concept differs (the mean
    # mixes the moved and the unmoved ones); against zero the common drift
    # counts too; the median is the common drift
    X, Y, _, centres, common, _ = make_shifted(0)
    by_ref = {
        ref: ConceptShift(n_concepts=6, reference=ref, random_state=0).fit(X, Y)
        for ref in ("median", "mean", "zero")
    }
    assert by_ref["median"].changed_concepts_.size == 2
    assert by_ref["mean"].changed_concepts_.size == 6
    assert by_ref["zero"].changed_concepts_.size == 6
    assert_allclose(by_ref["mean"].reference_shift_, by_ref["mean"].mean_shift_)
    assert_allclose(by_ref["zero"].reference_shift_, 0.0)
    # the reference only changes the diagnosis, not the fitted shifts
    assert_array_equal(by_ref["mean"].shift_vectors_, by_ref["zero"].shift_vectors_)


def test_training_scores_match_the_methods():
    X, Y, *_ = make_shifted(1)
    est = ConceptShift(n_concepts=6, random_state=0).fit(X, Y)
    assert est.train_score_ == pytest.approx(est.score(X, Y), abs=1e-10)
    assert est.baseline_score_ == pytest.approx(est.baseline_score(X, Y), abs=1e-10)
    d = Y - X
    resid = d - (est.predict(X) - X)
    expected = 1.0 - (resid**2).sum() / ((d - d.mean(0)) ** 2).sum()
    assert est.shift_r2_ == pytest.approx(expected, rel=1e-10)
    # the paper's shift vectors: the mean of Y - X over each k-means cluster
    labels = est.extractor_.predict(X)
    for k in range(6):
        assert_allclose(est.shift_vectors_[k], d[labels == k].mean(0))
        assert_allclose(est.concept_means_[k], X[labels == k].mean(0))
        assert_allclose(est.target_concept_means_[k], Y[labels == k].mean(0))
    assert_allclose(est.concept_weights_, np.bincount(labels, minlength=6))


class _SignedCodes:
    """A fitted extractor with signed codes: the first columns of X."""

    def __init__(self, k):
        self.k = k

    def transform(self, X):
        return np.asarray(X)[:, : self.k] - 0.5

    def inverse_transform(self, U):  # pragma: no cover - the decoder the contract asks
        return U


def test_weights_are_the_normalised_positive_codes():
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(200, 5))
    Y = X + rng.normal(size=(200, 5))
    est = ConceptShift(_SignedCodes(3), prefit=True).fit(X, Y)
    A = np.maximum(X[:, :3] - 0.5, 0.0)
    s = A.sum(1, keepdims=True)
    P = np.divide(A, s, out=np.zeros_like(A), where=s > 0)
    assert (s == 0).any()  # some rows have no active concept
    D = Y - X
    shifts = (P.T @ D) / P.sum(0)[:, None]
    assert_allclose(est.shift_vectors_, shifts)
    expected = X + P @ shifts + (1 - P.sum(1))[:, None] * D.mean(0)
    assert_allclose(est.predict(X), expected)


def test_soft_assignments_of_a_mixture():
    X, Y, *_ = make_shifted(2)
    gm = GaussianMixture(6, random_state=0)
    est = ConceptShift(gm, random_state=0).fit(X, Y)
    P = est.extractor_.predict_proba(X)
    assert_allclose(est.shift_vectors_, (P.T @ (Y - X)) / P.sum(0)[:, None])
    assert est.changed_concepts_.size == 2


def test_steer_moves_only_the_concept_rows():
    X, Y, *_ = make_shifted(3)
    est = ConceptShift(n_concepts=6, random_state=0).fit(X, Y)
    labels = est.extractor_.predict(X)
    k = int(est.changed_concepts_[0])
    X_before = X.copy()
    out = est.steer(X, k, alpha=2.0)
    assert_array_equal(X, X_before)  # the input is not modified
    moved = labels == k
    assert_allclose(out[moved], X[moved] + 2.0 * est.shift_vectors_[k])
    assert_array_equal(out[~moved], X[~moved])
    # every row, and only what is specific to the concept
    out_all = est.steer(X, k, alpha=1.0, rows="all", vector="differential")
    assert_allclose(out_all, X + est.shift_vectors_[k] - est.mean_shift_)
    # steering the original rows of a changed concept by its shift brings
    # them to the changed model (up to the noise)
    assert np.abs(out[moved] / 2.0 + X[moved] / 2.0 - Y[moved]).mean() < 0.3


def test_extractor_is_cloned_not_modified():
    X, Y, *_ = make_shifted(4)
    km = KMeans(6, n_init=2, random_state=0)
    est = ConceptShift(km).fit(X, Y)
    assert est.extractor_ is not km
    assert not hasattr(km, "cluster_centers_")
    nmf = NMFConcepts(n_concepts=3, max_iter=50, random_state=0)
    params = nmf.get_params()
    ConceptShift(nmf).fit(np.abs(X), np.abs(Y))
    assert not hasattr(nmf, "components_")
    assert nmf.get_params() == params
    # prefit: used as is, not refitted
    km.fit(X)
    centres = km.cluster_centers_.copy()
    est = ConceptShift(km, prefit=True).fit(X, Y)
    assert est.extractor_ is km
    assert_array_equal(km.cluster_centers_, centres)


def test_persistence(tmp_path):
    import joblib

    X, Y, *_ = make_shifted(0)
    est = ConceptShift(n_concepts=6, random_state=0).fit(X, Y)
    path = tmp_path / "shift.joblib"
    joblib.dump(est, path)
    loaded = joblib.load(path)
    assert_array_equal(loaded.predict(X), est.predict(X))
    for name in ("shift_vectors_", "changed_concepts_", "concept_alignment_"):
        assert_array_equal(getattr(loaded, name), getattr(est, name))
    again = pickle.loads(pickle.dumps(est))
    assert_array_equal(again.steer(X, 1), est.steer(X, 1))


def test_linear_mapping_for_another_width():
    # the changed model is a linear map of the original into more dimensions:
    # the map explains everything, no concept shift is left
    rng = np.random.RandomState(0)
    X, *_ = make_shifted(0)
    A = rng.normal(size=(16, 20))
    Y = X @ A + 1.0 + 0.01 * rng.normal(size=(600, 20))
    est = ConceptShift(n_concepts=6, mapping="linear", random_state=0).fit(X, Y)
    assert_allclose(est.mapping_coef_, A, atol=0.01)
    assert est.score(X, Y) > 0.999
    assert est.changed_concepts_.size == 0
    assert np.abs(est.shift_vectors_).max() < 0.01
    with pytest.raises(ValueError, match="mapping='linear'"):
        est.steer(X, 0)


def test_bad_input():
    X, Y, *_ = make_shifted(0, n=60)
    est = ConceptShift(n_concepts=3, random_state=0)
    with pytest.raises(ValueError, match=r"\(60, 16\).*\(59, 16\)"):
        est.fit(X, Y[:-1])
    with pytest.raises(ValueError, match=r"same width.*\(60, 16\).*\(60, 10\)"):
        est.fit(X, Y[:, :10])
    Y_nan = Y.copy()
    Y_nan[3, 2] = np.nan
    with pytest.raises(ValueError, match="Input Y contains NaN"):
        est.fit(X, Y_nan)
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(X_nan, Y)
    with pytest.raises(ValueError, match=r"same width.*\(60, 16\).*\(60, 1\)"):
        est.fit(X, Y[:, 0])
    with pytest.raises(ValueError, match="dim 3"):
        est.fit(X, Y[:, :, None])
    with pytest.raises(ValueError, match="requires y"):
        est.fit(X, None)
    est.fit(X, Y)
    with pytest.raises(ValueError, match=r"\(60, 15\).*16 columns"):
        est.score(X, Y[:, 1:])
    with pytest.raises(ValueError, match="expecting 16 features"):
        est.predict(X[:, :5])
    with pytest.raises(ValueError, match="out of range"):
        est.steer(X, 3)
    with pytest.raises(TypeError, match="int index"):
        est.steer(X, 1.5)
    with pytest.raises(ValueError, match="rows must be"):
        est.steer(X, 0, rows="some")
    with pytest.raises(TypeError, match="has no fit"):
        ConceptShift(_SignedCodes(2)).fit(X, Y)
