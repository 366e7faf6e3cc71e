"""skconcepts.plotting: render headless and check what was drawn."""

import sys

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from skconcepts import plotting  # noqa: E402
from skconcepts.plotting import (  # noqa: E402
    plot_concept_images,
    plot_concept_importance,
    plot_concept_texts,
    plot_fidelity_curves,
    plot_modality_scores,
    plot_taco_tradeoff,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _bars(ax):
    return np.array([p.get_height() for p in ax.patches])


def _intervals(ax):
    """(x, lower, upper) of the vertical CI segments drawn on ``ax``."""
    (coll,) = ax.collections
    segs = coll.get_segments()
    return np.array([[s[0, 0], min(s[:, 1]), max(s[:, 1])] for s in segs])


def _ticklabels(ax):
    return [t.get_text() for t in ax.get_xticklabels()]


class FittedImportance:
    """Duck type of a fitted SobolConceptImportance with classes."""

    def __init__(self, rng):
        self.total_indices_ = rng.rand(3, 5)
        half = rng.rand(3, 5) * 0.1
        self.total_indices_ci_ = np.stack(
            [self.total_indices_ - half, self.total_indices_ + 2 * half], axis=-1
        )
        self.first_order_indices_ = self.total_indices_ / 2
        self.classes_ = np.array(["cat", "dog", "bird"])


# ---------------------------------------------------------------- importance
def test_importance_bars_and_intervals_1d():
    imp = np.array([0.5, 0.1, 0.3, 0.05])
    ci = np.array([[0.4, 0.6], [0.0, 0.25], [0.2, 0.33], [0.01, 0.2]])
    ax = plot_concept_importance(imp, ci, concept_names=list("abcd"))
    assert len(ax.patches) == 4
    np.testing.assert_allclose(_bars(ax), imp)
    got = _intervals(ax)
    np.testing.assert_allclose(got[:, 0], np.arange(4))
    np.testing.assert_allclose(got[:, 1:], ci)
    assert _ticklabels(ax) == list("abcd")
    # bars stand at the tick positions
    xs = [p.get_x() + p.get_width() / 2 for p in ax.patches]
    np.testing.assert_allclose(xs, ax.get_xticks())


def test_importance_interval_not_containing_the_estimate_is_drawn_as_is():
    # a bootstrap percentile interval may exclude the point estimate
    ax = plot_concept_importance([0.5, 0.2], [[0.55, 0.7], [0.0, 0.1]])
    np.testing.assert_allclose(_intervals(ax)[:, 1:], [[0.55, 0.7], [0.0, 0.1]])


def test_importance_interval_layouts_and_errors():
    imp = np.array([0.3, 0.6, 0.1])
    ci_last = np.array([[0.2, 0.4], [0.5, 0.9], [0.0, 0.2]])
    ax = plot_concept_importance(imp, ci_last.T)  # (2, n_concepts) layout
    np.testing.assert_allclose(_intervals(ax)[:, 1:], ci_last)
    with pytest.raises(ValueError, match="must have shape"):
        plot_concept_importance(imp, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="concept_names"):
        plot_concept_importance(imp, concept_names=["a"])
    with pytest.raises(ValueError, match="non-empty"):
        plot_concept_importance(np.zeros((2, 2, 2)))
    ax = plot_concept_importance(imp)  # no intervals: no segments
    assert len(ax.collections) == 0


def test_importance_from_fitted_estimator_one_panel_per_class():
    est = FittedImportance(np.random.RandomState(0))
    fig = plot_concept_importance(est)
    assert [a.get_title() for a in fig.axes] == ["cat", "dog", "bird"]
    for i, a in enumerate(fig.axes):
        np.testing.assert_allclose(_bars(a), est.total_indices_[i])
        np.testing.assert_allclose(_intervals(a)[:, 1:], est.total_indices_ci_[i])
    fig = plot_concept_importance(est, which="first_order")
    np.testing.assert_allclose(_bars(fig.axes[1]), est.first_order_indices_[1])
    assert len(fig.axes[1].collections) == 0  # no first-order intervals given
    assert "first-order" in fig.axes[0].get_ylabel()


def test_importance_from_attribution_estimator():
    class Attribution:  # duck type of a fitted ConceptAttribution
        importances_ = np.array([0.2, -0.1, 0.6])

    ax = plot_concept_importance(Attribution())
    np.testing.assert_allclose(_bars(ax), [0.2, -0.1, 0.6])
    assert len(ax.collections) == 0
    assert ax.get_ylabel() == "importance"
    ax = plot_concept_importance([0.1, 0.2], ylabel="occlusion")
    assert ax.get_ylabel() == "occlusion"


def test_importance_sorted_top_n_and_given_axes():
    est = FittedImportance(np.random.RandomState(1))
    _, axes = plt.subplots(1, 3)
    fig = plot_concept_importance(est, top_n=2, ax=axes)
    assert fig is axes[0].figure
    for i, a in enumerate(axes):
        order = np.argsort(-est.total_indices_[i])[:2]
        np.testing.assert_allclose(_bars(a), est.total_indices_[i][order])
        assert _ticklabels(a) == [str(j) for j in order]
        np.testing.assert_allclose(
            _intervals(a)[:, 1:], est.total_indices_ci_[i][order]
        )
    with pytest.raises(ValueError, match="one Axes per class"):
        plot_concept_importance(est, ax=axes[:2])
    with pytest.raises(ValueError, match="which"):
        plot_concept_importance(est, which="second")


# -------------------------------------------------------------- top samples
def test_concept_images_grid_shows_top_samples_in_order():
    rng = np.random.RandomState(0)
    codes = rng.rand(20, 3)
    images = rng.rand(20, 6, 5)
    fig = plot_concept_images(codes, images, concepts=[2, 0], n_top=4)
    assert len(fig.axes) == 8
    for row, c in enumerate([2, 0]):
        order = np.argsort(-codes[:, c])[:4]
        for j in range(4):
            a = fig.axes[row * 4 + j]
            assert len(a.images) == 1
            np.testing.assert_array_equal(a.images[0].get_array(), images[order[j]])
            assert a.get_title() == f"{codes[order[j], c]:.2f}"
        assert fig.axes[row * 4].get_ylabel() == f"concept {c}"


def test_concept_images_rgb_all_concepts_and_errors():
    rng = np.random.RandomState(1)
    codes = rng.rand(5, 2)
    images = rng.rand(5, 4, 4, 3)
    fig = plot_concept_images(codes, images, n_top=10, concept_names=["sky", "sea"])
    # n_top is capped by the number of samples; one row per concept
    assert len(fig.axes) == 2 * 5
    assert fig.axes[5].get_ylabel() == "sea"
    assert fig.axes[0].images[0].get_array().shape == (4, 4, 3)
    with pytest.raises(ValueError, match="same n_samples"):
        plot_concept_images(codes, images[:3])
    with pytest.raises(ValueError, match="concept must be an integer"):
        plot_concept_images(codes, images, concepts=[5])


def test_concept_texts_ranked_list():
    codes = np.array([[0.1, 0.0], [0.7, 1.0], [0.3, 0.5], [0.9, 0.2]])
    texts = ["bland soup", "friendly staff", "cheap menu", "x" * 200]
    ax = plot_concept_texts(codes, texts, 0, n_top=3, max_chars=20)
    lines = [t.get_text() for t in ax.texts]
    assert lines == [
        "1. [0.90] " + "x" * 19 + "…",
        "2. [0.70] friendly staff",
        "3. [0.30] cheap menu",
    ]
    # drawn top to bottom
    ys = [t.get_position()[1] for t in ax.texts]
    assert ys == sorted(ys, reverse=True)
    assert ax.get_title(loc="left") == "concept 0"
    ax = plot_concept_texts(codes, texts, 1, n_top=1, concept_name="service")
    assert [t.get_text() for t in ax.texts] == ["1. [1.00] friendly staff"]
    assert ax.get_title(loc="left") == "service"
    with pytest.raises(ValueError, match="one text per row"):
        plot_concept_texts(codes, texts[:2], 0)
    with pytest.raises(ValueError, match="concept must be an integer"):
        plot_concept_texts(codes, texts, 2)


# ----------------------------------------------------------- fidelity curves
def test_fidelity_curves_line_data_and_auc():
    lin = np.linspace(1.0, 0.0, 5)  # AUC 0.5 on [0, 1]
    step = np.array([1.0, 0.0, 0.0, 0.0, 0.0])  # AUC 0.125
    ax = plot_fidelity_curves({"linear": lin, "step": step})
    l1, l2 = ax.get_lines()
    np.testing.assert_allclose(l1.get_xdata(), np.arange(5))
    np.testing.assert_allclose(l1.get_ydata(), lin)
    np.testing.assert_allclose(l2.get_ydata(), step)
    assert l1.get_label() == "linear (AUC 0.500)"
    assert l2.get_label() == "step (AUC 0.125)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [l1.get_label(), l2.get_label()]
    assert "removed" in ax.get_xlabel()


def test_fidelity_curves_array_input_custom_x_and_errors():
    curves = np.array([[0.0, 0.5, 1.0], [0.0, 0.0, 1.0]])
    ax = plot_fidelity_curves(curves, x=[0, 2, 4], kind="insertion", labels=["a", "b"])
    assert [ln.get_label() for ln in ax.get_lines()] == [
        "a (AUC 0.500)",
        "b (AUC 0.250)",
    ]
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [0, 2, 4])
    assert "inserted" in ax.get_xlabel()
    ax = plot_fidelity_curves(curves[0])
    assert ax.get_lines()[0].get_label() == "deletion (AUC 0.500)"
    with pytest.raises(ValueError, match="kind"):
        plot_fidelity_curves(curves, kind="other")
    with pytest.raises(ValueError, match="labels"):
        plot_fidelity_curves(curves, labels=["a"])
    with pytest.raises(ValueError, match="x has shape"):
        plot_fidelity_curves(curves, x=[0, 1])


