"""skconcepts.inspection: positions, concept maps, top inputs, recursive concepts.

Known answers: a pattern placed at a known pixel makes its concept's map peak
there; the exemplars of a concept are the rows built with its largest code;
a parent concept that merges two earlier-layer patterns splits back into
them, each important for the parent.
"""

import numpy as np
import pytest
from scipy.ndimage import correlate
from scipy.optimize import linear_sum_assignment

from skconcepts import NMFConcepts, RecursiveConcepts
from skconcepts.inspection import (
    ambiguity_scores,
    concept_maps,
    importance_weighted_maps,
    positions_to_rows,
    rows_to_positions,
    top_exemplars,
    upsample_maps,
)


class LinearCodes:
    """A fitted extractor whose codes are ``X @ B`` (exact, deterministic)."""

    def __init__(self, B):
        self.B = np.asarray(B, dtype=float)

    def transform(self, X):
        return np.asarray(X) @ self.B


# ----------------------------------------------------------------- positions
def test_positions_round_trip_and_row_order():
    rng = np.random.RandomState(0)
    A = rng.rand(3, 4, 5, 6)  # h != w, so a transposed grid would show
    rows, shape = positions_to_rows(A)
    assert rows.shape == (60, 6) and shape == (3, 4, 5)
    # input-major, C order on the grid: (i, r, s) -> i * h * w + r * w + s
    for i, r, s in [(0, 0, 1), (1, 3, 0), (2, 2, 4)]:
        np.testing.assert_array_equal(rows[i * 20 + r * 5 + s], A[i, r, s])
    np.testing.assert_array_equal(rows_to_positions(rows, shape), A)
    # codes of any width go back on the same grid
    codes = rows[:, :2] * 3.0
    np.testing.assert_array_equal(rows_to_positions(codes, shape), A[..., :2] * 3)


def test_positions_channels_first_and_tokens():
    rng = np.random.RandomState(1)
    A = rng.rand(2, 6, 3, 4)  # torch layout (n, c, h, w)
    rows, shape = positions_to_rows(A, channel_axis=1)
    assert shape == (2, 3, 4)
    np.testing.assert_array_equal(rows[1 * 12 + 2 * 4 + 1], A[1, :, 2, 1])
    np.testing.assert_array_equal(rows_to_positions(rows, shape, channel_axis=1), A)
    T = rng.rand(2, 7, 5)  # tokens / frames (n, p, c)
    rows, shape = positions_to_rows(T)
    assert shape == (2, 7)
    np.testing.assert_array_equal(rows[7 + 3], T[1, 3])
    np.testing.assert_array_equal(rows_to_positions(rows, shape), T)


def test_positions_bad_input():
    rows, shape = positions_to_rows(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="24 rows but shape"):
        rows_to_positions(rows, (2, 3, 5))
    with pytest.raises(ValueError, match="holds 120 positions"):
        rows_to_positions(rows, (2, 3, 4, 5))  # the channel axis included
    with pytest.raises(ValueError, match="position axis"):
        positions_to_rows(np.zeros((4, 5)))
    with pytest.raises(ValueError, match="2-D array of rows"):
        rows_to_positions(np.zeros(24), shape)
    with pytest.raises(ValueError, match="sample axis"):
        positions_to_rows(np.zeros((2, 3, 4)), channel_axis=0)
    with pytest.raises(ValueError, match="channel_axis"):
        positions_to_rows(np.zeros((2, 3, 4)), channel_axis=5)


# --------------------------------------------------------------- concept maps
PLUS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=float)


def _pattern_images(n=40, size=16, seed=0):
    """Noise images with a bright plus sign centred at a known pixel.

    Centres are drawn with ``|row - col| >= 4``, so that a map whose grid
    axes were swapped would peak far from the truth.
    """
    rng = np.random.RandomState(seed)
    images = rng.uniform(0.0, 0.3, size=(n, size, size))
    centres = []
    while len(centres) < n:
        r, c = rng.randint(2, size - 2, size=2)
        if abs(r - c) >= 4:
            centres.append((r, c))
    for img, (r, c) in zip(images, centres, strict=True):
        img[r - 1 : r + 2, c - 1 : c + 2] += PLUS
    return images, np.array(centres)


