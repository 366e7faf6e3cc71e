"""AlignedSAE (Iso-Energy), the two-modality generator and metrics.

Ground truth comes from ``make_two_modality`` (known shared and
modality-specific atoms, a modality offset, Iso-Energy holding or violated),
from analytic values of the losses and from brute force for the metrics. The
full-size study (several seeds, energy and cosine forms) is
``benchmarks/bench_aligned.py`` (results in ``benchmarks/results/aligned.md``);
here the issue's bars are tested on a scaled-down problem.
"""

import itertools
import math
import pickle

import numpy as np
import pytest
import torch

from skconcepts.datasets import make_two_modality
from skconcepts.metrics import (
    atom_label_accuracy,
    atom_recovery,
    knn_distance,
    modality_gap,
    retrieval_recall_at_k,
)
from skconcepts.sae import AlignedSAE
from skconcepts.sae._aligned import (
    _gap_lever_off,
    atom_evidence,
    iso_energy_loss,
    paired_correlation,
    paired_cosine_loss,
    paired_iso_energy_loss,
    partner_score,
)

# 12 shared + 2 x 6 specific atoms in 32 dimensions, a large modality offset
N_PAIRS, D_FEAT, N_SHARED, N_SPEC = 1500, 32, 12, 6
DATA = dict(sparsity=0.85, modality_offset=4.0)
SMALL = dict(n_concepts=64, top_k=3, max_epochs=30, batch_size=256, device="cpu")


def _data(iso, seed=0):
    return make_two_modality(
        N_PAIRS, D_FEAT, N_SHARED, N_SPEC, iso_energy=iso, random_state=seed, **DATA
    )


def _fits(iso):
    X, y, truth = _data(iso)
    fits = {
        w: AlignedSAE(
            alignment="energy", alignment_weight=w, random_state=0, **SMALL
        ).fit(X, y)
        for w in (0.0, 0.03)
    }
    return X, y, truth, fits


@pytest.fixture(scope="module")
def holds():
    return _fits(True)


@pytest.fixture(scope="module")
def violated():
    return _fits(False)


# ------------------------------------------------------------ the claims
def test_labels_match_truth_when_iso_energy_holds(holds):
    X, y, truth, fits = holds
    acc = {
        w: atom_label_accuracy(
            truth.atoms,
            truth.atom_labels.astype(str),
            est.components_,
            est.atom_modality_,
        )
        for w, est in fits.items()
    }
    assert acc[0.03] >= 0.85
    assert acc[0.03] >= acc[0.0]
    # alignment_weight=0 is the plain SAE: no alignment term in the loss
    assert all(r["energy"] == 0.0 for r in fits[0.0].history_)
    assert fits[0.03].history_[-1]["energy"] > 0
    assert atom_recovery(truth.atoms, fits[0.03].components_) >= 0.9


def test_remove_modality_gap_keeps_retrieval(holds):
    X, y, _, fits = holds
    est = fits[0.03]
    Xa, Xb = X[y == 0], X[y == 1]
    Z = est.remove_modality_gap(X)
    Za, Zb = Z[y == 0], Z[y == 1]
    gap0, gap1 = modality_gap(Xa, Xb), modality_gap(Za, Zb)
    assert gap1 <= 0.2 * gap0
    # the stricter optimal-transport gap shrinks too
    assert modality_gap(Za, Zb, method="ot", max_samples=300, random_state=0) < (
        modality_gap(Xa, Xb, method="ot", max_samples=300, random_state=0)
    )
    for q, g, qz, gz in ((Xa, Xb, Za, Zb), (Xb, Xa, Zb, Za)):
        assert retrieval_recall_at_k(qz, gz) >= retrieval_recall_at_k(q, g)
    # only bimodal atoms are left: a row's decoded codes use none of the others
    U = est.transform(X)
    uni = np.array([lab not in ("bimodal",) for lab in est.atom_modality_])
    Uz = U * ~uni
    np.testing.assert_allclose(
        est.inverse_transform(Uz), Z, rtol=1e-4, atol=1e-4 * np.abs(Z).max()
    )


