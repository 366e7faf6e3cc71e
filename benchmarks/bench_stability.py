"""Stability of ArchetypalSAE against TopKSAE, beyond noise, and its cause.

Run (about 6 minutes on 2 busy cores)::

    python benchmarks/bench_stability.py           # -> results/stability.md
    python benchmarks/bench_stability.py --sweep   # adds the relaxation sweep

Data: :func:`skconcepts.datasets.make_sparse_atoms` with 128 unit atoms in
64 dimensions (an overcomplete, hence correlated, set: random directions, twice
as many as dimensions), ``n_active`` of them per sample with magnitudes in
[0.5, 1.5], small noise. Models: 256 concepts, ``top_k=8``, the estimators'
other defaults except ``max_epochs`` and ``batch_size``.

Protocol, per seed pair ``i`` (``i = 0 .. n_pairs - 1``): the rows are split
into two disjoint halves by a permutation seeded by ``i``; one model is fitted
on each half with seeds ``2 i + 1`` and ``2 i + 2`` (the seed also draws the
k-means candidates of ``ArchetypalSAE`` and of ``TopKSAE(init="kmeans")``, so
both the data and the k-means seed differ between the two fits). Stability
is ``metrics.dictionary_stability`` (mean Hungarian-matched cosine) of the
two dictionaries; recovery is ``metrics.atom_recovery`` of the true atoms
(mean of the two fits) and R^2 the reconstruction R^2 of each half (mean).
The table gives mean +- std over the pairs, and for each model the paired
difference to ``TopKSAE`` (mean, std and the 95% Student interval of the
mean difference). Rows:

- ``TopKSAE``: random initial dictionary;
- ``TopKSAE(init="kmeans")``: the same data-anchored start as A-SAE (unit-norm
  k-means centroids), a free dictionary afterwards;
- ``ArchetypalSAE``: ``relaxation="auto"``.

``--lloyd`` adds ``ArchetypalSAE(kmeans_max_iter=30)`` and
``TopKSAE(init="kmeans")`` whose k-means start runs Lloyd to convergence (at
most 30 steps) instead of the default k-means++ and one Lloyd step.

``--sweep`` adds ``ArchetypalSAE`` at several values of ``relaxation`` (in
the units of the data's RMS norm, the "auto" value being 0.3 of it).
"""

import argparse
import os
import time

import numpy as np
import torch
from scipy.stats import t as student_t

from skconcepts.datasets import make_sparse_atoms
from skconcepts.metrics import atom_recovery, dictionary_stability
from skconcepts.sae import ArchetypalSAE, TopKSAE

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results", "stability.md")

DATA = dict(n_features=64, n_atoms=128, n_active=4, noise=0.01)
COMMON = dict(n_concepts=256, top_k=8, batch_size=512, device="cpu")


def models(epochs, sweep, lloyd=False):
    common = dict(COMMON, max_epochs=epochs)
    out = {
        "TopKSAE": lambda s: TopKSAE(random_state=s, **common),
        'TopKSAE(init="kmeans")': lambda s: TopKSAE(
            init="kmeans", random_state=s, **common
        ),
        "ArchetypalSAE": lambda s: ArchetypalSAE(random_state=s, **common),
    }
    if lloyd:
        out['TopKSAE(init="kmeans") (k-means: 30 Lloyd steps)'] = lambda s: _steps(
            out['TopKSAE(init="kmeans")'], s, 30
        )
        out["ArchetypalSAE(kmeans_max_iter=30)"] = lambda s: ArchetypalSAE(
            kmeans_max_iter=30, random_state=s, **common
        )
    if sweep:
        for frac in (0.0, 0.1, 1.0, 3.0):
            out[f"ArchetypalSAE(relaxation={frac:g} rms)"] = lambda s, f=frac: _relaxed(
                f, s, common
            )
    return out


def _relaxed(frac, seed, common):
    # relaxation in the data's units: frac x RMS norm of the centred data
    return ArchetypalSAE(relaxation=frac * RMS[0], random_state=seed, **common)


RMS = [None]


def _steps(make, seed, n):
    """``make(seed)`` whose k-means start runs ``n`` Lloyd steps."""
    est = make(seed)
    est._kmeans_n_iter = n  # TopKSAE(init="kmeans"): shadows the class default
    return est


