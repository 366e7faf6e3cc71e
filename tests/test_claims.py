"""The papers' claims on ground truth that can tell (issue 12).

- the two-modality generator's regimes (tilted shared directions, unequal
  concept frequencies) are what they say;
- the alignment term of ``AlignedSAE`` is what makes a shared concept whose
  direction differs per modality one bimodal atom (fails when the
  alignment gradient is removed);
- ``ArchetypalSAE`` is more stable than ``TopKSAE`` across seeds and
  disjoint halves of the data, beyond noise.
"""

import numpy as np
import pytest

from skconcepts.datasets import make_two_modality
from skconcepts.metrics import reconstruction_r2, shared_concept_capture


# -------------------------------------------------------------- generator
def test_two_modality_defaults_are_unchanged_by_the_new_options():
    a = make_two_modality(300, 12, 3, 2, sparsity=0.6, random_state=4)
    b = make_two_modality(
        300,
        12,
        3,
        2,
        sparsity=0.6,
        shared_cosine=1.0,
        frequency_decay=0.0,
        random_state=4,
    )
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[2].shared_atoms_b, a[2].atoms[:3])
    np.testing.assert_allclose(a[2].frequencies, 0.4)


def test_two_modality_tilted_shared_directions():
    n, s = 400, 4
    X, y, t = make_two_modality(
        n, 16, s, 2, sparsity=0.5, noise=0.0, shared_cosine=0.6, random_state=0
    )
    cos = np.sum(t.atoms[:s] * t.shared_atoms_b, axis=1)
    np.testing.assert_allclose(cos, 0.6, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(t.shared_atoms_b, axis=1), 1, atol=1e-6)
    # modality 0 uses Phi_S, modality 1 Phi_S' (same codes: Iso-Energy holds)
    D_b = t.atoms.copy()
    D_b[:s] = t.shared_atoms_b
    np.testing.assert_allclose(X[:n], t.codes[:n] @ t.atoms + t.offsets[0], atol=1e-5)
    np.testing.assert_allclose(X[n:], t.codes[n:] @ D_b + t.offsets[1], atol=1e-5)
    np.testing.assert_array_equal(t.codes[:n, :s], t.codes[n:, :s])
    with pytest.raises(ValueError, match="shared_cosine"):
        make_two_modality(10, 4, 1, 1, shared_cosine=1.5)


def test_two_modality_unequal_frequencies():
    n = 20000
    _, _, t = make_two_modality(
        n, 16, 4, 3, sparsity=0.9, frequency_decay=1.0, random_state=0
    )
    p = t.frequencies
    np.testing.assert_allclose(p[:4].mean(), 0.1)  # mean probability kept
    assert np.all(np.diff(p[:4]) < 0) and p[0] / p[3] == pytest.approx(4.0)
    active_a = (t.codes[:n] > 0).mean(0)
    np.testing.assert_allclose(active_a[:7], p[:7], atol=0.01)
    with pytest.raises(ValueError, match="frequency_decay"):
        make_two_modality(10, 4, 1, 1, frequency_decay=-1)


def test_shared_concept_capture_needs_precision():
    active = np.zeros((100, 2), dtype=bool)
    active[:50, 0] = active[50:, 1] = True
    # an atom that fires on every row of both sides "captures" nothing
    always = np.ones((100, 1))
    assert shared_concept_capture(always, always, active, [True]) == 0.0
    # one atom per concept, on both sides: captured if bimodal
    Z = active.astype(float)
    assert shared_concept_capture(Z, Z, active, [True, True]) == 1.0
    assert shared_concept_capture(Z, Z, active, [True, False]) == 0.5
    # split per modality (atom 0 on side a, atom 1 on side b): not captured
    za = np.c_[active[:, 0], np.zeros(100)]
    zb = np.c_[np.zeros(100), active[:, 0]]
    assert shared_concept_capture(za, zb, active[:, :1], [True, True]) == 0.0