def _paired_term(est, X, y, pairs_per_batch=128):
    """The default's alignment term (paired_energy: the imbalance pair by
    pair, evidence-weighted pair correlations, energy-share weighted,
    unweighted by ``alignment_weight``), mean over fixed batches of pairs."""
    Z = torch.as_tensor(est.transform(X), dtype=torch.float64)
    ev = atom_evidence(
        torch.as_tensor(X - est.pre_bias_, dtype=torch.float64),
        torch.as_tensor(est.components_, dtype=torch.float64),
    )
    n = X.shape[0] // 2  # rows: the n rows of modality 0, then their partners
    modality = torch.as_tensor(y, dtype=torch.int64)
    pair = torch.as_tensor(np.r_[np.arange(n), np.arange(n)])
    perm = np.random.RandomState(0).permutation(n)
    values = []
    for b in np.array_split(perm, n // pairs_per_batch):
        rows = torch.as_tensor(np.r_[b, b + n])
        z, m = Z[rows], modality[rows]
        e = ev[rows] * (z > 0)  # the evidence where the atom fires
        r = paired_correlation(z, m, pair[rows], evidence=e)
        term = paired_iso_energy_loss(
            z, m, pair[rows], 1e-12, evidence=e, atom_weights=r, share_weighted=True
        )
        values.append(float(term))
    return float(np.mean(values))


def test_alignment_neutral_when_iso_energy_violated(violated, monkeypatch):
    from skconcepts.sae import _aligned

    X, y, truth, fits = violated
    plain, aligned = fits[0.0], fits[0.03]
    rec = {w: atom_recovery(truth.atoms, est.components_) for w, est in fits.items()}
    assert rec[0.03] >= rec[0.0] - 0.03
    assert aligned.reconstruction_r2_ >= plain.reconstruction_r2_ - 0.02
    # The default (auto -> paired_energy at 0.15, the imbalance pair by
    # pair, atoms weighted by evidence-weighted pair correlations times their
    # partner score, gap lever off for balanced atoms, switched off for the
    # last 40% of the steps) is near the plain SAE on reconstruction and
    # recovery. Measured on this problem, seeds 0-4 (data and model), default
    # minus plain R^2: +0.0017, +0.0034, -0.0042, +0.0026, +0.0029.
    default = AlignedSAE(random_state=0, **SMALL).fit(X, y)
    assert default.alignment_ == "paired_energy"
    assert default.reconstruction_r2_ >= plain.reconstruction_r2_ - 0.02
    assert atom_recovery(truth.atoms, default.components_) >= rec[0.0] - 0.04
    # Trained throughout, the term lowers itself on the data: the shared
    # atoms' energies are closer in the two modalities than the plain SAE's,
    # although the data's are not equal. Plain vs the default trained
    # throughout (the r-weighted imbalance pair by pair, evidence included),
    # seeds 0-4: 0.067/0.064, 0.054/0.048, 0.085/0.082, 0.077/0.073,
    # 0.059/0.054 (lower on every seed, by 3-12%; without the partner score
    # by 8-16%: 0.061, 0.045, 0.078, 0.069, 0.053). With the alignment
    # gradient removed (the term detached) the fit is the plain SAE's, bit
    # for bit, and this fails.
    # (The energy form at 0.03 does NOT lower the unweighted Iso-Energy term
    # here over seeds - 0.435/0.480, 0.476/0.521, 0.483/0.463, 0.457/0.466,
    # 0.470/0.437 - so that is not asserted; see the user guide.)
    monkeypatch.setattr(_aligned, "PAIRED_ENERGY_ON_FRACTION", None)
    throughout = AlignedSAE(random_state=0, **SMALL).fit(X, y)
    assert _paired_term(throughout, X, y) < 0.97 * _paired_term(plain, X, y)
    # (label accuracy under violation is reported, over seeds, by the benchmark:
    # a shared atom rescaled 9x in one modality is unimodal by its energy)


@pytest.mark.slow
@pytest.mark.parametrize("iso", [True, False])
def test_label_accuracy_over_model_seeds(iso):
    # one seed can differ by one atom in either direction; over four model
    # seeds the aligned SAE labels the atoms at least as well as the plain
    # one when Iso-Energy holds, and within one atom of it (of 24) when it
    # is violated (measured: 0.990 vs 0.990 holding, 0.854 vs 0.865 violated)
    X, y, truth = _data(iso)
    acc = {0.0: [], 0.03: []}
    for seed in range(4):
        for w in acc:
            est = AlignedSAE(
                alignment="energy", alignment_weight=w, random_state=seed, **SMALL
            ).fit(X, y)
            acc[w].append(
                atom_label_accuracy(
                    truth.atoms,
                    truth.atom_labels.astype(str),
                    est.components_,
                    est.atom_modality_,
                )
            )
    aligned, plain = np.mean(acc[0.03]), np.mean(acc[0.0])
    if iso:
        assert aligned >= 0.85 and aligned >= plain - 1e-9, acc
    else:
        assert aligned >= plain - 1 / 24 - 1e-9, acc


def test_both_modalities_reconstructed(holds):
    X, y, _, fits = holds
    est = fits[0.03]
    for m in (0, 1):
        Xm = X[y == m]
        # R^2 of each modality about its own mean: the modality offset does
        # not count as explained variance
        r2 = (
            1
            - ((Xm - est.inverse_transform(est.transform(Xm))) ** 2).sum()
            / ((Xm - Xm.mean(0)) ** 2).sum()
        )
        print(f"modality {m}: R2 about its own mean {r2:.3f}")
        assert r2 >= 0.8
    assert est.score(X) == pytest.approx(est.reconstruction_r2_, abs=1e-6)


def test_cosine_form(holds):
    X, y, truth, _ = holds
    est = AlignedSAE(alignment="cosine", random_state=0, **SMALL).fit(X, y)
    assert "cosine" in est.history_[-1] and est.history_[-1]["cosine"] < 0
    acc = atom_label_accuracy(
        truth.atoms, truth.atom_labels.astype(str), est.components_, est.atom_modality_
    )
    assert acc >= 0.85
    Z = est.remove_modality_gap(X)
    assert modality_gap(Z[y == 0], Z[y == 1]) <= 0.2 * modality_gap(
        X[y == 0], X[y == 1]
    )
    with pytest.raises(ValueError, match="needs paired data"):
        AlignedSAE(alignment="cosine", **SMALL).fit(X[:-1], y[:-1])
    with pytest.raises(ValueError, match="'paired_energy' needs paired data"):
        AlignedSAE(alignment="paired_energy", **SMALL).fit(X[:-1], y[:-1])
    # the energy form accepts unpaired data
    AlignedSAE(alignment="energy", **dict(SMALL, max_epochs=1)).fit(X[:-1], y[:-1])


def test_auto_alignment_picks_the_form_from_the_rows(holds, monkeypatch):
    import skconcepts.sae._parallel as distributed

    X, y, _, _ = holds
    one = dict(SMALL, max_epochs=1)
    est = AlignedSAE(random_state=0, **one).fit(X, y)  # paired rows
    assert est.alignment == "auto" and est.alignment_ == "paired_energy"
    assert est._weight() == 0.15 and est.history_[-1]["paired_energy"] > 0
    unpaired = AlignedSAE(random_state=0, **one).fit(X[:-1], y[:-1])
    assert unpaired.alignment_ == "energy" and unpaired._weight() == 0.03
    assert unpaired.history_[-1]["energy"] > 0
    # a later chunk without pairs is refused, naming the choice made
    with pytest.raises(ValueError, match="'auto' chose 'paired_energy'"):
        est.partial_fit(X[:-1], y[:-1])
    # data-parallel training cannot keep pairs on one rank: the energy form
    monkeypatch.setattr(distributed, "current", lambda: object())
    assert AlignedSAE()._resolve_alignment(True) == "energy"


# --------------------------------------------------- fitted attributes
def test_modality_scores_and_labels(holds):
    X, y, _, fits = holds
    est = fits[0.03]
    U = est.transform(X).astype(np.float64)
    E = np.stack([(U[y == m] ** 2).mean(0) for m in (0, 1)])
    np.testing.assert_allclose(est.modality_energy_, E, rtol=1e-5, atol=1e-12)
    total = E.sum(0)
    dead = total <= 1e-9 * total.sum()
    mu = est.modality_scores_
    assert np.isnan(mu[dead]).all()
    np.testing.assert_allclose(mu[~dead], E[0][~dead] / total[~dead], rtol=1e-5)
    lab = est.atom_modality_
    eps = est.modality_threshold
    for k in range(len(lab)):
        expected = (
            "dead"
            if dead[k]
            else "0"
            if mu[k] > 1 - eps
            else "1"
            if mu[k] < eps
            else "bimodal"
        )
        assert lab[k] == expected
    # one string dtype: np.unique and pandas handle it
    assert lab.dtype.kind == "U"
    assert set(np.unique(lab)) <= {"0", "1", "bimodal", "dead"}
    share = est.energy_share_
    assert set(share) == {"bimodal", "0", "1"}
    assert sum(share.values()) == pytest.approx(1.0)
    assert share["bimodal"] == pytest.approx(
        total[np.array([v == "bimodal" for v in lab])].sum() / total.sum()
    )
    assert est.classes_.tolist() == [0, 1]


def test_string_labels_and_row_order():
    X, y, truth = make_two_modality(
        300, 16, 4, 2, sparsity=0.6, modality_offset=3.0, random_state=1
    )
    names = np.array(["text", "image"])[y]  # classes_ sorted: image, text
    rng = np.random.RandomState(0)
    perm = rng.permutation(len(y))
    # interleaving the rows keeps the pairs (the i-th of each modality)
    keep = np.sort(perm)
    est = AlignedSAE(
        n_concepts=12, top_k=2, max_epochs=5, batch_size=64, random_state=0
    ).fit(X[keep], names[keep])
    assert est.classes_.tolist() == ["image", "text"]
    labels = set(est.atom_modality_.tolist())
    assert labels <= {"bimodal", "dead", "image", "text"}
    # modality "a" is classes_[0] ("image" = generator's modality 1)
    Ea = (est.transform(X[y == 1]).astype(np.float64) ** 2).mean(0)
    np.testing.assert_allclose(est.modality_energy_[0], Ea, rtol=1e-5, atol=1e-12)


def test_two_classes_required():
    X, y, _ = make_two_modality(50, 8, 2, 1, sparsity=0.5, random_state=0)
    est = AlignedSAE(n_concepts=4, top_k=2, max_epochs=1)
    with pytest.raises(ValueError, match="1 class"):
        est.fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="got 3 classes"):
        est.fit(X, np.arange(len(X)) % 3)
    with pytest.raises(ValueError, match="requires y"):
        est.fit(X, None)
    with pytest.raises(ValueError, match="reserved"):
        est.fit(X, np.array(["image", "bimodal"])[y])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(X, y[:-1])
    est.partial_fit(X, y)
    with pytest.raises(ValueError, match="fitted on"):
        est.partial_fit(X, y + 5)
    est.partial_fit(X, y)
    assert est.n_iter_ == 2


