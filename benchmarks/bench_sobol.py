"""Sobol' indices: skconcepts against SALib 1.6, side by side in one process.

Three measurements, printed as markdown tables:

1. Accuracy and wall time at equal evaluations (``N (k + 2)`` function
   calls each) on the Ishigami (k = 3) and Sobol' g-function (k = 5) test
   functions, for several ``N``: mean absolute error of the first-order and
   total indices against the analytic values (mean over seeds), and the time
   of design + evaluation + analysis with confidence intervals: ours from 4
   independent replicates of ``N / 4`` rows (the same evaluations), SALib's
   from 100 bootstrap resamples.
2. The reference CRAFT design (unscrambled Halton, first row all zeros) at
   the default ``N = 32`` against our scrambled Sobol' design: error on the
   g-function with k = 10 inputs.
3. The concept use case: per-sample indices of 1000 samples (k = 10 concepts,
   N = 32) for a small MLP head: one batched ``concept_sobol_indices`` call
   against a per-sample SALib loop (SALib has no batch API).

Run: ``python benchmarks/bench_sobol.py`` (about a minute on 2 cores).

``python benchmarks/bench_sobol.py --fidelity`` instead compares the
importance estimators of skconcepts (Sobol' total and first-order indices,
occlusion, gradient x input, integrated gradients, a random ranking) with
the concept fidelity metrics (C-Deletion, C-Insertion, C-muFidelity) on the
hidden ReLU layer of MLPs trained on scikit-learn's digits.
"""

import sys
import time
import warnings

import numpy as np
from SALib.analyze import sobol as salib_analyze
from SALib.sample import sobol as salib_sample
from scipy.stats import qmc

from skconcepts.importance import concept_sobol_indices, sobol_design, sobol_indices
from skconcepts.importance._sobol import _estimates, _split

warnings.filterwarnings("ignore")


def ishigami(X, a=7.0, b=0.1):
    x = -np.pi + 2 * np.pi * X
    return (
        np.sin(x[:, 0]) + a * np.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * np.sin(x[:, 0])
    )


def ishigami_truth(a=7.0, b=0.1):
    v1 = 0.5 * (1 + b * np.pi**4 / 5) ** 2
    v2 = a**2 / 8
    v13 = b**2 * np.pi**8 * (1 / 18 - 1 / 50)
    v = v1 + v2 + v13
    return np.array([v1, v2, 0.0]) / v, np.array([v1 + v13, v2, v13]) / v


def make_g(a):
    def g(X):
        return np.prod((np.abs(4 * X - 2) + a) / (1 + a), axis=1)

    def truth():
        vi = 1.0 / (3 * (1 + a) ** 2)
        v = np.prod(1 + vi) - 1
        tot = np.array([vi[i] * np.prod(np.delete(1 + vi, i)) for i in range(len(a))])
        return vi / v, tot / v

    return g, truth


G5, G5_TRUTH = make_g(np.array([0.0, 1.0, 4.5, 9.0, 99.0]))
G10, G10_TRUTH = make_g(np.array([0, 0, 1, 1, 2, 4.5, 9, 9, 99, 99.0]))


def ours(func, k, N, seed, n_replicates=4):
    n = N // n_replicates  # the same N (k + 2) evaluations in all
    D = sobol_design(k, n, random_state=seed, n_replicates=n_replicates)
    res = sobol_indices(func(D), k, n, n_replicates=n_replicates)
    return res["first_order"], res["total"]


def salib(func, k, N, seed):
    problem = {"num_vars": k, "names": [f"x{i}" for i in range(k)]}
    problem["bounds"] = [[0.0, 1.0]] * k
    X = salib_sample.sample(problem, N, calc_second_order=False, seed=seed)
    res = salib_analyze.analyze(
        problem, func(X), calc_second_order=False, num_resamples=100, seed=seed
    )
    return res["S1"], res["ST"]


def timed(fn, *args, repeat=3):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, out