def _features(images):
    """A fixed 'conv layer': 4 filters, ReLU, 2 x 2 average pooling -> (n, 8, 8, 4)."""
    filters = [
        PLUS - PLUS.mean(),  # the pattern detector
        np.array([[1.0, 1, 1], [0, 0, 0], [-1, -1, -1]]),  # horizontal edges
        np.array([[1.0, 0, -1], [1, 0, -1], [1, 0, -1]]),  # vertical edges
        np.full((3, 3), 1 / 9),  # brightness
    ]

    def relu_conv(img, f):
        return np.maximum(correlate(img, f, mode="nearest"), 0.0)

    # (n, 4, H, W): channels first, as a torch conv gives them
    maps = np.stack([np.stack([relu_conv(img, f) for f in filters]) for img in images])
    n, c, H, W = maps.shape
    return maps.reshape(n, c, H // 2, 2, W // 2, 2).mean(axis=(3, 5))


def test_concept_map_peaks_where_the_pattern_is():
    images, centres = _pattern_images()
    A = _features(images)  # (n, c, 8, 8)
    rows, _ = positions_to_rows(A, channel_axis=1)
    nmf = NMFConcepts(3, max_iter=200, device="cpu", random_state=0).fit(rows)
    plus = int(np.argmax(nmf.components_[:, 0]))  # the plus-detector concept
    maps = concept_maps(nmf, A, channel_axis=1, upsample_to=(16, 16))
    assert maps.shape == (len(images), 16, 16, 3)
    peaks = np.array(
        np.unravel_index(maps[..., plus].reshape(len(images), -1).argmax(1), (16, 16))
    ).T
    dist = np.linalg.norm(peaks - centres, axis=1)
    # 2 x 2 pooling then bilinear upsampling: the peak is within a pixel or so
    assert np.all(dist <= 1.5), dist


def test_concept_maps_are_the_codes_of_each_position():
    rng = np.random.RandomState(0)
    A = rng.rand(3, 4, 5, 6)
    B = rng.rand(6, 2)
    maps = concept_maps(LinearCodes(B), A)
    for i, r, s in [(0, 3, 1), (2, 0, 4), (1, 2, 2)]:
        np.testing.assert_allclose(maps[i, r, s], A[i, r, s] @ B)


def test_upsampling_matches_torch_bilinear():
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(0)
    maps = rng.rand(2, 4, 3, 5)
    up = upsample_maps(maps, (9, 7))
    ref = torch.nn.functional.interpolate(
        torch.tensor(maps).permute(0, 3, 1, 2),
        size=(9, 7),
        mode="bilinear",
        align_corners=False,
    )
    np.testing.assert_allclose(up, ref.permute(0, 2, 3, 1).numpy(), atol=1e-12)
    np.testing.assert_array_equal(upsample_maps(maps, (4, 3)), maps)
    near = upsample_maps(maps, (8, 6), interpolation="nearest")
    np.testing.assert_array_equal(near[:, ::2, ::2], maps)
    with pytest.raises(ValueError, match="one positive size per grid axis"):
        upsample_maps(maps, (8, 6, 2))


class _FittedImportance:
    """Duck type of a fitted SobolConceptImportance with per-class indices."""

    importances_ = np.array([[0.1, 0.6, 0.3], [0.5, 0.0, 0.2]])
    classes_ = np.array(["cat", "dog"])


def test_importance_weighted_maps():
    rng = np.random.RandomState(0)
    maps = rng.rand(2, 3, 3, 3)
    res = importance_weighted_maps(maps, _FittedImportance(), label="cat", top_n=2)
    np.testing.assert_array_equal(res.concepts, [1, 2])
    np.testing.assert_allclose(res.maps[..., 0], 0.6 * maps[..., 1])
    np.testing.assert_allclose(res.total, 0.6 * maps[..., 1] + 0.3 * maps[..., 2])
    res = importance_weighted_maps(maps, [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(res.concepts, [2, 1, 0])
    with pytest.raises(ValueError, match="label must be one of"):
        importance_weighted_maps(maps, _FittedImportance(), label="bird")
    with pytest.raises(ValueError, match="one value per concept"):
        importance_weighted_maps(maps, [1.0, 2.0])
    with pytest.raises(ValueError, match="pass the row"):
        importance_weighted_maps(maps, _FittedImportance.importances_)


# -------------------------------------------------------------- top exemplars
def _disjoint_dictionary(k, width, rng):
    W = np.zeros((k, k * width))
    for j in range(k):
        W[j, j * width : (j + 1) * width] = rng.uniform(0.5, 1.5, width)
    return W


def test_top_exemplars_are_the_rows_built_with_the_largest_code():
    rng = np.random.RandomState(0)
    W = _disjoint_dictionary(3, 4, rng)
    U = rng.uniform(0.0, 1.0, size=(200, 3))
    built = rng.permutation(200)[:15].reshape(3, 5)  # rows built with top codes
    for j in range(3):
        U[built[j], j] = [9.0, 8.0, 7.0, 6.0, 5.0]
    X = U @ W
    nmf = NMFConcepts(3, max_iter=300, device="cpu", random_state=0).fit(X)
    match = np.argmax(nmf.components_ @ W.T, axis=1)  # learned -> true concept
    res = top_exemplars(nmf, X, n=5)
    assert res.indices.shape == res.codes.shape == (3, 5)
    for j in range(3):
        np.testing.assert_array_equal(res.indices[j], built[match[j]])
        assert np.all(np.diff(res.codes[j]) < 0)


def test_top_exemplars_positional():
    rng = np.random.RandomState(1)
    U = rng.uniform(0, 1, size=(6, 3, 4, 2))  # codes on a 3 x 4 grid
    U[4, 2, 1, 0] = 5.0  # the strongest (input, position) for concept 0
    U[1, 0, 3, 0] = 4.0
    U[:, :, :, 1] = 0.1
    U[3, 1, 2, 1] = 3.0
    extractor = LinearCodes(np.eye(2))
    res = top_exemplars(extractor, U, n=2, positions="pairs")
    np.testing.assert_array_equal(res.indices[0], [4, 1])
    np.testing.assert_array_equal(res.positions[0], [[2, 1], [0, 3]])
    np.testing.assert_array_equal(res.positions[1, 0], [1, 2])
    res = top_exemplars(extractor, U, n=3)  # max over positions
    np.testing.assert_array_equal(res.indices[0, :2], [4, 1])
    np.testing.assert_allclose(res.codes[0, :2], [5.0, 4.0])
    mean = top_exemplars(extractor, U, n=6, positions="mean")
    np.testing.assert_allclose(
        mean.codes[0], np.sort(U[..., 0].mean(axis=(1, 2)))[::-1]
    )
    with pytest.raises(ValueError, match="positions must be one of"):
        top_exemplars(extractor, U, positions="sum")
    with pytest.raises(ValueError, match="positions is for positional"):
        top_exemplars(extractor, U[:, 0, 0], positions="max")
    with pytest.raises(ValueError, match="n must be a positive integer"):
        top_exemplars(extractor, U, n=0)
    with pytest.raises(TypeError, match="transform"):
        top_exemplars(object(), U)


# ---------------------------------------------------------- recursive concepts
def _two_layers(seed=0, n=600):
    """Earlier layer: 4 patterns; later layer: patterns 0 and 1 both map to C0.

    ``X = Z P + noise`` (patterns with disjoint supports); the later layer is
    ``relu(X M)`` with ``M`` sending pattern 0 and pattern 1 to the same
    direction ``C0``, pattern 2 to ``C1`` and pattern 3 to ``C2``.
    """
    rng = np.random.RandomState(seed)
    P = _disjoint_dictionary(4, 5, rng)
    C = _disjoint_dictionary(3, 4, rng)
    Q = C[[0, 0, 1, 2]]
    Z = rng.exponential(size=(n, 4)) * (rng.rand(n, 4) < 0.35)
    X = Z @ P + 0.02 * rng.rand(n, P.shape[1])
    M = P.T @ np.diag(1.0 / (P**2).sum(axis=1)) @ Q
    return X, M, P, C


@pytest.fixture(scope="module")
def two_layers():
    X, M, P, C = _two_layers()
    A = np.maximum(X @ M, 0.0)
    nmf = NMFConcepts(3, max_iter=200, device="cpu", random_state=0).fit(A)
    match = np.argmax(nmf.components_ @ C.T, axis=0)  # true -> learned concept
    return X, M, P, nmf, nmf.transform(A)[:, match], match


def _recovery(components, patterns):
    """Matched cosines between the sub-concepts and the true patterns."""
    unit = patterns / np.linalg.norm(patterns, axis=1, keepdims=True)
    cos = components @ unit.T
    r, c = linear_sum_assignment(-cos)
    return cos[r, c]


def test_recursion_splits_a_merged_concept_into_its_patterns(two_layers):
    X, M, P, nmf, U, _ = two_layers
    rec = RecursiveConcepts(n_concepts=2, n_top=0.2, device="cpu", random_state=0)
    rec.fit(X, U[:, 0])
    assert rec.selected_indices_.shape == (120,)
    assert np.all(U[rec.selected_indices_, 0] >= rec.threshold_)
    assert np.all(_recovery(rec.components_, P[:2]) > 0.9)
    # both sub-concepts matter for the parent, about equally
    assert np.all(rec.importances_ > 0.3), rec.importances_
    assert rec.head_score_ > 0.95
    assert rec.transform(X[:5]).shape == (5, 2)
    # the mechanism: decomposing every row instead of the parent's top rows
    # mixes in the other patterns and misses at least one sub-pattern
    everywhere = RecursiveConcepts(
        n_concepts=2, n_top=1.0, device="cpu", random_state=0
    ).fit(X, U[:, 0])
    assert np.min(_recovery(everywhere.components_, P[:2])) < 0.9


def test_recursion_with_the_exact_head(two_layers):
    X, M, P, nmf, U, match = two_layers

    def head(x):  # earlier layer -> later layer -> the parent concept's code
        return nmf.transform(np.maximum(x @ M, 0.0))[:, match[0]]

    rec = RecursiveConcepts(
        n_concepts=2, head=head, n_top=0.2, device="cpu", random_state=0
    ).fit(X, U[:, 0])
    assert rec.head_score_ > 0.999
    assert np.all(_recovery(rec.components_, P[:2]) > 0.9)
    assert np.all(rec.importances_ > 0.3), rec.importances_


def test_ambiguity_flags_the_merged_concept(two_layers):
    X, _, _, _, U, _ = two_layers
    res = ambiguity_scores(X, U, n_top=60, random_state=0)
    np.testing.assert_array_equal(res.ambiguous, [True, False, False])
    assert res.scores[0] > 0.2 and np.all(res.scores[1:] < 0.05), res.scores


def test_recursion_bad_input(two_layers):
    X, _, _, _, U, _ = two_layers

    def two_outputs(x):
        return np.c_[x[:, 0], x[:, 1]]

    with pytest.raises(ValueError, match="one output per row"):
        RecursiveConcepts(head=two_outputs, n_top=0.2, device="cpu").fit(X, U[:, 0])
    with pytest.raises(ValueError, match="n_top"):
        RecursiveConcepts(n_top=1.5).fit(X, U[:, 0])
    with pytest.raises(ValueError, match="parent concept's code"):
        RecursiveConcepts().fit(X, np.array(["a"] * len(X)))
    with pytest.raises(ValueError, match="requires y|y should be"):
        RecursiveConcepts().fit(X)
    with pytest.raises(ValueError, match="one row per sample"):
        ambiguity_scores(X, U[:10])
    with pytest.raises(ValueError, match="at least 4"):
        ambiguity_scores(X, U, n_top=2)


# ------------------------------------------------------------------- plotting
def test_plot_concept_maps_draws_each_map_over_its_image():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skconcepts.plotting import plot_concept_maps

    rng = np.random.RandomState(0)
    images, maps = rng.rand(3, 8, 8), rng.rand(3, 4, 4, 2)
    maps[1, 2, 3, 1] = 7.0
    fig = plot_concept_maps(images, maps, concepts=[1, 0], importances=[0.2, 0.5])
    try:
        assert len(fig.axes) == 3 * 3
        first_row = fig.axes[:3]
        assert first_row[1].get_title() == "concept 1 (0.50)"
        overlay = fig.axes[3 + 1]  # image 1, concept 1
        img, heat = overlay.images
        np.testing.assert_array_equal(img.get_array(), images[1])
        np.testing.assert_array_equal(heat.get_array(), maps[1, ..., 1])
        assert heat.get_clim() == (0.0, 7.0)  # one scale per concept
        assert heat.get_extent() == img.get_extent() == [-0.5, 7.5, 7.5, -0.5]
        fig2 = plot_concept_maps(images, maps, concepts=1, normalize="image")
        assert fig2.axes[1].images[1].get_clim()[1] == maps[0, ..., 1].max()
        with pytest.raises(ValueError, match="same n_samples"):
            plot_concept_maps(images[:2], maps)
        with pytest.raises(ValueError, match="indices below"):
            plot_concept_maps(images, maps, concepts=[2])
    finally:
        plt.close("all")


def test_recursion_torch_head_equals_the_same_linear_surrogate(two_layers):
    torch = pytest.importorskip("torch")
    X, _, _, _, U, _ = two_layers
    kw = dict(n_concepts=2, n_top=0.2, device="cpu", random_state=0)
    rec = RecursiveConcepts(**kw).fit(X, U[:, 0])
    ridge = rec.head_
    module = torch.nn.Linear(X.shape[1], 1).double()
    with torch.no_grad():
        module.weight.copy_(torch.tensor(ridge.coef_[None, :]))
        module.bias.fill_(float(ridge.intercept_))
    rec_torch = RecursiveConcepts(head=module, **kw).fit(X, U[:, 0])
    np.testing.assert_allclose(rec_torch.importances_, rec.importances_, atol=1e-8)
    assert rec_torch.head_score_ == pytest.approx(rec.head_score_)