# ------------------------------------------------------------ the engine hooks
def test_batches_hold_whole_pairs_and_both_modalities():
    est = AlignedSAE(batch_size=10)
    n_a, n_b = 23, 23
    modality = torch.tensor([0] * n_a + [1] * n_b)
    pair = torch.cat([torch.arange(n_a), torch.arange(n_b)])
    gen = torch.Generator().manual_seed(0)
    batches = est._batch_indices(n_a + n_b, {"modality": modality, "pair": pair}, gen)
    assert len(batches) == 5
    seen = torch.cat(batches)
    assert sorted(seen.tolist()) == list(range(n_a + n_b))
    for b in batches:
        pa = sorted(pair[b][modality[b] == 0].tolist())
        pb = sorted(pair[b][modality[b] == 1].tolist())
        assert pa == pb and len(pa) >= 4
    # unequal counts (no pairs): every batch takes a share of each modality
    modality = torch.tensor([0] * 40 + [1] * 10)
    pair = torch.cat([torch.arange(40), torch.arange(10) + 40])
    batches = est._batch_indices(50, {"modality": modality, "pair": pair}, gen)
    for b in batches:
        assert (modality[b] == 0).sum() == 8 and (modality[b] == 1).sum() == 2


def test_losses_match_analytic_values():
    codes = torch.tensor(
        [[1.0, 0.0, 2.0], [0.0, 0.0, 1.0], [3.0, 0.0, 0.0], [1.0, 0.0, 1.0]],
        dtype=torch.float64,
    )
    modality = torch.tensor([0, 0, 1, 1])
    # E_a = [0.5, 0, 2.5], E_b = [5, 0, 0.5]
    expected = (4.5 / 5.5 + 0 + 2.0 / 3.0) / 3
    assert float(iso_energy_loss(codes, modality, 1e-12)) == pytest.approx(expected)
    assert float(iso_energy_loss(codes, torch.zeros(4, dtype=torch.long), 0)) == 0
    # pairs (0, 2) and (1, 3); top atom of each row masked:
    # row0 -> [1,0,0], row2 -> [0,0,0], row1 -> [0,0,0], row3 -> [0,0,1]
    pair = torch.tensor([0, 1, 0, 1])
    c = torch.tensor(
        [[1.0, 2.0, 0.5], [0.2, 3.0, 1.0], [2.0, 1.0, 0.5], [1.0, 4.0, 0.0]]
    )
    # masked: [1,0,.5], [.2,0,1], [0,1,.5], [1,0,0]
    m = torch.tensor([[1.0, 0, 0.5], [0.2, 0, 1.0], [0, 1.0, 0.5], [1.0, 0, 0]])
    cos0 = float(m[0] @ m[2] / m[0].norm() / m[2].norm())
    cos1 = float(m[1] @ m[3] / m[1].norm() / m[3].norm())
    got = float(paired_cosine_loss(c, torch.tensor([0, 0, 1, 1]), pair))
    assert got == pytest.approx(-(cos0 + cos1) / 2, rel=1e-6)


