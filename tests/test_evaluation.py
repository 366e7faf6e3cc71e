"""The SAE evaluation suite (skconcepts.metrics._evaluation) and its plots.

Checked against analytic values (constructed codes and reconstructions),
peers (scikit-learn's variance-weighted R², PCA's explained variance ratio,
the estimator's own ``score``), and on synthetic codes where one known
latent carries the label.
"""

import matplotlib
import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.metrics import r2_score

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from skconcepts.datasets import make_sparse_atoms  # noqa: E402
from skconcepts.metrics import (  # noqa: E402
    cross_seed_stability,
    dead_fraction,
    dense_fraction,
    evaluate_sae,
    feature_f1,
    feature_mcc,
    fraction_variance_unexplained,
    k_sparse_probing,
    latent_density,
    latent_density_histogram,
    mean_l0,
)
from skconcepts.plotting import plot_latent_density, plot_probing_curve  # noqa: E402
from skconcepts.sae import TopKSAE, load_pretrained, save_pretrained  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


class Identity(BaseEstimator):
    """An extractor whose codes are its input (codes given by the test)."""

    def fit(self, X, y=None):
        self.n_features_in_ = np.shape(X)[1]
        return self

    def transform(self, X):
        return np.array(X, dtype=float)

    def inverse_transform(self, Z):
        return np.array(Z, dtype=float)


# ---------------------------------------------------------------- FVU
X3 = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 3.0]])
X3_HAT = X3 + np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])


def test_fvu_total_is_the_ratio_of_summed_squares():
    # mean row (2, 1): SST = 5 + 1 + 8 = 14, SSE = 2
    assert fraction_variance_unexplained(X3, X3_HAT) == pytest.approx(2 / 14)
    # peer: scikit-learn's variance-weighted R² (total variance, not the
    # mean of per-feature R², which would give 1 - (1/8 + 1/6) / 2)
    peer = 1 - r2_score(X3, X3_HAT, multioutput="variance_weighted")
    assert fraction_variance_unexplained(X3, X3_HAT) == pytest.approx(peer)
    per_feature = 1 - r2_score(X3, X3_HAT, multioutput="uniform_average")
    assert abs(fraction_variance_unexplained(X3, X3_HAT) - per_feature) > 1e-3


def test_fvu_per_row_is_the_mean_of_row_ratios():
    # rows: 1/5, 0/1, 1/8 (SAELens explained_variance_legacy)
    got = fraction_variance_unexplained(X3, X3_HAT, aggregate="per_row")
    assert got == pytest.approx((1 / 5 + 0 + 1 / 8) / 3)
    with pytest.raises(ValueError, match="aggregate"):
        fraction_variance_unexplained(X3, X3_HAT, aggregate="mean")


def test_fvu_errors_and_input_untouched():
    X = X3.copy()
    fraction_variance_unexplained(X, X3_HAT)
    np.testing.assert_array_equal(X, X3)
    with pytest.raises(ValueError, match="same shape"):
        fraction_variance_unexplained(X3, X3_HAT[:2])


# ---------------------------------------------------------------- firing
def _constructed_codes():
    """20 rows, 4 latents: dead, 5 % (1 row), 50 % (signed), always."""
    codes = np.zeros((20, 4))
    codes[3, 1] = 2.0
    codes[::2, 2] = -np.arange(1, 11)  # negative codes fire too
    codes[:, 3] = 0.5
    return codes


def test_density_dead_dense_on_constructed_codes():
    codes = _constructed_codes()
    np.testing.assert_allclose(latent_density(codes), [0.0, 0.05, 0.5, 1.0])
    assert dense_fraction(codes) == 0.5  # > 10 %: latents 2 and 3
    assert dense_fraction(codes, threshold=0.6) == 0.25
    assert dense_fraction(codes, threshold=0.01) == 0.75
    assert dead_fraction(codes) == 0.25
    # the activity threshold: |code| > 0.5 drops latent 3 and a row of 2
    np.testing.assert_allclose(
        latent_density(codes, threshold=0.5), [0.0, 0.05, 0.5, 0.0]
    )
    with pytest.raises(ValueError, match="threshold"):
        dense_fraction(codes, threshold=1.5)
    with pytest.raises(ValueError, match="threshold"):
        latent_density(codes, threshold=-1)


