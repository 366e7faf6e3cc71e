"""TaCo erasure against LEACE on synthetic and real (MiniLM) embeddings.

Protocol (``shared/methods.md`` section 4): every eraser is fitted on a
training split only; the held-out split is erased, and *fresh* probes - a
logistic regression and an MLP (``skconcepts.metrics.leakage``: each after a
``StandardScaler``, trained on 70 % of the erased held-out split, balanced
accuracy on the other 30 %) - try to recover the protected attribute (it
should fall to chance, ``1 / n_classes``) and the task (it should stay).

1. Synthetic XOR: eight Gaussian factors in 32 dimensions, the protected
   attribute is the XOR of the signs of factors 0 and 1 (no linear
   information), the task is the sign of factor 2.
2. Template biographies (``skconcepts.datasets.make_biographies``) embedded
   with all-MiniLM-L6-v2 (384-d; needs ``pip install 'skconcepts[text]'``):
   gender (2 classes) is protected, occupation (6 classes) is the task.
   TaCo (20 concepts, default MLP probe): PCA concepts ranked by gender
   importance alone and by the angle with the occupation importance, ICA
   concepts ranked by the angle, against the number of removed concepts and
   with ``n_remove="auto"``; a linear probe; the residual kept; LEACE.

Run: ``python benchmarks/bench_taco.py > benchmarks/results/taco.md`` (about
10 minutes on 2 busy shared cores, mostly the fresh MLP probes; ``--quick``
for a smaller run). The tables are printed as markdown.
"""

import os
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from concept_erasure import LeaceEraser
from sklearn.linear_model import LogisticRegression

from skconcepts.erasure import TaCoEraser
from skconcepts.metrics import leakage

warnings.filterwarnings("ignore")
torch.set_num_threads(1)

QUICK = "--quick" in sys.argv


def leace_fit_transform(X_tr, y_tr, X_te):
    """LEACE fitted on the training split (one-hot targets for > 2 classes)."""
    classes = np.unique(y_tr)
    z = y_tr if len(classes) == 2 else (y_tr[:, None] == classes).astype(float)
    t0 = time.perf_counter()
    eraser = LeaceEraser.fit(torch.as_tensor(X_tr), torch.as_tensor(z))
    fit_s = time.perf_counter() - t0
    return eraser(torch.as_tensor(X_te)).numpy(), fit_s


def evaluate(X_te, prot_te, task_te, seed=0):
    p = leakage(X_te, prot_te, random_state=seed)
    t = leakage(X_te, task_te, random_state=seed)
    return p["linear"], p["mlp"], t["linear"], t["mlp"]


def row(name, removed, scores, fit_s=None):
    pl, pm, tl, tm = scores
    fit = "-" if fit_s is None else f"{fit_s:.2f}"
    return f"| {name} | {removed} | {pl:.3f} | {pm:.3f} | {tl:.3f} | {tm:.3f} | {fit} |"


HEADER = (
    "| eraser | concepts removed | protected, linear | protected, MLP | "
    "task, linear | task, MLP | fit (s) |\n|---|---|---|---|---|---|---|"
)


def linear_probe_row(X_tr, g_tr, X_te, g_te, task_te, **kw):
    """TaCo whose probe (ranking and stopping rule) is a logistic regression."""
    t0 = time.perf_counter()
    eraser = TaCoEraser(probe=LogisticRegression(max_iter=1000), random_state=0, **kw)
    eraser.fit(X_tr, g_tr)
    fit_s = time.perf_counter() - t0
    scores = evaluate(eraser.transform(X_te), g_te, task_te)
    print(row("TaCo PCA, auto, linear probe", eraser.n_remove_, scores, fit_s))


def xor_data(n, seed):
    rng = np.random.RandomState(seed)
    scales = np.array([3.0, 2.6, 2.2, 1.8, 1.5, 1.3, 1.1, 0.9])
    Z = rng.normal(size=(n, 8)) * scales
    M = np.linalg.qr(np.random.RandomState(42).normal(size=(32, 8)))[0].T
    X = Z @ M + 0.05 * rng.normal(size=(n, 32)) + 1.5
    return X, ((Z[:, 0] > 0) ^ (Z[:, 1] > 0)).astype(int), (Z[:, 2] > 0).astype(int)