def test_paired_energy_weights_are_paired_correlations():
    rng = np.random.RandomState(0)
    n = 200
    za = np.abs(rng.randn(n, 3))
    zb = np.c_[2 * za[:, 0], np.abs(rng.randn(n)), -za[:, 2]]  # r = 1, ~0, -1
    codes = torch.as_tensor(np.vstack([za, zb]))
    modality = torch.as_tensor(np.repeat([0, 1], n))
    pair = torch.as_tensor(np.tile(np.arange(n), 2))
    r = paired_correlation(codes, modality, pair).numpy()
    expected = [np.corrcoef(za[:, k], zb[:, k])[0, 1] for k in range(3)]
    np.testing.assert_allclose(r, np.clip(expected, 0, None), atol=1e-12)
    assert r[0] == pytest.approx(1.0) and r[2] == 0.0
    np.testing.assert_allclose(
        paired_correlation(codes, modality, pair, power=2).numpy(), r**2
    )
    # the weighted Iso-Energy term: atom k's term times r_k
    per_atom = np.array(
        [
            float(iso_energy_loss(codes[:, [k]], modality, 1e-12)) * r[k]
            for k in range(3)
        ]
    )
    got = float(iso_energy_loss(codes, modality, 1e-12, atom_weights=torch.tensor(r)))
    assert got == pytest.approx(per_atom.mean())
    # no pairs: no weights
    assert paired_correlation(codes, modality, pair + modality * n) is None


def _brute_partner(za, zb):
    """The k x k correlation matrix of the a rows' codes with the b rows',
    an atom that never fires on a side correlating 0, diagonal excluded."""
    k = za.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        C = np.nan_to_num(np.corrcoef(za.T, zb.T)[:k, k:])
    np.fill_diagonal(C, -np.inf)
    return np.clip(np.maximum(C.max(axis=1), C.max(axis=0)), 0, None)


def test_partner_score_tells_a_split_concept_from_a_rescaled_one():
    """Atoms 0 and 1 split one shared concept (0 fires on the a rows of its
    pairs, 1 on the b rows, with proportional codes): partners, score 1.
    Atom 2 is one shared concept rescaled 3x in modality b (Iso-Energy
    violated): its pair correlation is 1 but it has no partner, score 0.
    Atom 3 fires on unrelated rows of both modalities: about 0."""
    rng = np.random.RandomState(0)
    n = 400
    on = rng.rand(n) < 0.5  # the pairs holding the split concept
    g = np.abs(rng.randn(n))
    za, zb = np.zeros((n, 4)), np.zeros((n, 4))
    za[on, 0], zb[on, 1] = g[on], 2 * g[on]
    h = np.abs(rng.randn(n)) * ~on
    za[:, 2], zb[:, 2] = h, 3 * h
    za[:, 3], zb[:, 3] = np.abs(rng.randn(n)), np.abs(rng.randn(n))
    codes = torch.as_tensor(np.vstack([za, zb]))
    modality = torch.as_tensor(np.repeat([0, 1], n))
    pair = torch.as_tensor(np.tile(np.arange(n), 2))
    p = partner_score(codes, modality, pair).numpy()
    np.testing.assert_allclose(p[:2], 1.0, atol=1e-12)
    assert p[2] == 0.0 and p[3] < 0.15
    assert paired_correlation(codes, modality, pair)[2] == pytest.approx(1.0)
    np.testing.assert_allclose(p, _brute_partner(za, zb), atol=1e-12)
    # on evidence-weighted codes, and on sparse random codes in random order
    ev = torch.as_tensor(rng.rand(2 * n, 4))
    w = (codes * ev).numpy()
    got = partner_score(codes, modality, pair, evidence=ev).numpy()
    np.testing.assert_allclose(got, _brute_partner(w[:n], w[n:]), atol=1e-12)
    z = rng.rand(2 * n, 30) * (rng.rand(2 * n, 30) < 0.1)
    z[:, 5] = 0  # an atom that never fires
    perm = rng.permutation(2 * n)
    codes = torch.as_tensor(z[perm])
    got = partner_score(codes, modality[perm], pair[perm]).numpy()
    np.testing.assert_allclose(got, _brute_partner(z[:n], z[n:]), atol=1e-12)
    assert got[5] == 0.0
    # no pairs: no score
    assert partner_score(codes, modality, pair + modality * n) is None