# ---------------------------------------------------------- modality scores
class FittedAligned:
    def __init__(self):
        self.modality_scores_ = np.array([0.01, 0.02, 0.5, 0.65, 0.97, np.nan, 0.12])
        self.atom_modality_ = np.array(
            ["text", "text", "bimodal", "bimodal", "image", "dead", "bimodal"],
            dtype=object,
        )
        self.modality_threshold = 0.1


class FittedAlignedSAE:
    """The attributes of a fitted skconcepts.AlignedSAE, as it sets them."""

    def __init__(self):
        self.classes_ = np.array([0, 1])
        self.modality_threshold = 0.05
        self.modality_scores_ = np.array([0.99, 0.0, 0.44, np.nan, 0.53, 0.01])
        self.atom_modality_ = np.array(
            [np.int64(0), np.int64(1), "bimodal", "dead", "bimodal", np.int64(1)],
            dtype=object,
        )


def test_modality_histogram_counts_and_thresholds():
    rng = np.random.RandomState(0)
    mu = rng.rand(200)
    mu[:7] = np.nan
    ax = plot_modality_scores(mu, bins=10)
    counts, _ = np.histogram(mu[~np.isnan(mu)], bins=10, range=(0, 1))
    np.testing.assert_array_equal(_bars(ax), counts)
    assert len(ax.patches) == 10
    xs = [ln.get_xdata()[0] for ln in ax.get_lines()]
    np.testing.assert_allclose(xs, [0.05, 0.95])
    alive = mu[~np.isnan(mu)]
    n_uni = int(np.sum((alive < 0.05) | (alive > 0.95)))
    assert ax.get_title() == f"{193 - n_uni} bimodal, {n_uni} unimodal, 7 dead atoms"