# ------------------------------------------------------------ alignment
@pytest.mark.slow
def test_alignment_captures_tilted_shared_concepts():
    """Shared concepts with a direction per modality: one bimodal atom each.

    The claim regime of ``bench_aligned.py --claims --n-pairs 12000``
    ("tilted", cosine 0.65 between a shared concept's two directions), one
    seed, the default alignment (``"auto"``: ``"paired_energy"`` at 0.15,
    the imbalance measured pair by pair, atoms weighted by the pair
    correlation of evidence-weighted codes times their partner score,
    trained for the first 60% of the steps, on these paired rows). Over
    seeds 0-19 the plain SAE captured 0.477 +- 0.073 of the shared concepts
    and the default at least 0.969 on every seed (1.0 on 18), dead atoms
    +0.4 +- 2.4 of 128 (``benchmarks/results/aligned_claims_12000.md``;
    here, seed 0: 0.969 vs 0.469, dead 0.039 vs 0.0625). With the alignment
    gradient removed (the term still logged) the fit is the plain SAE's,
    bit for bit, and this test fails.
    """
    import torch

    from skconcepts.sae import AlignedSAE

    torch.set_num_threads(1)
    n, s = 12000, 32
    X, y, truth = make_two_modality(
        n,
        96,
        s,
        16,
        sparsity=0.95,
        modality_offset=4.0,
        shared_cosine=0.65,
        random_state=0,
    )
    model = dict(n_concepts=128, top_k=8, max_epochs=20, batch_size=512, device="cpu")
    capture, dead = {}, {}
    for name, kw in (("plain", dict(alignment_weight=0.0)), ("default", {})):
        est = AlignedSAE(random_state=0, **kw, **model).fit(X, y)
        Z = est.transform(X)
        mu = np.asarray(est.modality_scores_, dtype=float)
        bimodal = np.isfinite(mu) & (mu >= 0.05) & (mu <= 0.95)
        capture[name] = shared_concept_capture(
            Z[:n], Z[n:], truth.codes[:n, :s] > 0, bimodal
        )
        dead[name] = est.dead_fraction_
    assert est.alignment_ == "paired_energy"
    assert capture["default"] >= 0.95, capture
    assert capture["default"] >= capture["plain"] + 0.2, capture
    # dead atoms: not a claim in this regime (merging a concept's two atoms
    # frees one); the default has at most two more than the plain SAE here
    assert dead["default"] <= dead["plain"] + 2 / 128, dead


def _claim_r2(seed=0, **regime):
    """R^2 of the plain SAE and of the default in a regime of
    ``bench_aligned.py --claims --n-pairs 12000`` (``seed``: data and model)."""
    import torch

    from skconcepts.sae import AlignedSAE

    torch.set_num_threads(1)
    X, y, _ = make_two_modality(
        12000,
        96,
        32,
        16,
        sparsity=0.95,
        modality_offset=4.0,
        random_state=seed,
        **regime,
    )
    model = dict(n_concepts=128, top_k=8, max_epochs=20, batch_size=512, device="cpu")
    r2 = {}
    for name, kw in (("plain", dict(alignment_weight=0.0)), ("default", {})):
        est = AlignedSAE(random_state=seed, **kw, **model).fit(X, y)
        r2[name] = reconstruction_r2(X, est.inverse_transform(est.transform(X)))
    assert est.alignment_ == "paired_energy"
    return r2


@pytest.mark.slow
def test_alignment_keeps_r2_where_shared_directions_are_equal():
    """Where the shared directions are equal the default costs no R^2.

    The "equal" regime of ``bench_aligned.py --claims --n-pairs 12000``, seed
    0. Over seeds 0-19 the default's R^2 is 0.00001 +- 0.00007 above the
    plain SAE's (here 0.00005 below); with the gap lever kept for every atom
    (``PAIRED_ENERGY_GAP_GATE=None``, the ablation) it was 0.00019 +- 0.00008
    below on seeds 0-4, lower on every seed (here 0.00020), and this test
    fails.
    """
    r2 = _claim_r2()
    assert r2["default"] >= r2["plain"] - 0.0001, r2


@pytest.mark.slow
def test_alignment_costs_little_r2_where_iso_energy_is_violated():
    """Where Iso-Energy is violated the default's R^2 cost is small.

    The "violated" regime of ``bench_aligned.py --claims --n-pairs 12000``
    (shared energies rescaled per modality by factors in [1/3, 3]), seeds 0
    and 1 (the mean of the two paired differences: one seed's moves by about
    0.00002 when the data are perturbed in their 6th digit). Over seeds 0-19
    the default's R^2 is 0.00006 +- 0.00008 below the plain SAE's, less than
    the plain SAE's own spread over seeds (0.00011); here 0.00003 below and
    0.00001 above (mean 0.00001 below). Without the partner score
    (``PAIRED_ENERGY_PARTNER=False``, the ablation: the term then levels the
    data's own imbalance of the rescaled shared atoms) it is 0.00013 +-
    0.00007 below on seeds 0-9, here 0.00010 and 0.00006 (mean 0.00008),
    and this test fails; with the imbalance of the batch energies instead
    of pair by pair (``PAIRED_ENERGY_PER_PAIR=False``) the mean is 0.00023,
    and it fails too.
    """
    diff = []
    for seed in (0, 1):
        r2 = _claim_r2(seed, iso_energy=False)
        diff.append(r2["default"] - r2["plain"])
    assert np.mean(diff) >= -0.000045, diff