def test_evidence_discounts_firing_on_rows_without_the_atom():
    """The pair correlation of evidence-weighted codes (the default's weights).

    Atom 0 is modality a's own concept (direction e0, absent from every b
    row) but also fires on the b row of each pair, in proportion to a's
    codes - the spurious firing of a modality-specific atom that answers to a
    concept of the pair. Its code correlation is 1; weighted by the evidence
    (the b rows hold nothing of e0) it is 0, so the paired term does not push
    it to fire more on b. Atom 1 (direction e1, in both rows of a pair with
    the same code) keeps r = 1. Without the evidence weighting the default
    labelled one to two more of 64 atoms wrong where the shared directions
    are equal, and captured 0.938 instead of 1.0 of the tilted shared
    concepts on one seed of five (``bench_aligned.py --claims``).
    """
    rng = np.random.RandomState(0)
    n, d = 300, 6
    u = np.abs(rng.randn(n))
    v = np.abs(rng.randn(n))
    e = np.eye(d)
    xa = np.outer(u, e[0]) + np.outer(v, e[1])
    xb = np.outer(v, e[1]) + np.outer(np.abs(rng.randn(n)), e[2])
    xc = torch.as_tensor(np.vstack([xa, xb]))
    codes = torch.as_tensor(np.vstack([np.c_[u, v], np.c_[0.3 * u, v]]))
    modality = torch.as_tensor(np.repeat([0, 1], n))
    pair = torch.as_tensor(np.tile(np.arange(n), 2))
    dictionary = torch.as_tensor(2.0 * e[:2])  # any norm: directions only
    ev = atom_evidence(xc, dictionary)
    np.testing.assert_allclose(ev.numpy(), np.vstack([np.c_[u, v], np.c_[0 * u, v]]))
    plain = paired_correlation(codes, modality, pair, power=1).numpy()
    np.testing.assert_allclose(plain, [1.0, 1.0], atol=1e-12)
    weighted = paired_correlation(codes, modality, pair, power=1, evidence=ev)
    np.testing.assert_allclose(weighted.numpy(), [0.0, 1.0], atol=1e-12)
    # the default fit on paired rows weighs by these: its training step passes
    # the batch's evidence (the ablation PAIRED_ENERGY_EVIDENCE=False does not)
    from skconcepts.sae import _aligned

    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs.get("evidence"))
        return paired_correlation(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_aligned, "paired_correlation", spy)
        X, y, _ = _data(True)
        AlignedSAE(random_state=0, **SMALL | dict(max_epochs=1)).fit(X, y)
    assert calls and all(c is not None and bool((c >= 0).all()) for c in calls)


def test_paired_energy_term_is_weighted_by_the_atom_energy_share(monkeypatch):
    """A rare atom's Iso-Energy term shrinks with its energy (capped at 1).

    Without it the gradient of a rare atom's ratio grows as one over its
    energy and pushes it out of the top-k: where Iso-Energy is violated the
    default then had more dead atoms than the plain SAE
    (``bench_aligned.py --claims``).
    """
    rng = np.random.RandomState(1)
    n = 50
    za = np.abs(rng.randn(n, 3)) * [1.0, 0.1, 3.0]
    zb = np.abs(rng.randn(n, 3)) * [0.5, 0.02, 1.0]
    codes = torch.as_tensor(np.vstack([za, zb]), dtype=torch.float64)
    codes.requires_grad_(True)
    modality = torch.as_tensor(np.repeat([0, 1], n))
    e_a, e_b = (za**2).mean(0), (zb**2).mean(0)
    ratio = np.abs(e_a - e_b) / (e_a + e_b)
    share = np.minimum(1.0, (e_a + e_b) / (e_a + e_b).mean())
    assert share[1] < 0.01 and share[2] == 1.0
    w = np.array([0.3, 1.0, 0.5])
    got = iso_energy_loss(
        codes, modality, 1e-12, atom_weights=torch.tensor(w), share_weighted=True
    )
    assert float(got) == pytest.approx((ratio * share * w).mean(), rel=1e-10)
    # the share is a constant: the gradient is the share times the ratio's
    got.backward()
    g = codes.grad.clone()
    codes.grad = None
    plain = iso_energy_loss(codes, modality, 1e-12, atom_weights=torch.tensor(w))
    plain.backward()
    np.testing.assert_allclose(g.numpy(), codes.grad.numpy() * share, rtol=1e-10)
    # the default fit on paired rows (paired_energy) uses it at every step
    from skconcepts.sae import _aligned

    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return paired_iso_energy_loss(*args, **kwargs)

    monkeypatch.setattr(_aligned, "paired_iso_energy_loss", spy)
    X, y, _ = _data(True)
    est = AlignedSAE(random_state=0, **SMALL | dict(max_epochs=1)).fit(X, y)
    assert est.alignment_ == "paired_energy"
    assert calls and all(c.get("share_weighted") for c in calls)


