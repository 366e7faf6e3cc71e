"""
Where are the concepts? Concept maps and one recursion step on a digits CNN
===========================================================================

CRAFT (Fel et al., 2023) answers *what* a network sees with NMF concepts and
*where* it sees them with concept maps: the activations of a convolutional
layer hold one vector per position, and the codes of each position form a
map per concept. An ambiguous concept is then decomposed again at an earlier
layer, on the positions where it is most active (CRAFT's recursion).

This example trains a small CNN on scikit-learn's 8 x 8 digits (a few
seconds), factors its last feature maps with NMF, weights the maps of a
class's important concepts by their Sobol' importance, shows the top inputs
of each concept, and decomposes one concept at the first layer.
"""

# %%
# A small CNN trained here
# ------------------------
# ``conv1`` (8 filters) -> ReLU -> 2 x 2 max pooling -> ``conv2`` (16
# filters) -> ReLU gives a ``16 x 4 x 4`` feature map per digit; global
# average pooling and a linear layer give the logits.
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

torch.manual_seed(0)
digits = load_digits()
images = digits.images / 16.0
X_tr, X_te, y_tr, y_te = train_test_split(
    images, digits.target, test_size=0.3, random_state=0, stratify=digits.target
)
conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
conv2 = torch.nn.Conv2d(8, 16, 3, padding=1)
linear = torch.nn.Linear(16, 10)


def early(x):  # the first layer, pooled: (n, 8, 4, 4)
    return torch.nn.functional.max_pool2d(torch.relu(conv1(x)), 2)


def features(x):  # the layer we explain: (n, 16, 4, 4)
    return torch.relu(conv2(early(x)))


def logits(x):
    return linear(features(x).mean(dim=(2, 3)))


xt = torch.tensor(X_tr, dtype=torch.float32)[:, None]
yt = torch.tensor(y_tr)
params = [*conv1.parameters(), *conv2.parameters(), *linear.parameters()]
opt = torch.optim.Adam(params, lr=0.02)
for _ in range(150):  # full batch
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(logits(xt), yt)
    loss.backward()
    opt.step()
with torch.no_grad():
    xe = torch.tensor(X_te, dtype=torch.float32)[:, None]
    accuracy = (logits(xe).argmax(1).numpy() == y_te).mean()
    F_tr = features(xt).numpy().astype(np.float64)  # (n, 16, 4, 4)
    F_te = features(xe).numpy().astype(np.float64)
    E_te = early(xe)
print(f"test accuracy: {accuracy:.3f}")

# %%
# Concepts on the feature-map rows
# --------------------------------
# Every position of every training digit is one row of 16 channels
# (``positions_to_rows``; ``channel_axis=1`` for torch's layout). NMF on these
# rows gives concepts that live at positions.
from skconcepts import NMFConcepts
from skconcepts.inspection import concept_maps, positions_to_rows

rows_tr, _ = positions_to_rows(F_tr, channel_axis=1)
k = 6
nmf = NMFConcepts(n_concepts=k, max_iter=200, device="cpu", random_state=0)
nmf.fit(rows_tr)
rows_te, shape_te = positions_to_rows(F_te, channel_axis=1)
print(f"rows: {rows_tr.shape}, held-out reconstruction R2: {nmf.score(rows_te):.3f}")
maps = concept_maps(nmf, F_te, channel_axis=1, upsample_to=(8, 8))  # (n, 8, 8, k)

# %%
# Which concepts matter for a class: Sobol' indices
# -------------------------------------------------
# The logits only see the *mean* feature vector (global average pooling), so
# the head of the importance estimator is the linear layer on the pooled
# activation, whose concept codes the same NMF gives (CRAFT explains pooled
# activations the same way).
from skconcepts import SobolConceptImportance

W_lin = linear.weight.detach().numpy().astype(np.float64)
b_lin = linear.bias.detach().numpy().astype(np.float64)


def head(a):  # pooled activations -> logits
    return a @ W_lin.T + b_lin


pooled_te = F_te.mean(axis=(2, 3))
sobol = SobolConceptImportance(nmf, head, prefit=True, n_designs=32, random_state=0)
sobol.fit(pooled_te, y_te)
digit = 2
print(f"importances for digit {digit}:", np.round(sobol.importances_[digit], 2))