def test_density_histogram_counts():
    density = [0.0, 0.0, 0.002, 0.02, 0.03, 0.5, 1.0]
    counts, edges, n_dead = latent_density_histogram(density, bins=3, log_range=(-3, 0))
    np.testing.assert_allclose(edges, [-3, -2, -1, 0])
    assert counts.tolist() == [1, 2, 2] and n_dead == 2
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        latent_density_histogram([0.5, 3.0])


def test_evaluate_sae_firing_columns_on_constructed_codes():
    codes = _constructed_codes()
    table = evaluate_sae(Identity().fit(codes), codes, batch_size=3)
    assert table["fvu"] == [pytest.approx(0.0)]
    assert table["l0"] == [pytest.approx(0.05 + 0.5 + 1.0)]
    assert table["dead_fraction"] == [0.25] and table["dense_fraction"] == [0.5]
    assert table["n_rows"] == [20] and table["n_latents"] == [4]


# ---------------------------------------------------------------- probing
def _probing_data(signed=False, seed=0, n=600, n_latents=20, carrier=13):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    codes = rng.exponential(1.0, (n, n_latents)) * (rng.rand(n, n_latents) < 0.3)
    if signed:
        # every other latent drifts up a little with the label; the carrier
        # drops strongly: only the absolute difference ranks it first
        codes += 0.3 * y[:, None]
        codes[:, carrier] = -2.0 * y + 0.3 * rng.randn(n)
    else:
        codes[:, carrier] = y * (1.0 + rng.rand(n))
    return codes, y


@pytest.mark.parametrize("signed", [False, True])
def test_probing_finds_the_one_latent_that_carries_the_label(signed):
    codes, y = _probing_data(signed)
    res = k_sparse_probing(
        codes[:400], y[:400], codes[400:], y[400:], ks=(1, 2, 5), random_state=0
    )
    assert res["latents"][0, 0] == 13  # fails without the class-mean ranking
    assert res["accuracy"][0] > 0.95
    assert res["chance"] == 0.5 and res["tasks"].tolist() == [1]
    # without the carrier, a k=1 probe is at chance
    rest = np.delete(codes, 13, axis=1)
    if not signed:
        res = k_sparse_probing(
            rest[:400], y[:400], rest[400:], y[400:], ks=(1,), random_state=0
        )
        assert abs(res["accuracy"][0] - 0.5) < 0.1


def test_probing_a_random_latent_is_at_chance():
    codes, y = _probing_data()
    # the probe on one fixed noise latent (ranking bypassed by the data)
    one = codes[:, [4]]
    res = k_sparse_probing(one[:400], y[:400], one[400:], y[400:], ks=(1,))
    assert abs(res["accuracy"][0] - 0.5) < 0.1


def test_probing_multiclass_one_task_per_class():
    rng = np.random.RandomState(1)
    y = rng.choice(["a", "b", "c"], 900)
    codes = rng.exponential(1.0, (900, 12)) * (rng.rand(900, 12) < 0.3)
    carriers = {"a": 7, "b": 2, "c": 10}
    for cls, j in carriers.items():
        codes[:, j] = (y == cls) * (1.0 + rng.rand(900))
    res = k_sparse_probing(
        codes[:600], y[:600], codes[600:], y[600:], ks=(1, 3), random_state=0
    )
    assert res["tasks"].tolist() == ["a", "b", "c"]
    assert res["latents"][:, 0].tolist() == [7, 2, 10]
    assert res["task_accuracy"].shape == (3, 2)
    assert res["accuracy"][0] > 0.95
    np.testing.assert_allclose(res["accuracy"], res["task_accuracy"].mean(axis=0))


