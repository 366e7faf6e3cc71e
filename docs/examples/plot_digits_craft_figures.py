"""
CRAFT on a digits network: concepts, importance, and the figures to read them
=============================================================================

CRAFT (Fel et al., 2023) explains an image classifier in three steps: factor
the non-negative activations of a hidden layer into concepts with NMF, rank
the concepts of each class by their Sobol' importance for the class logit,
and show the images that express each important concept the most. This
example does it on the hidden ReLU layer of a small network trained on
scikit-learn's digits, and draws each step with :mod:`skconcepts.plotting`.
It ends by checking the importances with the C-Deletion fidelity metric:
removing concepts in the order Sobol' gives must make the logit fall faster
than removing them in a random order.
"""

# %%
# A small network and its hidden activations
# ------------------------------------------
import matplotlib.pyplot as plt
import numpy as np

from skconcepts.datasets import load_digits_activations

digits = load_digits_activations(hidden_layer_sizes=(64,), max_iter=400, random_state=0)
A_train, A_test = digits.A_train, digits.A_test  # hidden ReLU activations
y_test, img_test = digits.y_test, digits.images_test
head = digits.head  # the rest of the network: activations -> 10 class logits
print(f"test accuracy: {digits.model.score(digits.X_test, y_test):.3f}")

# %%
# Concepts: NMF of the activations
# --------------------------------
from skconcepts import NMFConcepts

nmf = NMFConcepts(n_concepts=12, max_iter=400, device="cpu", random_state=0)
nmf.fit(A_train)
U_test = nmf.transform(A_test)
print(f"reconstruction R2 on held-out activations: {nmf.score(A_test):.3f}")

# %%
# Importance: Sobol' indices per class
# ------------------------------------
# Each test image is explained for the logit of its own class (``y``), and
# the per-image total indices are averaged per class. The black lines are the
# bootstrap confidence intervals of the means.
from skconcepts import SobolConceptImportance
from skconcepts.plotting import plot_concept_importance

sobol = SobolConceptImportance(nmf, head, prefit=True, n_designs=32, random_state=0)
sobol.fit(A_test, y_test)
fig = plot_concept_importance(sobol, top_n=5, ncols=5)
fig.set_size_inches(14, 5)
fig.tight_layout()

# %%
# What the important concepts look like
# -------------------------------------
# The most important concept of a few classes, each shown through the test
# images whose code for it is largest (the number above each image is the
# code).
from skconcepts.plotting import plot_concept_images

top_concept = sobol.total_indices_.argmax(axis=1)
shown = [int(top_concept[c]) for c in (0, 3, 6, 7)]
shown = list(dict.fromkeys(shown))  # one row per distinct concept
names = [
    f"concept {c}\n(top for {', '.join(map(str, np.flatnonzero(top_concept == c)))})"
    for c in range(nmf.n_concepts)
]
fig = plot_concept_images(
    U_test, img_test, shown, n_top=8, concept_names=names, cmap="gray_r"
)

# %%
# Are the importances faithful? C-Deletion
# ----------------------------------------
# For every test image, concepts are removed one by one (``u_i = 0``) in the
# order of its per-image importances, and the logit of the predicted class is
# recorded; the curves are averaged over images. A faithful ranking makes the
# logit fall fast (a small area). The random ranking is the baseline.
from skconcepts.metrics import c_deletion
from skconcepts.plotting import plot_fidelity_curves

predicted = head(A_test).argmax(axis=1)
residual = A_test - nmf.inverse_transform(U_test)  # so that u gives back A
rankings = {
    "Sobol' (per image)": sobol.transform(A_test),
    "random": np.random.RandomState(0).rand(*U_test.shape),
}
curves = {}
for label, importances in rankings.items():
    score, per_image = c_deletion(
        head,
        U_test,
        nmf.components_,
        importances,
        residual=residual,
        target=predicted,
        return_curves=True,
    )
    curves[label] = per_image.mean(axis=0)
    print(f"C-Deletion {label}: {score:.3f}")
ax = plot_fidelity_curves(curves, kind="deletion")
ax.set_ylabel("logit of the predicted class")
plt.show()