# %%
# Importance-weighted concept maps (CRAFT's figure)
# -------------------------------------------------
# The three most important concepts of the class, each map multiplied by its
# importance, on the first test images of that class.
from skconcepts.inspection import importance_weighted_maps
from skconcepts.plotting import plot_concept_maps

weighted = importance_weighted_maps(maps, sobol, label=digit, top_n=3)
of_class = np.flatnonzero(y_te == digit)[:4]
fig = plot_concept_maps(
    X_te[of_class],
    weighted.maps[of_class],
    concept_names=[f"concept {c}" for c in weighted.concepts],
    importances=weighted.importances,
)
fig.suptitle(f"Where the important concepts of digit {digit} are")

# %%
# Top inputs of each concept
# --------------------------
# An input's score for a concept is its largest code over the positions
# (``top_exemplars``; ``positions="pairs"`` ranks (input, position) pairs).
from skconcepts.inspection import top_exemplars
from skconcepts.plotting import plot_concept_images

top = top_exemplars(nmf, F_te, n=6, channel_axis=1)
for c in range(k):
    print(f"concept {c}: top digits {y_te[top.indices[c]].tolist()}")
max_codes = maps.max(axis=(1, 2))  # the same per-input score, for the plot
fig = plot_concept_images(max_codes, X_te, n_top=6, cmap="gray_r")

# %%
# One recursion step: sub-concepts at the first layer
# ---------------------------------------------------
# Which concept to decompose? ``ambiguity_scores`` fits a linear surrogate
# from the earlier layer to each concept's code, takes the contributions
# ``x * beta`` of the concept's top positions, splits them in two with
# k-means and scores the split. The earlier layer, for a position of
# ``conv2``, is the ``3 x 3`` neighbourhood of the pooled ``conv1`` output it
# sees (72 values: ``unfold``), so rows of both layers line up.
from skconcepts import RecursiveConcepts
from skconcepts.inspection import ambiguity_scores, rows_to_positions

patches = torch.nn.functional.unfold(E_te, 3, padding=1)  # (n, 72, 16)
early_rows = patches.permute(0, 2, 1).reshape(-1, 72).numpy().astype(np.float64)
codes_te = nmf.transform(rows_te)
amb = ambiguity_scores(early_rows, codes_te, n_top=200, random_state=0)
print("ambiguity scores:", np.round(amb.scores, 3), "flagged:", amb.ambiguous)
parent = int(np.argmax(amb.scores))  # the most ambiguous, flagged or not

# The head from the earlier layer to the parent concept's code is exact:
# conv2 on the patch, ReLU, then the concept's NMF code.
W2 = conv2.weight.detach().numpy().reshape(16, -1).astype(np.float64)
b2 = conv2.bias.detach().numpy().astype(np.float64)


def parent_code(patch_rows):
    return nmf.transform(np.maximum(patch_rows @ W2.T + b2, 0.0))[:, parent]


rec = RecursiveConcepts(
    n_concepts=2, head=parent_code, n_top=200, device="cpu", random_state=0
)
rec.fit(early_rows, codes_te[:, parent])
print(
    f"concept {parent}: sub-concept importances {np.round(rec.importances_, 2)}, "
    f"head R2 {rec.head_score_:.3f}"
)

# %%
# Where each sub-concept is, on the digits where the parent is strongest. The
# sub-concepts describe the positions where the parent is active, so their
# maps are gated by the parent's map (scaled to [0, 1]).
sub_maps = rows_to_positions(rec.transform(early_rows), shape_te)  # (n, 4, 4, 2)
parent_map = rows_to_positions(codes_te, shape_te)[..., parent]
gated = sub_maps * (parent_map / parent_map.max())[..., None]
strongest = top.indices[parent][:4]
fig = plot_concept_maps(
    X_te[strongest],
    gated[strongest],
    concept_names=[f"{parent}.{i}" for i in range(2)],
    importances=rec.importances_,
)
fig.suptitle(f"Sub-concepts of concept {parent} at the first layer")
plt.show()
