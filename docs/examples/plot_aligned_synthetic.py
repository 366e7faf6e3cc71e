"""
Aligned SAE on two synthetic modalities: when Iso-Energy helps, and when not
============================================================================

:class:`~skconcepts.sae.AlignedSAE` trains one sparse autoencoder on the rows
of two modalities (say, image and text embeddings) with an *Iso-Energy*
penalty: an atom that stands for a concept shared by both modalities should
carry the same energy in each. After fitting, each atom gets a modality score
``mu_k`` (its share of energy in the first modality) and a label: bimodal, or
owned by one modality. Removing the unimodal atoms
(:meth:`~skconcepts.sae.AlignedSAE.remove_modality_gap`) should close the
modality gap and keep what the pairs share.

Here the ground truth is known. :func:`~skconcepts.datasets.make_two_modality`
builds pairs from 24 shared atoms (same support in both rows of a pair) and 12
atoms specific to each modality, plus one offset vector per modality (the
gap). With ``iso_energy=True`` a shared atom has the same magnitude in both
rows of a pair; with ``iso_energy=False`` each shared atom is rescaled by a
different factor (up to 3x) in each modality, so the assumption behind the
penalty is violated. We compare the default alignment (``alignment="auto"``
with ``alignment_weight=None``: the rows here come in pairs, so the paired
Iso-Energy term at 0.2) with no penalty (``alignment_weight=0``, the plain SAE)
in both worlds, over three seeds.
"""

# %%
# Data, fits and measures
# -----------------------
# 3000 pairs in 64 dimensions: 2400 pairs train the SAE, the 600 other pairs
# are held out to measure the gap and retrieval. Each seed draws both the
# data and the SAE.
import time

import matplotlib.pyplot as plt
import numpy as np

from skconcepts.datasets import make_two_modality
from skconcepts.metrics import (
    atom_label_accuracy,
    atom_recovery,
    modality_gap,
    retrieval_recall_at_k,
)
from skconcepts.plotting import plot_modality_scores
from skconcepts.sae import AlignedSAE

N_PAIRS, N_TRAIN = 3000, 2400
DATA = dict(n_features=64, n_shared=24, n_specific=12, sparsity=0.92)
SAE = dict(n_concepts=128, top_k=4, max_epochs=30, batch_size=512, device="cpu")
WEIGHTS = {"aligned (default)": None, "unaligned (0)": 0.0}
SEEDS = (0, 1, 2)


def run(iso, weight, seed):
    X, y, truth = make_two_modality(
        N_PAIRS, iso_energy=iso, modality_offset=4.0, random_state=seed, **DATA
    )
    # rows i and N_PAIRS + i form a pair
    train = np.r_[np.arange(N_TRAIN), N_PAIRS + np.arange(N_TRAIN)]
    Xa, Xb = X[N_TRAIN:N_PAIRS], X[N_PAIRS + N_TRAIN :]
    sae = AlignedSAE(alignment_weight=weight, random_state=seed, **SAE)
    sae.fit(X[train], y[train])
    Za, Zb = sae.remove_modality_gap(Xa), sae.remove_modality_gap(Xb)
    scores = {
        "label acc": atom_label_accuracy(
            truth.atoms,
            truth.atom_labels.astype(str),
            sae.components_,
            sae.atom_modality_,
        ),
        "recovery": atom_recovery(truth.atoms, sae.components_),
        "R2": sae.reconstruction_r2_,
        "gap raw": modality_gap(Xa, Xb),
        "gap removed": modality_gap(Za, Zb),
        "R@1 raw": retrieval_recall_at_k(Xa, Xb),
        "R@1 removed": retrieval_recall_at_k(Za, Zb),
    }
    return sae, scores


start = time.perf_counter()
results, models = {}, {}
for iso in (True, False):
    for name, weight in WEIGHTS.items():
        runs = [run(iso, weight, seed) for seed in SEEDS]
        results[iso, name] = {k: [s[k] for _, s in runs] for k in runs[0][1]}
        models[iso, name] = runs[0][0]  # seed 0, for the histograms
print(f"{len(results) * len(SEEDS)} fits in {time.perf_counter() - start:.1f} s")