def test_probing_balance_subsamples_to_equal_classes():
    # 90 % negatives: balanced chance is 0.5; unbalanced, the majority share
    rng = np.random.RandomState(0)
    y = (rng.rand(1000) < 0.1).astype(int)
    codes = rng.rand(1000, 4)
    res = k_sparse_probing(codes[:700], y[:700], codes[700:], y[700:], ks=(1,))
    assert res["chance"] == 0.5
    res = k_sparse_probing(
        codes[:700], y[:700], codes[700:], y[700:], ks=(1,), balance=False
    )
    assert res["chance"] == pytest.approx(1 - y[700:].mean())


def test_probing_bad_input():
    codes, y = _probing_data()
    tr, te = slice(0, 400), slice(400, None)
    with pytest.raises(ValueError, match="400 rows but y_train has 399"):
        k_sparse_probing(codes[tr], y[:399], codes[te], y[te])
    with pytest.raises(ValueError, match="larger than the number of latents"):
        k_sparse_probing(codes[tr], y[tr], codes[te], y[te], ks=(1, 21))
    with pytest.raises(ValueError, match="single class"):
        k_sparse_probing(codes[tr], np.zeros(400), codes[te], y[te])
    with pytest.raises(ValueError, match="not in y_train"):
        k_sparse_probing(codes[tr], y[tr], codes[te], y[te] + 5)
    with pytest.raises(ValueError, match="same number of latents"):
        k_sparse_probing(codes[tr], y[tr], codes[te, :5], y[te])
    with pytest.raises(ValueError, match="positive integers"):
        k_sparse_probing(codes[tr], y[tr], codes[te], y[te], ks=(0,))
    with pytest.raises(ValueError, match="no row"):
        k_sparse_probing(codes[tr], y[tr], codes[te], np.zeros(200, int))


# ---------------------------------------------------------------- evaluate_sae
@pytest.fixture(scope="module")
def atoms_data():
    X, atoms, codes = make_sparse_atoms(
        1200, 16, 12, 2, noise=0.01, dtype=np.float64, random_state=0
    )
    y = (codes[:, 3] > 0).astype(int)  # does atom 3 take part in the row?
    return X, y


@pytest.fixture(scope="module")
def topk(atoms_data):
    X, _ = atoms_data
    return TopKSAE(
        24, 2, max_epochs=30, batch_size=128, device="cpu", random_state=0
    ).fit(X)


def test_evaluate_sae_topk_against_its_own_score(atoms_data, topk):
    X, y = atoms_data
    X_before = X.copy()
    table, details = evaluate_sae(
        topk, X, y, batch_size=100, random_state=0, return_details=True
    )
    np.testing.assert_array_equal(X, X_before)
    codes = topk.transform(X)
    assert table["fvu"][0] == pytest.approx(1 - topk.score(X), abs=1e-9)
    assert table["explained_variance"][0] == pytest.approx(topk.score(X), abs=1e-9)
    assert table["l0"][0] == pytest.approx(mean_l0(codes))
    assert table["l0"][0] <= 2.0
    assert table["dead_fraction"][0] == pytest.approx(dead_fraction(codes))
    np.testing.assert_allclose(details["latent_density"], latent_density(codes))
    assert table["n_latents"] == [24]
    # the default ks that fit the 24 latents; atom 3 is learnt by some latent
    assert [k for k in (1, 2, 5, 10, 20) if f"probe_accuracy_k{k}" in table] == [
        1,
        2,
        5,
        10,
        20,
    ]
    # atom 3 may be split over two latents (24 latents for 12 atoms): one
    # latent is well above chance, twenty recover the label
    assert table["probe_accuracy_k1"][0] > 0.7
    assert table["probe_accuracy_k20"][0] > 0.9
    assert table["probe_chance"] == [0.5]
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(table)
    assert frame.shape[0] == 1 and frame.loc[0, "estimator"] == "TopKSAE"