def test_modality_histogram_from_fitted_estimator():
    est = FittedAligned()
    ax = plot_modality_scores(est, bins=5)
    # the estimator's threshold (0.1) is used
    xs = [ln.get_xdata()[0] for ln in ax.get_lines()]
    np.testing.assert_allclose(xs, [0.1, 0.9])
    np.testing.assert_array_equal(_bars(ax), [3, 0, 1, 1, 1])
    assert ax.get_title() == "3 bimodal, 3 unimodal, 1 dead atoms"
    # modality names read from atom_modality_
    assert "0: text only" in ax.get_xlabel() and "1: image only" in ax.get_xlabel()
    with pytest.raises(ValueError, match="threshold"):
        plot_modality_scores(est, threshold=0.7)
    # classes_ names the two ends: mu is the share of classes_[0]
    ax = plot_modality_scores(FittedAlignedSAE(), bins=2)
    np.testing.assert_array_equal(_bars(ax), [3, 2])
    assert "0: 1 only" in ax.get_xlabel() and "1: 0 only" in ax.get_xlabel()
    assert ax.get_title() == "2 bimodal, 3 unimodal, 1 dead atoms"
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plot_modality_scores([0.2, 1.5])


# ----------------------------------------------------------------- TaCo
def test_taco_tradeoff_lines_and_leace_point():
    n = [0, 1, 2, 3]
    prot = [0.97, 0.8, 0.6, 0.52]
    task = [0.91, 0.9, 0.9, 0.88]
    ax = plot_taco_tradeoff(n, prot, task, leace=(0.85, 0.9), leace_at=1, chance=0.5)
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == [
        "protected (TaCo)",
        "task (TaCo)",
        "protected (LEACE)",
        "task (LEACE)",
        "chance",
    ]
    np.testing.assert_allclose(lines[0].get_xdata(), n)
    np.testing.assert_allclose(lines[0].get_ydata(), prot)
    np.testing.assert_allclose(lines[1].get_ydata(), task)
    assert list(lines[2].get_xdata()) == [1.0] and list(lines[2].get_ydata()) == [0.85]
    assert lines[2].get_marker() == "*"
    assert list(lines[3].get_ydata()) == [0.9]
    np.testing.assert_allclose(lines[4].get_ydata(), [0.5, 0.5])


