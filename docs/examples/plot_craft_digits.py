"""
CRAFT step by step on a digits network: concepts, Sobol' importance, checks
===========================================================================

CRAFT (Fel et al., 2023) explains a classifier with *concepts*: it factors
the non-negative activations of a hidden layer with NMF (``A ~ U W``), asks
how much each concept matters to each class with Sobol' indices, and shows
the inputs that express each concept the most. This walk-through does every
step on the hidden ReLU layer of a small network trained on scikit-learn's
digits, and then looks at the numbers CRAFT gives with a critical eye: their
Monte Carlo error, the interactions between concepts, whether removing the
important concepts really changes the decision, and how the cheaper local
estimators of :class:`~skconcepts.ConceptAttribution` compare.

The companion example :ref:`sphx_glr_auto_examples_plot_digits_craft_figures.py`
draws the same pipeline with :mod:`skconcepts.plotting`.
"""

# %%
# A small network and its hidden activations
# ------------------------------------------
# The network is cut after its hidden ReLU layer: ``hidden`` gives the
# activations ``A`` we explain, ``head`` is the rest of the network (the class
# logits).

import matplotlib.pyplot as plt
import numpy as np

from skconcepts.datasets import load_digits_activations

digits = load_digits_activations(hidden_layer_sizes=(64,), max_iter=300, random_state=0)
A_train, A_test = digits.A_train, digits.A_test  # hidden ReLU activations
y_test, img_test = digits.y_test, digits.images_test
head = digits.head  # the rest of the network: activations -> 10 class logits
print(f"test accuracy: {digits.model.score(digits.X_test, y_test):.3f}")

# %%
# Step 1 -- concepts: NMF of the activations
# ------------------------------------------
# Each row of ``W`` (``components_``) is a concept: a non-negative direction
# of the 64-unit hidden layer. ``U`` says how much of each concept an image
# holds. The images with the largest code show what a concept "is".
from skconcepts import NMFConcepts

k = 10
nmf = NMFConcepts(n_concepts=k, max_iter=400, device="cpu", random_state=0)
nmf.fit(A_train)
U_test = nmf.transform(A_test)
print(f"reconstruction R2 on held-out activations: {nmf.score(A_test):.3f}")

n_top = 6
fig, axes = plt.subplots(k, n_top, figsize=(n_top * 0.9, k * 0.95))
for c in range(k):
    best = np.argsort(-U_test[:, c])[:n_top]
    for j, i in enumerate(best):
        ax = axes[c, j]
        ax.imshow(img_test[i], cmap="gray_r")
        ax.set_xticks([])
        ax.set_yticks([])
        if j == 0:
            ax.set_ylabel(f"c{c}", rotation=0, labelpad=12)
fig.suptitle("The test images that express each concept the most")
fig.tight_layout()

# Which digits carry each concept (share of the concept's total code mass):
mass = np.stack([U_test[y_test == d].sum(0) for d in range(10)])
mass /= mass.sum(0, keepdims=True)
for c in range(k):
    top = np.argsort(-mass[:, c])[:2]
    print(
        f"concept {c}: digits {top[0]} ({mass[top[0], c]:.0%}), "
        f"{top[1]} ({mass[top[1], c]:.0%})"
    )

# %%
# Step 2 -- importance: Sobol' indices per class
# ----------------------------------------------
# For each test image, random concept masks ``m`` from a scrambled Sobol'
# sequence rescale its codes, the head gives the logit of the image's class
# for ``(m * u) W + residual``, and the total Sobol' index of a concept is the
# share of the logit's variance in which that concept takes part. Averaging
# per class gives CRAFT's global importance. The residual ``a - u W`` is added
# back so that the unmasked image gives exactly the network's logit.
from skconcepts import SobolConceptImportance

sobol = SobolConceptImportance(
    nmf, head, prefit=True, n_designs=32, n_replicates=4, random_state=0
)
sobol.fit(A_test, y_test)

fig, ax = plt.subplots(figsize=(6, 4.5))
im = ax.imshow(sobol.total_indices_, cmap="viridis")
ax.set_xticks(range(k), [f"c{c}" for c in range(k)])
ax.set_yticks(range(10), [f"digit {d}" for d in sobol.classes_])
ax.set_title("Total Sobol' index of each concept, per class")
fig.colorbar(im, ax=ax)
fig.tight_layout()