def table_accuracy(seeds=range(20)):
    print(
        "## 1. Accuracy and time at equal evaluations\n\n"
        "Mean over 20 seeds; intervals from 4 replicates of N/4 rows (ours), "
        "100 bootstraps (SALib).\n"
    )
    print(
        "| function | N | evaluations | skconcepts err S1 / ST | SALib err S1 / ST "
        "| skconcepts time (ms) | SALib time (ms) | time ratio SALib/ours |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, func, k, truth in (
        ("Ishigami", ishigami, 3, ishigami_truth),
        ("g-function", G5, 5, G5_TRUTH),
    ):
        s1_true, st_true = truth()
        for N in (256, 1024, 4096, 16384):
            errs = {"ours": [], "salib": []}
            times = {"ours": [], "salib": []}
            for seed in seeds:
                for lib, fn in (("ours", ours), ("salib", salib)):
                    t, (s1, st) = timed(fn, func, k, N, seed, repeat=1)
                    times[lib].append(t)
                    errs[lib].append(
                        (np.mean(np.abs(s1 - s1_true)), np.mean(np.abs(st - st_true)))
                    )
            eo, es = np.mean(errs["ours"], 0), np.mean(errs["salib"], 0)
            to, ts = np.median(times["ours"]), np.median(times["salib"])
            print(
                f"| {name} | {N} | {N * (k + 2)} | {eo[0]:.4f} / {eo[1]:.4f} "
                f"| {es[0]:.4f} / {es[1]:.4f} | {1e3 * to:.1f} | {1e3 * ts:.1f} "
                f"| {ts / to:.1f} |"
            )
    print()


def halton_design(k, N):
    """The reference CRAFT design: unscrambled Halton, first row all zeros."""
    base = qmc.Halton(d=2 * k, scramble=False).random(N)
    A, B = base[:, :k], base[:, k:]
    C = np.repeat(A[None], k, axis=0)
    C[np.arange(k), :, np.arange(k)] = B.T
    return np.concatenate([A, B, C.reshape(k * N, k)], axis=0)


def table_reference_design(N=32, k=10, seeds=range(50)):
    print(f"## 2. Reference design (Halton) vs scrambled Sobol' at N = {N}, k = {k}\n")
    s1_true, st_true = G10_TRUTH()
    D = halton_design(k, N)
    h1, ht = _estimates(*_split(G10(D)[None], k, N))
    ests = [sobol_indices(G10(sobol_design(k, N, random_state=s)), k, N) for s in seeds]
    o1 = np.array([e["first_order"] for e in ests])
    ot = np.array([e["total"] for e in ests])
    print("| design | mean abs error S1 | mean abs error ST | abs bias of ST |")
    print("|---|---|---|---|")
    print(
        f"| Halton, unscrambled (reference) | {np.mean(np.abs(h1[0] - s1_true)):.3f} "
        f"| {np.mean(np.abs(ht[0] - st_true)):.3f} "
        f"| {np.mean(np.abs(ht[0] - st_true)):.3f} |"
    )
    print(
        f"| scrambled Sobol' (ours, one seed, mean over {len(seeds)} seeds) "
        f"| {np.mean(np.abs(o1 - s1_true)):.3f} | {np.mean(np.abs(ot - st_true)):.3f} "
        f"| {np.mean(np.abs(ot.mean(0) - st_true)):.3f} |"
    )
    print()


def table_concepts(n=1000, k=10, N=32, d=64, seed=0):
    print(f"## 3. Per-sample concept indices: {n} samples, k = {k}, N = {N}\n")
    rng = np.random.RandomState(seed)
    U = rng.gamma(1.0, size=(n, k))
    W = np.abs(rng.normal(size=(k, d)))
    W1, W2 = rng.normal(size=(d, 32)) / 8, rng.normal(size=(32,)) / 6

    def head(x):
        return np.maximum(x @ W1, 0) @ W2

    def run_ours():
        return concept_sobol_indices(head, U, W, n_designs=N, random_state=seed)

    problem = {"num_vars": k, "names": [f"c{i}" for i in range(k)]}
    problem["bounds"] = [[0.0, 1.0]] * k

    def run_salib():
        M = salib_sample.sample(problem, N, calc_second_order=False, seed=seed)
        out = np.empty((n, k))
        for i in range(n):
            y = head((M * U[i]) @ W)
            out[i] = salib_analyze.analyze(
                problem, y, calc_second_order=False, num_resamples=2, seed=seed
            )["ST"]
        return out

    t_o, res = timed(run_ours)
    t_s, ref = timed(run_salib, repeat=1)
    agree = np.mean(np.abs(res["total"] - ref))
    print("| library | wall time (s) | ratio |")
    print("|---|---|---|")
    print(f"| skconcepts `concept_sobol_indices` (batched) | {t_o:.2f} | 1.0 |")
    print(f"| SALib, one `analyze` per sample | {t_s:.2f} | {t_s / t_o:.1f} |")
    print(
        f"\nMean |ST difference| between the two (different designs, N = {N}): "
        f"{agree:.3f}.\n"
    )