def test_evaluate_sae_streams_in_batches(atoms_data, topk):
    X = atoms_data[0][:300]
    whole = evaluate_sae(topk, X)
    for batch_size in (1, 7, 5000):
        got = evaluate_sae(topk, X, batch_size=batch_size)
        for key in ("fvu", "l0", "dead_fraction", "dense_fraction"):
            assert got[key][0] == pytest.approx(whole[key][0], abs=1e-9), key


def test_evaluate_sae_memmap(atoms_data, topk, tmp_path):
    X, _ = atoms_data
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", "w+", X.dtype, X.shape)
    mm[:] = X
    mm.flush()
    ro = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert evaluate_sae(topk, ro, batch_size=256)["fvu"][0] == pytest.approx(
        evaluate_sae(topk, X)["fvu"][0], abs=1e-9
    )


def test_evaluate_sae_pca_signed_codes(atoms_data):
    X, y = atoms_data
    pca = PCA(6).fit(X)
    table = evaluate_sae(pca, X, y, ks=(1, 2, 6), batch_size=250, random_state=0)
    # PCA's reconstruction of its training data leaves 1 - sum(ratios)
    assert table["fvu"][0] == pytest.approx(1 - pca.explained_variance_ratio_.sum())
    assert table["l0"] == [6.0] and table["dense_fraction"] == [1.0]
    assert table["dead_fraction"] == [0.0]
    assert 0.5 <= table["probe_accuracy_k6"][0] <= 1.0


def test_evaluate_sae_dataframe_and_list_rows(atoms_data):
    pd = pytest.importorskip("pandas")
    X, y = atoms_data
    pca = PCA(4).fit(X)
    expected = evaluate_sae(pca, X, y, ks=(1, 2), random_state=0)
    for rows in (pd.DataFrame(X), X.tolist()):
        got = evaluate_sae(pca, rows, pd.Series(y), ks=(1, 2), random_state=0)
        assert got == expected


def test_evaluate_sae_loaded_saelens_file(atoms_data, topk, tmp_path):
    X, y = atoms_data
    folder = save_pretrained(topk, tmp_path / "sae")
    loaded = load_pretrained(folder)
    a = evaluate_sae(topk, X, y, random_state=0)
    b = evaluate_sae(loaded, X, y, random_state=0)
    for key in ("fvu", "l0", "dead_fraction", "dense_fraction", "probe_accuracy_k1"):
        assert b[key][0] == pytest.approx(a[key][0], abs=1e-5), key


def test_evaluate_sae_held_out_rows(atoms_data, topk):
    X, y = atoms_data
    table = evaluate_sae(topk, X[:900], y[:900], X_test=X[900:], y_test=y[900:])
    assert table["n_rows"] == [300]
    assert table["fvu"][0] == pytest.approx(1 - topk.score(X[900:]), abs=1e-9)
    assert table["probe_accuracy_k20"][0] > 0.9


def test_evaluate_sae_bad_input(atoms_data, topk):
    X, y = atoms_data
    with pytest.raises(ValueError, match="1200 rows but y has 1199"):
        evaluate_sae(topk, X, y[:-1])
    with pytest.raises(ValueError, match="single class"):
        evaluate_sae(topk, X, np.ones(1200))
    with pytest.raises(ValueError, match="larger than the number of latents"):
        evaluate_sae(topk, X, y, ks=(1, 25))
    with pytest.raises(ValueError, match="without y_test"):
        evaluate_sae(topk, X, y, X_test=X[:10])
    with pytest.raises(NotFittedError):
        evaluate_sae(TopKSAE(8, 2), X)

    class NoInverse(BaseEstimator):
        components_ = np.eye(2)

        def transform(self, X):
            return X

    with pytest.raises(TypeError, match="inverse_transform"):
        evaluate_sae(NoInverse(), X)


