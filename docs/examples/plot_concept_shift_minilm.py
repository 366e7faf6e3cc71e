"""
Which concepts moved? Concept shift between two text styles in MiniLM
======================================================================

:class:`~skconcepts.ConceptShift` (Khayatan et al., 2025) compares the
activations of the *same inputs* through an original model (``X``) and a
changed model (``Y``): it learns concepts on ``X`` (k-means, as the paper),
gives each concept a shift vector (the mean of ``Y - X`` over its samples),
flags the concepts whose shift is not the common one, and predicts ``Y``
from ``X`` plus the shifts of each sample's concepts.

**What this example is, and is not.** There is no fine-tuned model here
(none ships offline): the "change" is in the *texts*, not in the encoder.
``X`` embeds short restaurant reviews with all-MiniLM-L6-v2; ``Y`` embeds
the same reviews rewritten: every review gets the prefix "To be honest, "
(a change shared by all concepts), and the reviews about the *service* are
also made casual, "ugh, ... lol" (a change that only one topic gets; all
caps would not do, the encoder lower-cases its input). So we know
which concept should be found, and the example shows that the estimator
finds it from the embeddings alone and that the concept-wise shifts predict
the rewritten embeddings of held-out reviews better than one mean shift. It
does not show anything about what fine-tuning does to a model.
"""

# %%
# The same reviews in two styles
# ------------------------------
import matplotlib.pyplot as plt
import numpy as np

from skconcepts import ConceptShift
from skconcepts.datasets import embed_texts

TOPICS = {
    "food": (
        ["pasta", "steak", "soup", "curry", "pizza", "salmon", "dessert", "bread"],
        [
            "the {} was delicious.",
            "the {} was cold and bland.",
            "best {} I have eaten in years.",
            "the {} tasted burnt.",
        ],
    ),
    "service": (
        ["waiter", "waitress", "staff", "host", "manager", "bartender", "server"],
        [
            "our {} was friendly and attentive.",
            "the {} was rude to us.",
            "we waited forever for the {}.",
            "the {} made us feel welcome.",
        ],
    ),
    "price": (
        ["prices", "bills", "wine prices", "menu prices", "drink prices"],
        [
            "the {} were very reasonable.",
            "the {} were outrageous.",
            "cheap {} for such quality.",
            "the {} were far too high.",
        ],
    ),
    "ambience": (
        ["atmosphere", "dining room", "terrace", "decor", "interior", "room"],
        [
            "the {} was cosy and relaxing.",
            "the {} was noisy and cramped.",
            "lovely {}, calm and warm.",
            "the {} felt dirty and dark.",
        ],
    ),
}

plain, styled, topic = [], [], []
for name, (fillers, templates) in TOPICS.items():
    for template in templates:
        for filler in fillers:
            text = template.format(filler)
            plain.append(text[0].upper() + text[1:])
            rewritten = "To be honest, " + text
            if name == "service":  # only this topic turns casual
                rewritten = "ugh, t" + rewritten[1:-1] + " lol"
            styled.append(rewritten)
            topic.append(name)
topic = np.array(topic)
X = embed_texts(plain)  # the "original model": plain reviews
Y = embed_texts(styled)  # the "changed model": the same reviews, restyled
print(f"{len(plain)} reviews, embeddings {X.shape}")
print("plain: ", plain[40], "\nstyled:", styled[40])

# %%
# Concepts, shifts, and the changed concepts
# ------------------------------------------
# Half of the reviews (every other one) train the estimator; the other half
# is held out. Six k-means concepts of the plain embeddings; each is named
# after the topic of most of its reviews.
train = np.arange(len(plain)) % 2 == 0
shift = ConceptShift(n_concepts=6, random_state=0).fit(X[train], Y[train])
labels = shift.extractor_.predict(X)


def name_of(k):
    names, counts = np.unique(topic[train][labels[train] == k], return_counts=True)
    return f"{k}: {names[counts.argmax()]} ({counts.max() / counts.sum():.0%})"


names = [name_of(k) for k in range(shift.n_concepts_)]
for k in range(shift.n_concepts_):
    flag = "CHANGED" if k in shift.changed_concepts_ else ""
    print(
        f"concept {names[k]:<22} |shift| {shift.shift_magnitudes_[k]:.2f}  "
        f"z {shift.shift_zscores_[k]:5.1f}  alignment "
        f"{shift.concept_alignment_[k]:.2f}  {flag}"
    )

# %%
# The prefix moves every review; only the concepts made of service reviews
# also move along their own, different direction (z far above the threshold
# of 3 standard errors, and a lower alignment of the concept before and
# after once the common drift is removed).
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
colors = [
    "tab:red" if k in shift.changed_concepts_ else "tab:gray"
    for k in range(shift.n_concepts_)
]
axes[0].bar(names, shift.shift_magnitudes_, color=colors)
axes[0].axhline(np.linalg.norm(shift.reference_shift_), ls="--", c="k", lw=1)
axes[0].set_ylabel("shift magnitude ||Δ_k||")
axes[0].set_title("shift vectors (dashed: common drift)")
axes[1].bar(names, shift.shift_zscores_, color=colors)
axes[1].axhline(shift.threshold, ls="--", c="k", lw=1)
axes[1].set_ylabel("z of the differential shift")
axes[1].set_title("changed concepts (red): z > threshold")
for ax in axes:
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
fig.tight_layout()

# %%
# Predicting the restyled embeddings of held-out reviews
# ------------------------------------------------------
# ``predict`` adds to each held-out plain embedding the shift of its concept;
# the baseline adds the one mean shift to all. R^2 against the real restyled
# embeddings:
test = ~train
print(f"ConceptShift R2 {shift.score(X[test], Y[test]):.3f}")
print(f"mean shift   R2 {shift.baseline_score(X[test], Y[test]):.3f}")

# %%
# Steering: adding a service concept's shift to the *plain* service reviews
# moves them towards their restyled embeddings (cosine to the real restyled
# embedding, before and after).
k = int(shift.changed_concepts_[0])
rows = test & (labels == k)
steered = shift.steer(X[rows], k)


def cos(a, b):
    return np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


print(
    f"concept {names[k]}: cosine to the restyled embedding "
    f"{cos(X[rows], Y[rows]).mean():.3f} -> {cos(steered, Y[rows]).mean():.3f}"
)
plt.show()