for d in sobol.classes_:
    order = np.argsort(-sobol.total_indices_[d])[:2]
    parts = []
    for c in order:
        lo, hi = sobol.total_indices_ci_[d, c]
        parts.append(f"c{c} {sobol.total_indices_[d, c]:.2f} [{lo:.2f}, {hi:.2f}]")
    print(f"digit {d}: " + ", ".join(parts))

# %%
# Interactions: total minus first order
# -------------------------------------
# The first-order index is the share of variance a concept explains *alone*;
# the total index adds every interaction it takes part in. Here the head
# after the cut is linear, so the logit is additive in the codes and the two
# agree up to Monte Carlo noise -- a deeper head (or a softmax probability)
# would show interactions as a positive gap.
gap = sobol.total_indices_ - sobol.first_order_indices_
print(f"mean total - first order: {gap.mean():.3f} (max {gap.max():.3f})")

# %%
# How many designs? The Monte Carlo error
# ---------------------------------------
# ``n_designs`` (``N``) sets the cost, ``N (k + 2)`` head calls per image,
# and the precision. The replicate intervals shrink at least like ``1 / sqrt(N)``:
# CRAFT's default of 32 is enough to rank the top concepts of a class; use
# more to compare close ones.
for n_designs in (16, 32, 128):
    est = SobolConceptImportance(
        nmf, head, prefit=True, n_designs=n_designs, n_replicates=4, random_state=0
    ).fit(A_test, y_test)
    width = est.total_indices_ci_[..., 1] - est.total_indices_ci_[..., 0]
    print(f"N = {n_designs:4d}: mean CI width {width.mean():.3f}")

# %%
# Step 3 -- does removing the important concepts change the decision?
# -------------------------------------------------------------------
# Remove (``u_i = 0``) the two most important concepts of each class from the
# images of that class and measure the drop of the class logit; compare with
# two random concepts.
from skconcepts.importance import evaluate_masks

W = nmf.components_
rng = np.random.RandomState(0)


def logit_drop(d, removed):
    rows = y_test == d
    mask = np.ones((1, k))
    mask[0, removed] = 0.0
    f = evaluate_masks(
        head,
        U_test[rows],
        W,
        np.vstack([np.ones((1, k)), mask]),
        residual=A_test[rows] - U_test[rows] @ W,
        target=np.full(rows.sum(), d),
    )
    return float(np.mean(f[:, 0] - f[:, 1]))


top_drop = [logit_drop(d, np.argsort(-sobol.total_indices_[d])[:2]) for d in range(10)]
random_drop = [
    np.mean([logit_drop(d, rng.choice(k, 2, replace=False)) for _ in range(20)])
    for d in range(10)
]
print("logit drop, top-2 concepts:   ", np.round(top_drop, 1))
print("logit drop, random 2 concepts:", np.round(random_drop, 1))

# %%
# Other estimators and their fidelity
# -----------------------------------
# :class:`~skconcepts.ConceptAttribution` computes local, signed attributions
# through the same engine: occlusion (``f(u) - f(u without i)``), gradient x
# input and integrated gradients in concept space. ``score`` is the
# C-muFidelity: the correlation, over random subsets of concepts, between the
# summed importances and the logit drop when the subset is removed (1 is
# perfect). Sobol' indices are *unsigned* -- they say how much a concept
# matters, not in which direction -- and global over random masks, so the
# local estimators fit this local removal test better; Sobol' ranks the
# concepts that matter across all their combinations.
from scipy.stats import spearmanr

from skconcepts import ConceptAttribution

occlusion = ConceptAttribution(nmf, head, prefit=True, method="occlusion")
occlusion.fit(A_test, y_test)
same_top = np.mean(sobol.total_indices_.argmax(1) == occlusion.importances_.argmax(1))
rho = np.mean(
    [
        spearmanr(sobol.total_indices_[d], np.abs(occlusion.importances_[d]))[0]
        for d in range(10)
    ]
)
print(f"same most important concept (Sobol' vs occlusion): {same_top:.0%} of classes")
print(f"Spearman correlation of Sobol' with |occlusion|, per class: {rho:.2f}")
for name, est in (("Sobol' total", sobol), ("occlusion", occlusion)):
    print(f"C-muFidelity, {name}: {est.score(A_test, y_test):.3f}")
plt.show()