def run(n_samples, n_pairs, epochs, sweep, lloyd=False):
    X, atoms, _ = make_sparse_atoms(n_samples, random_state=0, **DATA)
    RMS[0] = float(np.sqrt(((X - X.mean(0)) ** 2).sum(1).mean()))
    rows = {}
    for i in range(n_pairs):
        perm = np.random.RandomState(i).permutation(n_samples)
        halves = [
            X[np.sort(perm[: n_samples // 2])],
            X[np.sort(perm[n_samples // 2 :])],
        ]
        for name, make in models(epochs, sweep, lloyd).items():
            t0 = time.perf_counter()
            fits = [make(2 * i + 1 + h).fit(halves[h]) for h in (0, 1)]
            res = {
                "stability": dictionary_stability(
                    fits[0].components_, fits[1].components_
                ),
                "recovery": np.mean(
                    [atom_recovery(atoms, f.components_) for f in fits]
                ),
                "R2": np.mean([f.reconstruction_r2_ for f in fits]),
                "dead": np.mean([f.dead_fraction_ for f in fits]),
            }
            rows.setdefault(name, []).append(res)
            print(
                f"pair {i} {name} ({time.perf_counter() - t0:.0f} s): "
                + ", ".join(f"{k} {v:.4f}" for k, v in res.items()),
                flush=True,
            )
    return rows


def paired(v, base):
    d = v - base
    half = student_t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    lo, hi = d.mean() - half, d.mean() + half
    return f"{d.mean():+.4f} ± {d.std(ddof=1):.4f} [{lo:+.4f}, {hi:+.4f}]"


def table(rows):
    cols = ("stability", "recovery", "R2", "dead")
    lines = [
        "| model | "
        + " | ".join(cols)
        + " | Δ stability vs TopKSAE (mean ± std [95% CI]) "
        "| Δ recovery vs TopKSAE |",
        "|---" * (len(cols) + 3) + "|",
    ]
    base = {c: np.array([r[c] for r in rows["TopKSAE"]]) for c in cols}
    for name, res in rows.items():
        v = {c: np.array([r[c] for r in res]) for c in cols}
        cells = [f"{v[c].mean():.4f} ± {v[c].std(ddof=1):.4f}" for c in cols]
        if name == "TopKSAE":
            cells += ["", ""]
        else:
            cells += [
                paired(v["stability"], base["stability"]),
                paired(v["recovery"], base["recovery"]),
            ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_vs(rows, ref="ArchetypalSAE"):
    """Paired differences of every other model to ``ref`` (the same halves)."""
    cols = ("stability", "recovery", "R2")
    lines = [
        "| model | " + " | ".join(f"Δ {c} vs {ref}" for c in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    base = {c: np.array([r[c] for r in rows[ref]]) for c in cols}
    for name, res in rows.items():
        if name == ref:
            continue
        v = {c: np.array([r[c] for r in res]) for c in cols}
        cells = [paired(v[c], base[c]) for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=20000)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--lloyd", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the machine is shared
    t0 = time.perf_counter()
    rows = run(args.n_samples, args.pairs, args.epochs, args.sweep, args.lloyd)
    cmd = (
        f"python benchmarks/bench_stability.py --n-samples {args.n_samples} "
        f"--pairs {args.pairs} --epochs {args.epochs}"
        + (" --sweep" if args.sweep else "")
        + (" --lloyd" if args.lloyd else "")
    )
    params = ", ".join(f"{k}={v}" for k, v in {**DATA, **COMMON}.items())
    text = (
        "# Stability of ArchetypalSAE vs TopKSAE (disjoint halves, seed pairs)\n\n"
        f"Command: `{cmd}` ({time.perf_counter() - t0:.0f} s, torch "
        f"{torch.__version__}, 1 thread, 2 shared cores).\n\n"
        f"n_samples={args.n_samples} (two halves of {args.n_samples // 2}), {params}, "
        f"max_epochs={args.epochs}; {args.pairs} seed pairs (data split and model "
        f"seeds differ per pair and per half); RMS norm of the centred data "
        f"{RMS[0]:.3f}. mean ± std (ddof 1) over the pairs; Δ: paired difference "
        "to TopKSAE on the same halves.\n\n"
        + table(rows)
        + "\n\nPaired differences to ArchetypalSAE (mean ± std [95% CI]):\n\n"
        + table_vs(rows)
        + "\n"
    )
    print(text)
    with open(OUT, "w") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