def bench_xor():
    n = 2000 if QUICK else 4000
    X, g, t = xor_data(n, 0)
    h = n // 2
    X_tr, g_tr, t_tr, X_te, g_te, t_te = X[:h], g[:h], t[:h], X[h:], g[h:], t[h:]
    print(f"\n### Synthetic XOR ({h} train / {h} held out, 32-d, chance 0.5)\n")
    print(HEADER)
    print(row("none", "-", evaluate(X_te, g_te, t_te)))
    X_l, fit_s = leace_fit_transform(X_tr, g_tr, X_te)
    print(row("LEACE", "-", evaluate(X_l, g_te, t_te), fit_s))
    for task in (None, t_tr):
        t0 = time.perf_counter()
        eraser = TaCoEraser(n_concepts=8, random_state=0).fit(X_tr, g_tr, task=task)
        fit_s = time.perf_counter() - t0
        name = "TaCo PCA" + (" + task" if task is not None else "") + ", auto"
        scores = evaluate(eraser.transform(X_te), g_te, t_te)
        print(row(name, eraser.n_remove_, scores, fit_s))
    linear_probe_row(X_tr, g_tr, X_te, g_te, t_te, n_concepts=8)


def bench_biographies():
    from skconcepts.datasets import BIOGRAPHY_OCCUPATIONS, make_biography_embeddings

    n = 1200 if QUICK else 2000
    t0 = time.perf_counter()
    X, gender, occ = make_biography_embeddings(n, random_state=0)
    embed_s = time.perf_counter() - t0
    h = n // 2
    X_tr, g_tr, o_tr = X[:h], gender[:h], occ[:h]
    X_te, g_te, o_te = X[h:], gender[h:], occ[h:]
    print(
        f"\n### MiniLM biographies\n\n{h} train / {h} held out, 384-d; protected: "
        f"gender, chance 0.5; task: occupation, {len(BIOGRAPHY_OCCUPATIONS)} "
        f"classes, chance {1 / len(BIOGRAPHY_OCCUPATIONS):.3f}; embedding "
        f"{embed_s:.0f} s.\n"
    )
    print(HEADER)
    print(row("none", "-", evaluate(X_te, g_te, o_te)))
    X_l, leace_s = leace_fit_transform(X_tr, g_tr, X_te)
    print(row("LEACE", "-", evaluate(X_l, g_te, o_te), leace_s))
    # the template embeddings have 3 (near-)constant coordinates; LEACE's
    # whitening leaves the gender in them at the 1e-14 scale, which a
    # standardised probe reads. Without them:
    keep = X_tr.std(axis=0) > 1e-6
    X_l, fit_s = leace_fit_transform(X_tr[:, keep], g_tr, X_te[:, keep])
    print(row(f"LEACE ({keep.sum()} non-constant coordinates)", "-",
              evaluate(X_l, g_te, o_te), fit_s))  # fmt: skip
    grid = (2, 10, 20) if QUICK else (2, 5, 10, 15, 20)
    fit_s = None
    for decomposition, task in (("pca", None), ("pca", o_tr), ("ica", o_tr)):
        name = f"TaCo {decomposition.upper()}" + (" + task" if task is not None else "")
        # one fit per ranking; erase(X, ranking_[:r]) is transform() of the
        # eraser fitted with n_remove=r (same random_state, same ranking)
        kw = dict(decomposition=decomposition, random_state=0)
        t0 = time.perf_counter()
        eraser = TaCoEraser(n_remove=0, **kw).fit(X_tr, g_tr, task=task)
        fit_s = time.perf_counter() - t0 if fit_s is None else fit_s
        for r in grid:
            scores = evaluate(eraser.erase(X_te, eraser.ranking_[:r]), g_te, o_te)
            print(row(name, r, scores))
        t0 = time.perf_counter()
        eraser = TaCoEraser(**kw).fit(X_tr, g_tr, task=task)
        auto_s = time.perf_counter() - t0
        scores = evaluate(eraser.transform(X_te), g_te, o_te)
        print(row(name + ", auto", eraser.n_remove_, scores, auto_s))
    linear_probe_row(X_tr, g_tr, X_te, g_te, o_te)
    eraser = TaCoEraser(n_remove=20, residual=True, random_state=0).fit(X_tr, g_tr)
    scores = evaluate(eraser.transform(X_te), g_te, o_te)
    print(row("TaCo PCA, residual kept", 20, scores))
    print(
        f"\nFit time, TaCo PCA with a fixed n_remove / LEACE: "
        f"{fit_s / leace_s:.0f}x ({fit_s:.2f} s vs {leace_s:.3f} s); "
        "n_remove='auto' adds the cross-validated probes of the search."
    )


if __name__ == "__main__":
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    bench_xor()
    bench_biographies()