def test_evaluate_sae_ground_truth_columns(topk):
    # the data the SAE was trained on (the atoms_data fixture), 300 rows
    X, atoms, codes = make_sparse_atoms(
        1200, 16, 12, 2, noise=0.01, dtype=np.float64, random_state=0
    )
    X, codes = X[:300], codes[:300]
    # the true codes as the extractor's codes: perfect scores
    table = evaluate_sae(Identity().fit(codes), codes, true_codes=codes)
    assert table["feature_mcc"][0] == pytest.approx(1.0)
    assert table["feature_f1"] == [1.0]
    # an SAE: the columns are the ground-truth metrics of its codes
    table = evaluate_sae(
        topk, X, true_codes=codes, true_directions=atoms, batch_size=64
    )
    Z = topk.transform(X)
    assert table["feature_mcc"][0] == pytest.approx(feature_mcc(codes, Z))
    assert table["feature_f1"][0] == pytest.approx(feature_f1(codes, Z))
    expected = feature_f1(
        codes, Z, matching="decoder", directions=atoms, decoder=topk.components_
    )
    assert table["feature_f1_decoder"][0] == pytest.approx(expected)
    assert 0.5 < table["feature_mcc"][0] <= 1.0
    with pytest.raises(ValueError, match="true_codes has 299 rows"):
        evaluate_sae(topk, X, true_codes=codes[:-1])
    with pytest.raises(ValueError, match="needs true_codes"):
        evaluate_sae(topk, X, true_directions=atoms)


# ---------------------------------------------------------------- stability
def test_cross_seed_stability():
    X, _, _ = make_sparse_atoms(400, 8, 6, 2, dtype=np.float64, random_state=0)
    assert cross_seed_stability(PCA(4), X, random_state=0) == pytest.approx(1.0)
    # noise: each seed finds its own dictionary (1.0 if the seeds were equal)
    noise = np.random.RandomState(0).randn(300, 8)
    sae = TopKSAE(8, 2, max_epochs=3, batch_size=64, device="cpu")
    score, pairs = cross_seed_stability(
        sae, noise, n_seeds=3, random_state=0, return_scores=True
    )
    assert pairs.shape == (3,) and score == pytest.approx(pairs.mean())
    assert score < 0.95
    with pytest.raises(ValueError, match="n_seeds"):
        cross_seed_stability(PCA(2), X, n_seeds=1)
    with pytest.raises(TypeError, match="random_state"):
        cross_seed_stability(Identity(), X)


def test_evaluate_sae_stability_column(atoms_data):
    X, _ = atoms_data
    table = evaluate_sae(PCA(3).fit(X), X, n_seeds=2, random_state=0)
    assert table["stability"] == [pytest.approx(1.0)]


# ---------------------------------------------------------------- plots
def test_plot_latent_density_from_codes_and_density():
    codes = _constructed_codes()
    ax = plot_latent_density(codes, bins=2, log_range=(-2, 0))
    heights = [p.get_height() for p in ax.patches]
    assert heights == [1, 2]  # 0.05 in [-2, -1); 0.5 and 1.0 in [-1, 0]
    assert "1 dead of 4 latents" in ax.get_title()
    (line,) = ax.get_lines()
    assert line.get_xdata()[0] == pytest.approx(-1.0)  # log10(0.1)
    ax2 = plot_latent_density(latent_density(codes), bins=2, log_range=(-2, 0))
    assert [p.get_height() for p in ax2.patches] == heights


def test_plot_probing_curve_single_and_several():
    codes, y = _probing_data()
    res = k_sparse_probing(
        codes[:400], y[:400], codes[400:], y[400:], ks=(1, 2, 5), random_state=0
    )
    ax = plot_probing_curve(res)
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), [1, 2, 5])
    np.testing.assert_allclose(line.get_ydata(), res["accuracy"])
    assert ax.get_lines()[1].get_ydata()[0] == 0.5  # chance
    ax = plot_probing_curve(
        {"sae": res, "pca": dict(res, accuracy=res["accuracy"] / 2)}
    )
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["sae", "pca", "chance"]
    with pytest.raises(ValueError, match="'k' and 'accuracy'"):
        plot_probing_curve({"sae": {"k": [1]}})
    with pytest.raises(TypeError):
        plot_probing_curve([0.5, 0.6])
