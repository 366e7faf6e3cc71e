"""MatryoshkaSAE against BatchTopK on hierarchical features: feature absorption.

Run (about 2 minutes on 2 busy CPU cores)::

    python benchmarks/bench_matryoshka.py      # -> benchmarks/results/matryoshka.md
    python benchmarks/bench_matryoshka.py --top-k 2 \
        --out benchmarks/results/matryoshka_topk2.md

The second run sets the L0 budget below the true L0 (about 3), where the
nested loss costs F1 (see the results).

Data: :func:`skconcepts.datasets.make_hierarchical_features` with 8 feature
trees of one parent and 4 mutually exclusive children each (40 true
features, orthonormal directions in 64 dimensions, a child fires only with
its parent, with probability 0.75 given the parent; Zipf parent rates from
0.4 down; log-normal magnitudes), 4000 training and 4000 test rows. This is
the toy model of feature absorption (Chanin et al. 2024; Bussmann et al.
2025): a sparse autoencoder may encode "parent and child" with the child's
atom alone (the child's atom then points to the parent plus the child), so
the parent's atom stops firing when a child fires: the parent is
*absorbed*.

Models: ``TopKSAE(activation="batchtopk")`` and ``MatryoshkaSAE`` (BatchTopK,
the default prefixes 4, 8, 16, 32, 64), both with 64 atoms, ``top_k=4``
(the same training L0, about the true L0 of 3), 30 epochs, batches of 256
rows, the same seed (data and model) per repetition.

Measures on the test rows (:mod:`skconcepts.metrics`):

- ``F1``: :func:`~skconcepts.metrics.feature_f1` (each true feature takes
  the latent that detects it best), and its mean over the parents and over
  the children;
- ``F1 (decoder)``: SynthSAEBench's pairing (each latent with the feature of
  largest cosine, mean over the latents, dead latents count 0);
- ``absorption``: :func:`~skconcepts.metrics.absorption_score` (Chanin et
  al.'s full absorption with the known hierarchy);
- ``first prefix``: mean best cosine of the atoms of the first prefix (the
  first 4 atoms; for BatchTopK the first 4 atoms, an arbitrary set) with a
  parent direction, minus the same with a child direction (positive: the
  first atoms are parents);
- ``R2`` and ``L0`` (mean active codes per test row).

Mean +- std over the seeds, and the paired difference Matryoshka - BatchTopK
(mean +- std of the per-seed differences, and how many seeds are > 0).
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from skconcepts.datasets import make_hierarchical_features
from skconcepts.metrics import absorption_score, feature_f1
from skconcepts.sae import MatryoshkaSAE, TopKSAE

DATA = dict(n_features=64, n_atoms=40, n_trees=8, branching=4, orthogonal=True)
MODEL = dict(n_concepts=64, top_k=4, max_epochs=30, batch_size=256)


def measure(sae, X, codes, atoms, parents):
    """The measures of the module docstring on the rows ``X``."""
    U = sae.transform(X)
    f1, scores, _ = feature_f1(codes, U, return_scores=True)
    is_parent = np.isin(np.arange(len(parents)), parents[parents >= 0])
    D = sae.components_
    first = int(getattr(sae, "prefix_sizes_", [4])[0])
    cos = np.abs(atoms @ D[:first].T)  # (n_true, first)
    return {
        "F1": f1,
        "parent F1": float(scores[is_parent].mean()),
        "child F1": float(scores[parents >= 0].mean()),
        "F1 (decoder)": feature_f1(
            codes, U, matching="decoder", directions=atoms, decoder=D
        ),
        "absorption": absorption_score(codes, U, parents, atoms, D),
        "first prefix": float(
            cos[is_parent].max(0).mean() - cos[parents >= 0].max(0).mean()
        ),
        "R2": float(sae.score(X)),
        "L0": float((U != 0).sum(1).mean()),
    }


def run(seeds, n_samples=4000, data=DATA, model=MODEL):
    """The measures of each model, one dict per seed."""
    out = {"BatchTopK": [], "Matryoshka": []}
    for seed in seeds:
        X, atoms, codes, parents = make_hierarchical_features(
            2 * n_samples, random_state=seed, **data
        )
        n = n_samples
        common = dict(model, random_state=seed, device="cpu")
        models = {
            "BatchTopK": TopKSAE(activation="batchtopk", **common),
            "Matryoshka": MatryoshkaSAE(**common),
        }
        for name, sae in models.items():
            sae.fit(X[:n])
            out[name].append(measure(sae, X[n:], codes[n:], atoms, parents))
    return out


def table(results):
    keys = list(results["BatchTopK"][0])
    lines = ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, rows in results.items():
        cells = []
        for k in keys:
            v = np.array([r[k] for r in rows])
            cells.append(f"{v.mean():.3f} ± {v.std():.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = []
    for k in keys:
        d = np.array(
            [
                m[k] - b[k]
                for m, b in zip(
                    results["Matryoshka"], results["BatchTopK"], strict=True
                )
            ]
        )
        cells.append(f"{d.mean():+.3f} ± {d.std():.3f} ({(d > 0).sum()}/{len(d)} > 0)")
    lines.append("| Matryoshka − BatchTopK (paired) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n-samples", type=int, default=4000)
    parser.add_argument("--top-k", type=int, default=MODEL["top_k"])
    parser.add_argument(
        "--out",
        default=str(Path(__file__).parent / "results" / "matryoshka.md"),
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model = {**MODEL, "top_k": args.top_k}
    results = run(range(args.seeds), args.n_samples, model=model)
    text = table(results)
    print(text)
    elapsed = time.perf_counter() - t0
    header = (
        "# MatryoshkaSAE vs BatchTopK on hierarchical features, "
        f"top_k={args.top_k}\n\n"
        "Machine: Intel Xeon, 2 shared vCPUs, 23 GiB, Linux, no GPU (the "
        "development VM; see docs/benchmarks.md).\n\n"
        f"`python benchmarks/bench_matryoshka.py --seeds {args.seeds} "
        f"--n-samples {args.n_samples} --top-k {args.top_k}` "
        f"({elapsed:.0f} s on this machine). "
        f"Data: `make_hierarchical_features` with {DATA}, {args.n_samples} "
        f"training and as many test rows. Models: {model}; Matryoshka prefixes "
        "4, 8, 16, 32, 64 (the default). Mean ± std over the seeds (test rows); "
        "last row: the per-seed paired difference (seeds > 0).\n\n"
    )
    Path(args.out).write_text(header + text + "\n")


if __name__ == "__main__":
    main()