def _digits_heads():
    """Hidden ReLU activations of digits MLPs and three heads on them."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X / 16.0, y, test_size=0.5, random_state=0, stratify=y
    )
    one = MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=0)
    two = MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=300, random_state=0)
    one.fit(X_tr, y_tr)
    two.fit(X_tr, y_tr)

    def relu_layer(mlp, Z):
        return np.maximum(Z @ mlp.coefs_[0] + mlp.intercepts_[0], 0)

    def logits_one(a):
        return a @ one.coefs_[1] + one.intercepts_[1]

    def proba_one(a):
        z = logits_one(a)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def logits_two(a):
        h = np.maximum(a @ two.coefs_[1] + two.intercepts_[1], 0)
        return h @ two.coefs_[2] + two.intercepts_[2]

    return (
        [
            (
                "1 hidden layer, logit (linear head)",
                relu_layer(one, X_tr),
                relu_layer(one, X_te),
                logits_one,
            ),
            (
                "1 hidden layer, softmax probability",
                relu_layer(one, X_tr),
                relu_layer(one, X_te),
                proba_one,
            ),
            (
                "2 hidden layers cut after the 1st, logit",
                relu_layer(two, X_tr),
                relu_layer(two, X_te),
                logits_two,
            ),
        ],
        y_tr,
        y_te,
    )


def _estimator_rows(U, W, head, kw):
    """(name, per-sample importances, seconds) for every estimator."""
    from skconcepts.importance import (
        concept_gradient_input,
        concept_integrated_gradients,
        concept_occlusion,
        concept_sobol_indices,
    )

    t0 = time.perf_counter()
    sobol = concept_sobol_indices(head, U, W, n_designs=32, random_state=0, **kw)
    yield "Sobol' total (N=32)", sobol["total"], time.perf_counter() - t0
    yield "Sobol' first order (same run)", sobol["first_order"], 0.0
    for name, fn, extra in (
        ("occlusion", concept_occlusion, {}),
        ("gradient x input (central differences)", concept_gradient_input, {}),
        (
            "integrated gradients (16 steps)",
            concept_integrated_gradients,
            {"n_steps": 16},
        ),
    ):
        t0 = time.perf_counter()
        phi = fn(head, U, W, **extra, **kw)
        yield name, phi, time.perf_counter() - t0
    yield "random ranking", np.random.RandomState(0).rand(*U.shape), 0.0


def table_fidelity(k=10):
    from skconcepts import NMFConcepts
    from skconcepts.metrics import c_deletion, c_insertion, c_mufidelity

    heads, y_tr, y_te = _digits_heads()
    print(
        f"Digits MLPs, NMFConcepts(n_concepts={k}) on the hidden ReLU layer (fitted "
        "on the training half), importances of each test sample (899 images) for "
        "the logit/probability of its true class, computed with the engine "
        "functions that SobolConceptImportance and ConceptAttribution use. "
        "C-Deletion: lower is better; C-Insertion and C-muFidelity: higher is "
        "better. Time: the importances of the 899 samples, 2 shared cores.\n"
    )
    for title, A_tr, A_te, head in heads:
        nmf = NMFConcepts(n_concepts=k, random_state=0).fit(A_tr)
        U = nmf.transform(A_te)
        W = nmf.components_
        kw = {"residual": A_te - U @ W, "target": y_te}
        print(f"### {title}\n")
        print("| estimator | C-Deletion | C-Insertion | C-muFidelity | time (s) |")
        print("|---|---|---|---|---|")
        for name, phi, elapsed in _estimator_rows(U, W, head, kw):
            dele = c_deletion(head, U, W, phi, **kw)
            ins = c_insertion(head, U, W, phi, **kw)
            mu = c_mufidelity(head, U, W, phi, random_state=0, **kw)
            print(f"| {name} | {dele:.3f} | {ins:.3f} | {mu:.3f} | {elapsed:.2f} |")
        print()


if __name__ == "__main__":
    print(f"Python {sys.version.split()[0]}, NumPy {np.__version__}\n")
    if "--fidelity" in sys.argv:
        table_fidelity()
    else:
        table_accuracy()
        table_reference_design()
        table_concepts()