def test_paired_imbalance_is_measured_pair_by_pair(monkeypatch):
    """The default's Iso-Energy imbalance: pair by pair, not batch energies.

    One atom fires on three pairs: pair 0 holds a concept heavier in
    modality a (codes 2 and 1), pair 1 one heavier in b (1 and 2) - an atom
    that mixes two shared concepts of opposite imbalance. Its batch energies
    are equal (the batch form is 0); pair by pair it is ``(3 + 3) / (5 +
    5) = 0.6``. Pair 2 (the atom fires on the a row only) does not count.
    Where Iso-Energy is violated the batch form had mixed such concepts
    (best cosine to a concept 1.0 -> 0.73): over 5 seeds it cost 0.0004 of
    R^2 at the default's weight (session 6's default: 0.0007), pair by pair
    0.0002 (``bench_aligned.py --claims``).
    """
    codes = torch.tensor(
        [[2.0], [1.0], [3.0], [1.0], [2.0], [0.0]], dtype=torch.float64
    )
    modality = torch.tensor([0, 0, 0, 1, 1, 1])
    pair = torch.tensor([0, 1, 2, 0, 1, 2])
    keep = [0, 1, 3, 4]  # without pair 2
    assert float(iso_energy_loss(codes[keep], modality[keep], 0.0)) == 0.0
    got = paired_iso_energy_loss(codes, modality, pair, 0.0)
    assert float(got) == pytest.approx(0.6, rel=1e-12)
    # a pair counts by how evenly its rows hold the atom's direction:
    # evidence 1 and 0.25 on pair 1 -> weight 0.25: (3 + 0.75) / (5 + 1.25)
    ev = torch.tensor([[1.0], [1.0], [1.0], [1.0], [0.25], [0.0]], dtype=torch.float64)
    got = paired_iso_energy_loss(codes, modality, pair, 0.0, evidence=ev)
    assert float(got) == pytest.approx(3.75 / 6.25, rel=1e-12)
    # atom weights and energy shares as in the batch form
    two = torch.cat([codes, 0.1 * codes], dim=1)
    w = torch.tensor([0.5, 1.0], dtype=torch.float64)
    got = paired_iso_energy_loss(
        two, modality, pair, 0.0, atom_weights=w, share_weighted=True
    )
    share = 0.01 / ((1 + 0.01) / 2)  # atom 1's energy over the mean atom energy
    assert float(got) == pytest.approx((0.5 * 0.6 + 0.6 * share) / 2, rel=1e-12)
    # the gradient lowers the heavy row and raises the light one of each pair
    c = codes.clone().requires_grad_(True)
    paired_iso_energy_loss(c, modality, pair, 0.0).backward()
    assert c.grad[0, 0] > 0 > c.grad[3, 0] and c.grad[4, 0] > 0 > c.grad[1, 0]
    assert c.grad[2, 0] == 0 and c.grad[5, 0] == 0
    # the default fit uses it; PAIRED_ENERGY_PER_PAIR=False (the ablation)
    # goes back to the batch energies
    from skconcepts.sae import _aligned

    calls = []

    def spy(name, real):
        def f(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)

        return f

    monkeypatch.setattr(
        _aligned, "paired_iso_energy_loss", spy("pairs", paired_iso_energy_loss)
    )
    monkeypatch.setattr(_aligned, "iso_energy_loss", spy("batch", iso_energy_loss))
    X, y, _ = _data(True)
    AlignedSAE(random_state=0, **SMALL | dict(max_epochs=1)).fit(X, y)
    assert calls and set(calls) == {"pairs"}
    calls.clear()
    monkeypatch.setattr(_aligned, "PAIRED_ENERGY_PER_PAIR", False)
    AlignedSAE(random_state=0, **SMALL | dict(max_epochs=1)).fit(X, y)
    assert calls and set(calls) == {"batch"}


def test_sampled_evidence_matches_the_dense_product():
    """``atom_evidence`` at the kept atoms only (the sparse path's ``idx``)."""
    rng = np.random.RandomState(0)
    xc = torch.as_tensor(rng.randn(20, 7))
    D = torch.as_tensor(rng.randn(9, 7) * 3)
    idx = torch.as_tensor(np.argsort(-rng.rand(20, 9), axis=1)[:, :3].copy())
    dense = atom_evidence(xc, D)
    sampled = atom_evidence(xc, D, idx=idx)
    mask = torch.zeros(20, 9, dtype=torch.bool).scatter(1, idx, True)
    np.testing.assert_allclose(sampled[mask].numpy(), dense[mask].numpy(), atol=1e-12)
    assert bool((sampled[~mask] == 0).all())


# ------------------------------------------------------ inference contracts
def test_paired_energy_is_switched_off_for_the_end_of_fit(holds, monkeypatch):
    from skconcepts.sae import _aligned

    X, y, _, _ = holds
    five = dict(SMALL, max_epochs=5)
    est = AlignedSAE(random_state=0, **five).fit(X, y)
    # on for the first 60% of the steps (epochs 1-3), then weight 0: no
    # gradient, logged as 0 (the benchmark: fewer dead atoms where Iso-Energy
    # is violated, same capture; docs/guide/alignment.md)
    assert _aligned.PAIRED_ENERGY_ON_FRACTION == 0.6
    on = [h["paired_energy"] > 0 for h in est.history_]
    assert on == [True, True, True, False, False]
    monkeypatch.setattr(_aligned, "PAIRED_ENERGY_ON_FRACTION", None)
    always = AlignedSAE(random_state=0, **five).fit(X, y)
    assert all(h["paired_energy"] > 0 for h in always.history_)
    assert np.abs(always.components_ - est.components_).max() > 1e-3
    # partial_fit has no step count: the term stays on
    monkeypatch.undo()
    part = AlignedSAE(random_state=0, **five).partial_fit(X, y)
    assert part.history_[-1]["paired_energy"] > 0


def test_dead_atoms_are_revived_at_the_switch_off_when_asked(monkeypatch):
    """``PAIRED_ENERGY_REVIVE`` (off by default since session 9: the revival
    cost R^2 where Iso-Energy is violated; the user guide has the figures)
    re-initialises the dead atoms once, at the switch-off."""
    from skconcepts.sae import _aligned

    real, calls = _aligned._revive_dead_atoms, []

    def spy(session, xb, dead_steps):
        dead = session.steps_since_fired >= dead_steps
        low = float(session.module.enc_bias.detach()[~dead].min())
        n = real(session, xb, dead_steps)
        bias = session.module.enc_bias.detach()
        revived = bias[dead.nonzero().flatten()[:n]].clone()
        calls.append((session.step, session.total_steps, n, low, revived))
        return n

    monkeypatch.setattr(_aligned, "_revive_dead_atoms", spy)
    ten = dict(SMALL, max_epochs=10)
    X, y, _ = _data(True, 0)
    default = AlignedSAE(random_state=0, **ten).fit(X, y)
    assert not calls  # the default does not revive
    for seed in (0, 1, 2):
        X, y, _ = _data(True, seed)
        calls.clear()
        with monkeypatch.context() as m:
            m.setattr(_aligned, "PAIRED_ENERGY_REVIVE", True)
            est = AlignedSAE(random_state=seed, **ten).fit(X, y)
        # once, at the first step with the paired term off, reviving atoms
        ((step, total, n, low, revived),) = calls
        assert step == math.ceil(_aligned.PAIRED_ENERGY_ON_FRACTION * total) and n > 0
        # the revived atoms start at the smallest live encoder bias
        assert revived.numel() == n and bool((revived == low).all())
        # fewer dead atoms at the end than without the revival (measured,
        # seeds 0-2, revival / none: 0.172/0.266, 0.125/0.188, 0.109/0.234)
        if seed == 0:
            plain = default
        else:
            plain = AlignedSAE(random_state=seed, **ten).fit(X, y)
        assert est.dead_fraction_ < plain.dead_fraction_ - 0.03