# %%
# The table
# ---------
# Label acc: share of the true atoms whose best-matching learned atom has the
# right label (bimodal, modality 0 or modality 1). Recovery: mean best cosine
# of a true atom with a learned one. Gap: distance between the means of the
# two held-out clouds, before and after removing the unimodal atoms. R@1:
# share of held-out rows of modality 0 whose nearest row of modality 1 (by
# cosine) is their pair. Mean ± standard deviation over the three seeds.
cols = list(next(iter(results.values())))
print("| Iso-Energy | model | " + " | ".join(cols) + " |")
print("|---" * (len(cols) + 2) + "|")
for (iso, name), r in results.items():
    cells = [f"{np.mean(r[c]):.3f} ± {np.std(r[c]):.3f}" for c in cols]
    print(f"| {'holds' if iso else 'violated'} | {name} | " + " | ".join(cells) + " |")

# %%
# What the table says
# -------------------
# * **The gap is an offset, and both SAEs find it.** The raw held-out clouds
#   sit about 5.7 apart; removing the unimodal atoms brings them within a few
#   tenths in every setting, because the modality offsets are learned as
#   unimodal directions with or without the penalty.
# * **When Iso-Energy holds, the penalty helps what is shared.** After the gap
#   is removed, retrieval of the pair rises from about 0.09 (raw: the offset
#   dominates the cosine) to about 0.56 with the penalty and about 0.48
#   without it, and the gap left is smaller with the penalty (about 0.04
#   against 0.12). The paired term makes atoms that fire on both rows of a
#   pair carry the same energy in both, so fewer shared directions are
#   mistaken for unimodal ones and thrown away with the gap; the labels show
#   it too (label accuracy about 0.99 with the penalty, 0.96 without). The
#   seed-to-seed spread (the ± column) is of the same order as the difference
#   in retrieval: three seeds show a tendency, the larger benchmark named
#   below is firmer evidence.
# * **When Iso-Energy is violated, the penalty is about neutral.** A shared
#   atom that is 3x stronger in one modality is, by its energy, close to
#   unimodal: both SAEs label some shared atoms as unimodal (label accuracy
#   of about 0.93-0.94 for both), remove them with the gap, and retrieval
#   after removal stays low (about 0.16 for both). Atom recovery is
#   unchanged; reconstruction R² is the same where Iso-Energy holds and
#   slightly lower with the penalty where it is violated (0.987 against
#   0.988: pushing truly unbalanced atoms towards balance has a cost, see the
#   alignment guide).
#
# Retrieval cannot reach 1 here: the two rows of a pair share only their
# shared codes, and the modality-specific codes are independent noise for
# retrieval. The benchmark ``benchmarks/bench_aligned.py`` (results on the
# Benchmarks page) runs the same comparison at a larger size.

# %%
# Modality-score histograms
# -------------------------
# :func:`~skconcepts.plotting.plot_modality_scores` draws the score ``mu_k`` of
# every live atom (seed 0). Atoms near 0 or 1 are unimodal (dashed lines: the
# ``modality_threshold`` of 0.05); those in between are bimodal. When
# Iso-Energy holds, the bimodal atoms gather around 0.5 (equal energy), about
# as tightly with the penalty as without (75 % of them within 0.1 of 0.5,
# against 72 % without); when it is violated, they spread over the whole
# range (about 20 % near 0.5), with or without the penalty.
fig, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True)
for ax, ((iso, name), sae) in zip(axes.ravel(), models.items(), strict=True):
    plot_modality_scores(sae, ax=ax)
    world = "Iso-Energy holds" if iso else "Iso-Energy violated"
    ax.set_title(f"{world}, {name}\n" + ax.get_title(), fontsize=9)
fig.tight_layout()
for (iso, name), sae in models.items():
    mu = sae.modality_scores_[sae.atom_modality_ == "bimodal"]
    print(
        f"{'holds' if iso else 'violated'}, {name}: bimodal atoms with "
        f"|mu - 0.5| < 0.1: {np.mean(np.abs(mu - 0.5) < 0.1):.0%} of {mu.size}"
    )
plt.show()
