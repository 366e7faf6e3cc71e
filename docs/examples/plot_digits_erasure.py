"""
Erasing an attribute from a digits network: TaCo, LEACE, and a real trade-off
=============================================================================

Concept erasure removes a *protected* attribute from activations while
keeping what a *task* needs. Here the activations are real: the 64-unit
hidden ReLU layer of a small network trained on scikit-learn's digits
(:func:`~skconcepts.datasets.load_digits_activations`). The task is the
10-class digit label, and the protected attribute is "the digit has a closed
loop" (0, 6, 8 or 9).

This attribute is a *function of the task*: whoever knows the digit knows the
loop. No eraser can hide the loop from every probe and keep the digit
readable, so the example is about how the erasers behave when the trade-off
is real, and about measuring it honestly:

* :class:`~skconcepts.TaCoEraser` (Jourdan et al., 2023) splits the
  activations into PCA concepts, ranks them by how much a probe for the
  protected attribute relies on them relative to the task (total Sobol'
  indices), and removes the top ones until a fresh non-linear probe is at
  chance;
* LEACE (Belrose et al., 2023; PyPI ``concept-erasure``) is the least-squares
  optimal *linear* eraser: it makes the class means of the attribute equal,
  so no linear probe can use it.

Every score below is measured by *fresh* probes trained and tested on the
held-out images (:func:`~skconcepts.metrics.leakage`): a logistic regression
and an MLP, balanced accuracy (chance: 0.5 for the loop, 0.1 for the digit).
"""

# %%
# Activations, attribute and task
# -------------------------------
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from concept_erasure import LeaceEraser

from skconcepts import TaCoEraser
from skconcepts.datasets import load_digits_activations
from skconcepts.metrics import leakage
from skconcepts.plotting import plot_taco_tradeoff

torch.set_num_threads(1)
digits = load_digits_activations(random_state=0)
A_train, A_test = digits.A_train, digits.A_test
y_train, y_test = digits.y_train, digits.y_test
LOOPS = np.isin(np.arange(10), [0, 6, 8, 9])
p_train, p_test = LOOPS[y_train].astype(int), LOOPS[y_test].astype(int)
print(f"activations: train {A_train.shape}, test {A_test.shape}")
print(f"share of digits with a loop: {p_train.mean():.2f}")


def recoverability(A):
    """Held-out balanced accuracy of fresh probes: loop (protected), digit (task)."""
    loop = leakage(A, p_test, random_state=0)
    digit = leakage(A, y_test, random_state=0)
    return {
        "loop, linear": loop["linear"],
        "loop, MLP": loop["mlp"],
        "digit, linear": digit["linear"],
        "digit, MLP": digit["mlp"],
    }


rows = {"no erasure": recoverability(A_test)}

# %%
# TaCo
# ----
# 20 PCA concepts (the default), ranked by the angle between their importance
# for the digit (``task=``) and for the loop; ``n_remove="auto"`` removes
# concepts in that order until a cross-validated MLP probe, trained on the
# erased training activations, recovers the loop no better than chance + 0.05.
# Most concepts must go here, so the search bisects (``search="bisect"``,
# about 2 log2(20) cross-validations) instead of trying r = 0, 1, 2, ...
start = time.perf_counter()
taco = TaCoEraser(search="bisect", random_state=0)  # many concepts go: bisect
taco.fit(A_train, p_train, task=y_train)
print(f"TaCo fit in {time.perf_counter() - start:.1f} s")
print(f"removed {taco.n_remove_} of {taco.n_concepts_} concepts")
rows["TaCo (auto)"] = recoverability(taco.transform(A_test))

# %%
# LEACE
# -----
# Five hidden units are dead (zero on every training image). LEACE's oblique
# projection writes values at rounding-error scale into them that still correlate with
# the attribute; a standardised linear probe rescales them and reads the
# attribute back from them. The dead units carry nothing, so they are dropped
# before LEACE.
alive = A_train.std(axis=0) > 1e-6
print(f"dead hidden units: {np.sum(~alive)}")
leace = LeaceEraser.fit(torch.as_tensor(A_train[:, alive]), torch.as_tensor(p_train))
A_leace = leace(torch.as_tensor(A_test[:, alive])).numpy()
rows["LEACE"] = recoverability(A_leace)