def test_transform_row_independent_and_persistence(holds):
    X, y, _, fits = holds
    est = fits[0.03]
    rows = X[::97]
    U = est.transform(rows)
    U1 = np.vstack([est.transform(rows[i : i + 1]) for i in range(len(rows))])
    np.testing.assert_allclose(U, U1, rtol=1e-5, atol=1e-6)
    Z = est.remove_modality_gap(rows)
    Z1 = np.vstack([est.remove_modality_gap(rows[i : i + 1]) for i in range(len(rows))])
    np.testing.assert_allclose(Z, Z1, rtol=1e-5, atol=1e-5)
    est2 = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(est2.transform(rows), U)
    np.testing.assert_array_equal(est2.remove_modality_gap(rows), Z)
    assert est2.atom_modality_.tolist() == est.atom_modality_.tolist()
    assert U.dtype == np.float32 and Z.dtype == np.float32
    est64 = AlignedSAE(**dict(SMALL, max_epochs=1), random_state=0).fit(
        X.astype(np.float64), y
    )
    assert est64.remove_modality_gap(X[:5].astype(np.float64)).dtype == np.float64
    assert est64.modality_scores_.dtype == np.float64


def test_random_state_reproducible(holds):
    X, y, _, _ = holds
    a = AlignedSAE(**dict(SMALL, max_epochs=2), random_state=3).fit(X, y)
    b = AlignedSAE(**dict(SMALL, max_epochs=2), random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.components_, b.components_)


def test_compose_stays_in_image_distribution(holds):
    X, y, _, fits = holds
    est = fits[0.03]
    Xa, Xb = X[y == 0], X[y == 1]
    rng = np.random.RandomState(0)
    i, j = rng.permutation(len(Xa))[:200], rng.permutation(len(Xb))[:200]
    naive = est.compose(Xa[i], Xb[j], bimodal_only=False)
    np.testing.assert_allclose(naive, Xa[i] + Xb[j], rtol=1e-6)
    bimodal = est.compose(Xa[i], Xb[j])
    ref = np.delete(Xa, i, axis=0)
    d_naive = np.median(knn_distance(naive, ref, k=10))
    d_bimodal = np.median(knn_distance(bimodal, ref, k=10))
    assert d_bimodal < 0.5 * d_naive
    # ground truth: the ideal composed row is row i of modality 0 plus the
    # shared content of row j of modality 1 (no offset, no specific atoms)
    _, _, truth = _data(True)
    S = slice(0, N_SHARED)
    ideal = Xa[i] + truth.codes[N_PAIRS + j, S] @ truth.atoms[S]
    err_naive = np.median(np.linalg.norm(naive - ideal, axis=1))
    err_bimodal = np.median(np.linalg.norm(bimodal - ideal, axis=1))
    assert err_bimodal < 0.25 * err_naive
    with pytest.raises(ValueError, match="same shape"):
        est.compose(Xa[:3], Xb[:4])