# ------------------------------------------------------------- stability
@pytest.mark.slow
def test_archetypal_more_stable_than_topk_over_seed_pairs():
    """Disjoint halves of the data, a different seed per fit, 4 pairs.

    The regime of ``benchmarks/bench_stability.py`` scaled down (128
    correlated atoms in 64 dimensions, 4 per sample, 256 concepts,
    ``top_k=8``, 8000 rows): at the current defaults the paired difference
    measured +0.021 (95% interval lower end +0.012) over these 4 pairs
    (+0.023, lower end +0.010, with ``kmeans_max_iter=30``); the benchmark
    (20000 rows, 5 pairs) measured +0.026 [+0.019, +0.033], with
    ``TopKSAE(init="kmeans")`` at -0.007 [-0.014, +0.001]: the k-means start
    alone does not pass this test. (On
    the former small problem, 64 atoms in 32 dimensions, the advantage
    vanished once TopKSAE was trained at the new learning rate: paired
    differences 0.016, 0.001, 0.010, 0.016.) The bound
    asks the lower end of the paired difference's 95% interval to be above
    0.005.
    """
    import torch
    from scipy.stats import t as student_t

    from skconcepts.datasets import make_sparse_atoms
    from skconcepts.metrics import dictionary_stability
    from skconcepts.sae import ArchetypalSAE, TopKSAE

    torch.set_num_threads(1)
    n = 8000
    X, _, _ = make_sparse_atoms(n, 64, 128, 4, noise=0.01, random_state=0)
    kw = dict(n_concepts=256, top_k=8, max_epochs=20, batch_size=512, device="cpu")
    diffs = []
    for i in range(4):
        perm = np.random.RandomState(i).permutation(n)
        halves = [X[np.sort(perm[: n // 2])], X[np.sort(perm[n // 2 :])]]
        stab = {}
        for Model in (ArchetypalSAE, TopKSAE):
            D = [
                Model(random_state=2 * i + 1 + h, **kw).fit(halves[h]).components_
                for h in (0, 1)
            ]
            stab[Model] = dictionary_stability(D[0], D[1])
        diffs.append(stab[ArchetypalSAE] - stab[TopKSAE])
    d = np.array(diffs)
    half = student_t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert d.mean() - half > 0.005, d


def test_topk_kmeans_init_is_the_archetypal_start():
    """``TopKSAE(init="kmeans")`` starts from A-SAE's (normalised) atoms."""
    import torch

    from skconcepts._backend import make_generator
    from skconcepts.datasets import make_sparse_atoms
    from skconcepts.sae import ArchetypalSAE, TopKSAE

    X, _, _ = make_sparse_atoms(500, 8, 6, 2, random_state=0)
    X = torch.as_tensor(X, dtype=torch.float64)
    b_pre = X.mean(0)
    start = {}
    for name, est in (
        ("kmeans", TopKSAE(6, 2, init="kmeans")),
        ("random", TopKSAE(6, 2)),
        ("archetypal", ArchetypalSAE(6, 2)),
    ):
        D = est._init_dictionary(X, b_pre, make_generator(3)).weight().detach()
        start[name] = (D / D.norm(dim=1, keepdim=True)).numpy()
    np.testing.assert_allclose(start["kmeans"], start["archetypal"], atol=1e-10)
    assert np.abs(start["random"] - start["archetypal"]).max() > 0.1
    # a fit with it runs and keeps unit-norm atoms
    est = TopKSAE(6, 2, init="kmeans", max_epochs=2, device="cpu", random_state=0)
    est.fit(X.numpy())
    np.testing.assert_allclose(np.linalg.norm(est.components_, axis=1), 1, atol=1e-5)
    with pytest.raises(ValueError, match="init"):
        TopKSAE(init="pca").fit(X.numpy())


def test_archetypal_kmeans_max_iter_runs_lloyd():
    """``kmeans_max_iter`` sets the Lloyd steps of the candidate k-means.

    More steps give candidates of lower k-means inertia on the same rows and
    seed (one step is the default, shared with ``TopKSAE(init="kmeans")``).
    """
    import torch

    from skconcepts._backend import make_generator
    from skconcepts._kmeans import assign
    from skconcepts.datasets import make_sparse_atoms
    from skconcepts.sae import ArchetypalSAE

    X, _, _ = make_sparse_atoms(2000, 16, 24, 3, random_state=0)
    X = torch.as_tensor(X, dtype=torch.float64)
    b_pre = X.mean(0)
    inertia = {}
    for steps in (1, 30):
        est = ArchetypalSAE(12, 3, kmeans_max_iter=steps)
        C = est._candidate_points(X, b_pre, make_generator(0))
        inertia[steps] = float(assign(X - b_pre, C)[1].sum())
    assert inertia[30] < 0.99 * inertia[1], inertia
    with pytest.raises(ValueError, match="kmeans_max_iter"):
        ArchetypalSAE(kmeans_max_iter=0).fit(X.numpy())