cols = list(rows["no erasure"])
print("| erasure | " + " | ".join(cols) + " |")
print("|---" * (len(cols) + 1) + "|")
for name, r in rows.items():
    print(f"| {name} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")

# %%
# What the table says
# -------------------
# Before erasure, both probes read the loop (about 0.95 to 0.96) and the digit
# (about 0.96 to 0.97) from the hidden layer.
#
# **LEACE** does exactly what it promises: the *linear* probe for the loop
# falls to chance (about 0.46), and the digit is untouched (about 0.96). But
# the MLP still reads the loop at about 0.96: it only needs to recognise the
# digit, which LEACE kept, and the loop follows. Linear erasure of an
# attribute that the task determines removes the linear shortcut, not the
# information.
#
# **TaCo** aims at the non-linear probe, and to bring it to chance it has to
# remove most of the concepts (17 of 20 here): the loop drops to about 0.53
# (linear) and 0.59 (MLP), and the digit drops with it, to about 0.33
# (linear) and 0.38 (MLP).
# Ranking by the task/attribute angle cannot help when every concept that
# carries the loop carries the digit too. This is not a failure of either
# method: with this attribute, "protected unreadable" and "task readable" are
# incompatible, and the only choice is where to stand between them.

# %%
# The trade-off curve
# -------------------
# Left: the eraser's own stopping rule, ``recoverability_`` (cross-validated
# MLP on the erased *training* activations, at the numbers of concepts the
# search evaluated), drawn from the fitted estimator. Right: the held-out
# curves, removing the top ``r`` concepts of ``ranking_`` with ``erase``
# (no refit), with LEACE's held-out point as dotted lines.
steps = np.arange(0, taco.n_concepts_ + 1, 2)
curve = []
for r in steps:
    A_r = taco.erase(A_test, taco.ranking_[:r])
    loop = leakage(A_r, p_test, probes=("mlp",), random_state=0)["mlp"]
    digit = leakage(A_r, y_test, probes=("linear",), random_state=0)["linear"]
    curve.append((loop, digit))
curve = np.array(curve)

fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
plot_taco_tradeoff(taco, chance=0.5, ax=axes[0])
axes[0].set_title("TaCo's search (cross-validated, training data)")
axes[0].set_ylabel("balanced accuracy")
plot_taco_tradeoff(
    steps,
    curve[:, 0],
    curve[:, 1],
    leace=(rows["LEACE"]["loop, MLP"], rows["LEACE"]["digit, linear"]),
    chance=(0.5, 0.1),
    ax=axes[1],
)
axes[1].axvline(taco.n_remove_, color="k", ls=":", label='n_remove="auto"')
axes[1].set_title("Held out: loop (MLP probe), digit (linear probe)")
for ax in axes:
    ax.set_xlabel("concepts removed")
    ax.legend(fontsize=7)
fig.tight_layout()
for r, (loop, digit) in zip(steps, curve, strict=True):
    print(f"r = {r:2d}: loop (MLP) {loop:.3f}, digit (linear) {digit:.3f}")

# %%
# The two held-out curves fall together, and the digit falls *faster*: after
# 10 concepts the loop is still read at about 0.85 and the digit at about
# 0.73; after 16, about 0.70 and 0.52. A yes/no property survives in what
# little is left of the representation better than a 10-way label does, so
# pushing the loop down to chance (the last few concepts) wipes out the digit
# (about 0.19 after 18 concepts). Note that ``erase`` with no concept removed
# (``r = 0``) already keeps only the 20 PCA concepts, which read almost as
# well as the full layer. A user who needs the digit has to accept a readable
# loop (LEACE's point, or a small ``n_remove``); one who must hide the loop
# from any probe loses most of the digit. TaCo's task-aware ranking pays off
# when the attribute is only *correlated* with the task, as in the
# biographies example (:ref:`sphx_glr_auto_examples_plot_taco_biographies.py`).
plt.show()