def test_taco_tradeoff_leace_as_reference_lines_and_errors():
    ax = plot_taco_tradeoff([0, 2], [0.9, 0.5], leace=(0.8, 0.95))
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert labels == ["protected (TaCo)", "protected (LEACE)", "task (LEACE)"]
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), [0.8, 0.8])
    with pytest.raises(ValueError, match="n_removed has"):
        plot_taco_tradeoff([0, 1], [0.9, 0.5, 0.4])


def test_taco_tradeoff_two_rankings_on_one_axes():
    _, ax = plt.subplots()
    plot_taco_tradeoff([0, 2], [0.9, 0.5], [0.8, 0.7], label="task-aware", ax=ax)
    plot_taco_tradeoff(
        [0, 2],
        [0.9, 0.6],
        [0.8, 0.4],
        label="protected only",
        colors=("C1", "C2"),
        chance=(0.5, 1 / 6),
        ax=ax,
    )
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == [
        "protected (task-aware)",
        "task (task-aware)",
        "protected (protected only)",
        "task (protected only)",
        "chance (protected)",
        "chance (task)",
    ]
    assert lines[2].get_color() == "C1" and lines[3].get_color() == "C2"
    np.testing.assert_allclose(lines[3].get_ydata(), [0.8, 0.4])
    np.testing.assert_allclose(lines[5].get_ydata(), [1 / 6, 1 / 6])


def test_taco_tradeoff_from_fitted_eraser():
    class Eraser:  # the attributes a fitted TaCoEraser(n_remove="auto") sets
        recoverability_ = np.array([0.95, np.nan, 0.6, 0.5, np.nan])
        n_remove_ = 3

    ax = plot_taco_tradeoff(Eraser(), task=[0.9, 0.0, 0.88, 0.87, 0.0], chance=0.5)
    prot, task, chance, chosen = ax.get_lines()
    np.testing.assert_allclose(prot.get_xdata(), [0, 2, 3])
    np.testing.assert_allclose(prot.get_ydata(), [0.95, 0.6, 0.5])
    # a task curve over all n_removed is taken where the search evaluated
    np.testing.assert_allclose(task.get_ydata(), [0.9, 0.88, 0.87])
    np.testing.assert_allclose(chosen.get_xdata(), [3, 3])
    assert chosen.get_label() == "n_remove_"
    with pytest.raises(ValueError, match="protected is required"):
        plot_taco_tradeoff([0, 1])


# --------------------------------------------------------- optional extra
def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"skconcepts\[plot\]"):
        plotting.plot_concept_importance([0.1, 0.2])


def test_import_does_not_need_matplotlib():
    # the module imports matplotlib only inside its functions
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(plotting))
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = [a.name for n in top for a in n.names]
    assert not any("matplotlib" in n for n in names)


# ------------------------------------------- with the package's estimators
def test_plots_of_a_fitted_sobol_importance_and_its_deletion_curves():
    from sklearn.decomposition import PCA

    from skconcepts.importance import SobolConceptImportance
    from skconcepts.metrics import c_deletion

    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 3)) * [3.0, 1.0, 0.5]
    y = (X[:, 0] > 0).astype(int)

    def head(x):
        return np.tanh(x[:, 0]) + 0.3 * x[:, 1]

    est = SobolConceptImportance(
        PCA(n_components=3), head, n_designs=64, n_replicates=2, random_state=0
    ).fit(X, y)
    fig = plot_concept_importance(est)
    assert [a.get_title() for a in fig.axes] == [str(c) for c in est.classes_]
    for i, a in enumerate(fig.axes):
        np.testing.assert_allclose(_bars(a), est.total_indices_[i], rtol=1e-6)
        np.testing.assert_allclose(
            _intervals(a)[:, 1:], est.total_indices_ci_[i], rtol=1e-6
        )

    codes = est.extractor_.transform(X)
    W = est.extractor_.components_
    offset = est.extractor_.mean_
    score, curves = c_deletion(
        head, codes, W, est.transform(X), residual=offset, return_curves=True
    )
    ax = plot_fidelity_curves({"sobol": curves.mean(axis=0)})
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_ydata(), curves.mean(axis=0))
    # the area shown in the legend is the metric's score
    assert line.get_label() == f"sobol (AUC {score:.3f})"