# ------------------------------------------------------------- generator
def test_make_two_modality_ground_truth():
    X, y, t = make_two_modality(
        400, 12, 3, 2, sparsity=0.5, noise=0.0, modality_offset=1.5, random_state=0
    )
    n = 400
    np.testing.assert_allclose(np.linalg.norm(t.offsets, axis=1), 1.5, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(t.atoms, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(X, t.codes @ t.atoms + t.offsets[y], atol=1e-5)
    za, zb = t.codes[:n], t.codes[n:]
    np.testing.assert_array_equal(za[:, :3], zb[:, :3])  # Iso-Energy holds
    assert (za[:, 5:] == 0).all() and (zb[:, 3:5] == 0).all()
    assert 0.4 < (za[:, :3] > 0).mean() < 0.6
    X, y, t = make_two_modality(
        400, 12, 3, 2, sparsity=0.5, iso_energy=False, violation=3.0, random_state=0
    )
    za, zb = t.codes[:n, :3], t.codes[n:, :3]
    np.testing.assert_array_equal(za > 0, zb > 0)  # same support
    ratio = zb.sum(0) / za.sum(0)
    np.testing.assert_allclose(ratio, t.energy_scale[1] / t.energy_scale[0], rtol=1e-4)
    assert (t.energy_scale >= 1 / 3 - 1e-6).all() and (t.energy_scale <= 3).all()
    assert not np.allclose(t.energy_scale, 1.0)


# -------------------------------------------------------------- metrics
def test_modality_gap_matches_brute_force():
    rng = np.random.RandomState(0)
    A, B = rng.randn(6, 3), rng.randn(6, 3) + 2.0
    assert modality_gap(A, B) == pytest.approx(np.linalg.norm(A.mean(0) - B.mean(0)))
    brute = min(
        np.mean([((A[i] - B[p[i]]) ** 2).sum() for i in range(6)])
        for p in itertools.permutations(range(6))
    )
    assert modality_gap(A, B, method="ot") == pytest.approx(np.sqrt(brute))
    # equal-size subsamples of the larger cloud
    g = modality_gap(A, np.vstack([B, B]), method="ot", max_samples=6, random_state=0)
    assert g > 0
    with pytest.raises(ValueError, match="method"):
        modality_gap(A, B, method="median")
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="max_samples"):
            modality_gap(A, B, method="ot", max_samples=bad)


def test_retrieval_and_knn_match_brute_force():
    rng = np.random.RandomState(0)
    Q, G = rng.randn(30, 5), rng.randn(30, 5)
    G[:10] = Q[:10] * 2.0  # the first ten are their own best match
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    Gn = G / np.linalg.norm(G, axis=1, keepdims=True)
    S = Qn @ Gn.T
    for k in (1, 3):
        ranks = [(np.delete(S[i], i) >= S[i, i]).sum() for i in range(30)]
        expected = np.mean(np.array(ranks) < k)
        assert retrieval_recall_at_k(Q, G, k=k, batch_size=7) == pytest.approx(expected)
    assert retrieval_recall_at_k(Q, G) >= 10 / 30
    ref = rng.randn(20, 5)
    dist = np.sort(np.linalg.norm(Q[:, None] - ref[None], axis=2), axis=1)[:, 4]
    np.testing.assert_allclose(knn_distance(Q, ref, k=5), dist)
    with pytest.raises(ValueError, match="same number of rows"):
        retrieval_recall_at_k(Q, G[:5])


def test_early_stopping_and_streamed_chunks(holds, tmp_path, monkeypatch):
    from skconcepts.sae import _engine

    X, y, _, _ = holds
    # interleave the modalities so that chunks hold both
    order = np.argsort(np.r_[np.arange(N_PAIRS), np.arange(N_PAIRS)], kind="stable")
    X, y = X[order], y[order]
    params = dict(SMALL, max_epochs=3)
    est = AlignedSAE(early_stopping=True, random_state=0, **params).fit(X, y)
    # paired rows: "auto" is the paired form (pairs split by the validation
    # draw are trained on without their partner)
    assert est.alignment_ == "paired_energy"
    assert all("val_r2" in h for h in est.history_)
    # trained for the first 60% of the steps, switched off after
    assert [h["paired_energy"] > 0 for h in est.history_] == [True, True, False]
    path = tmp_path / "X.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    # larger than the device budget: streamed in chunks of whole batches
    monkeypatch.setattr(_engine, "DEVICE_BUDGET_BYTES", 700 * X.shape[1] * 4)
    est = AlignedSAE(random_state=0, **params).fit(mm, y)
    assert est.history_[0]["steps"] == 12  # 6 chunks of 512 rows (last: 440), 2 each
    assert est.reconstruction_r2_ > 0.5


def test_atom_label_accuracy_compares_labels_as_strings():
    # the truth of make_two_modality holds integer modalities, atom_modality_
    # holds strings: the same modality must match, another must not
    true = np.eye(3)
    D = np.eye(3)
    assert atom_label_accuracy(true, ["bimodal", 0, 1], D, ["bimodal", "0", "1"]) == 1
    assert atom_label_accuracy(true, ["bimodal", 0, 1], D, ["bimodal", "1", "0"]) == (
        1 / 3
    )


def test_gap_lever_is_off_for_balanced_atoms():
    """The paired term cannot level a balanced atom through the modality gap.

    Codes ``relu(xc @ W.T)`` of two modalities whose means differ by a gap
    vector. For atoms whose energy imbalance over the batch is below the
    gate, the gradient to their encoder rows loses the part that comes from
    each row's modality mean (``<e_k, g_m>``); the values and the gradient
    of the unbalanced atoms are unchanged. Without it (gate None, the
    ablation) the default paid 0.0002 +- 0.0001 of R^2 where the shared
    directions are equal (lower on every seed), 0.0000 with it; with the
    batch energies of session 6, 0.0008 and 0.0002
    (``bench_aligned.py --claims``, 5 seeds).
    """
    rng = np.random.RandomState(0)
    n, d = 200, 5
    gap = np.array([3.0, 0, 0, 0, 0])
    xa = rng.randn(n, d) + gap / 2
    xb = rng.randn(n, d) - gap / 2
    xc = torch.as_tensor(np.vstack([xa, xb]))
    modality = torch.as_tensor(np.repeat([0, 1], n))
    # atom 0 along the gap (fires on one modality: imbalance near 1),
    # atom 1 orthogonal to it (balanced)
    W = torch.tensor([[1.0, 0.2, 0, 0, 0], [0.0, 0, 1.0, 0, 0]], dtype=xc.dtype)
    W.requires_grad_(True)
    codes = torch.relu(xc @ W.T)
    got = _gap_lever_off(codes, xc, modality, W, gate=0.3)
    np.testing.assert_allclose(
        got.detach().numpy(), codes.detach().numpy(), rtol=0, atol=1e-12
    )
    (grad,) = torch.autograd.grad(got.sum(), W)
    fired = (codes > 0).numpy()
    x = xc.numpy()
    mean_a, mean_b = x[:n].mean(0), x[n:].mean(0)
    g = np.where(modality.numpy()[:, None] == 0, mean_a, mean_b)
    g = g - (mean_a + mean_b) / 2  # each row's modality mean, centred
    e = codes.detach().numpy() ** 2
    imb = np.abs(e[:n].mean(0) - e[n:].mean(0)) / (e[:n].mean(0) + e[n:].mean(0))
    assert imb[0] > 0.3 > imb[1]
    np.testing.assert_allclose(grad[0].numpy(), x[fired[:, 0]].sum(0), rtol=1e-10)
    np.testing.assert_allclose(
        grad[1].numpy(), (x - g)[fired[:, 1]].sum(0), rtol=1e-10, atol=1e-10
    )
    # the default fit on paired rows applies it at every step with the term
    from skconcepts.sae import _aligned

    calls = []

    def spy(codes, xc, modality, enc_weight, gate):
        calls.append(gate)
        return _gap_lever_off(codes, xc, modality, enc_weight, gate)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_aligned, "_gap_lever_off", spy)
        X, y, _ = _data(True)
        AlignedSAE(random_state=0, **SMALL | dict(max_epochs=1)).fit(X, y)
    assert calls and all(c == _aligned.PAIRED_ENERGY_GAP_GATE for c in calls)
