"""``skconcepts demo``: CRAFT on a digits network, with a table and figures."""

import sys
import time
from pathlib import Path

import numpy as np


def top_concepts_rows(sobol, top):
    """(class, rank, concept, total index, ci low, ci high) for the top concepts."""
    total = np.asarray(sobol.total_indices_)
    ci = getattr(sobol, "total_indices_ci_", None)
    rows = []
    for c, cls in enumerate(sobol.classes_):
        order = np.argsort(-total[c], kind="stable")[:top]
        for rank, k in enumerate(order, start=1):
            lo, hi = (np.nan, np.nan) if ci is None else ci[c, k]
            rows.append((cls, rank, int(k), float(total[c, k]), float(lo), float(hi)))
    return rows


def format_table(rows, level):
    pct = f"{100 * level:g}%"
    header = f"{'class':>5}  {'rank':>4}  {'concept':>7}  {'total Sobol':>11}  {pct} CI"
    lines = [header, "-" * len(header) + "-" * 16]
    for cls, rank, k, value, lo, hi in rows:
        lines.append(
            f"{cls!s:>5}  {rank:>4}  {k:>7}  {value:>11.3f}  [{lo:.3f}, {hi:.3f}]"
        )
    return "\n".join(lines)


def run_demo(args):
    from ._cli_io import CLIError, atomic_outputs

    if not args.no_figures:
        try:
            import matplotlib

            matplotlib.use("Agg")  # files only, no window
        except ImportError as exc:
            raise CLIError(
                "the figures need matplotlib: pip install 'skconcepts[plot]' "
                "(or run with --no-figures)"
            ) from exc
    if args.n_concepts < 1 or args.top < 1:
        raise CLIError("--n-concepts and --top must be at least 1")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out must be a folder, {out} is a file")

    from . import NMFConcepts, SobolConceptImportance
    from .datasets import load_digits_activations

    seed = args.random_state
    device = args.device or "cpu"
    t0 = time.perf_counter()
    digits = load_digits_activations(max_iter=400, random_state=seed)
    acc = float((digits.head(digits.A_test).argmax(1) == digits.y_test).mean())
    print(
        f"digits network: {digits.A_train.shape[1]} hidden ReLU units, "
        f"test accuracy {acc:.3f} ({digits.A_train.shape[0]} train / "
        f"{digits.A_test.shape[0]} test images)"
    )
    nmf = NMFConcepts(
        n_concepts=args.n_concepts, max_iter=400, device=device, random_state=seed
    ).fit(digits.A_train)
    print(
        f"NMFConcepts(n_concepts={args.n_concepts}): reconstruction R2 on held-out "
        f"activations {nmf.score(digits.A_test):.3f}"
    )
    sobol = SobolConceptImportance(
        nmf,
        digits.head,
        prefit=True,
        n_designs=16,
        n_replicates=4,  # four independent designs: the intervals
        device=device,
        random_state=seed,
    ).fit(digits.A_test, digits.y_test)
    rows = top_concepts_rows(sobol, min(args.top, args.n_concepts))
    print(
        "\nTop concepts per class: total Sobol' index of each concept for the "
        "class logit, averaged over the test images of the class\n"
    )
    print(format_table(rows, sobol.confidence_level))

    out.mkdir(parents=True, exist_ok=True)
    names = ["top_concepts.csv"]
    if not args.no_figures:
        names += ["importance.png", "concepts.png"]
    with atomic_outputs(*(out / n for n in names)) as tmps:
        with open(tmps[0], "w") as f:
            f.write("class,rank,concept,total_index,ci_low,ci_high\n")
            for r in rows:
                f.write(",".join(str(v) for v in r) + "\n")
        if not args.no_figures:
            _figures(sobol, nmf, digits, tmps[1], tmps[2])
    print(
        f"\nwrote {', '.join(str(out / n) for n in names)} "
        f"({time.perf_counter() - t0:.1f} s)",
        file=sys.stdout,
    )
    return 0


def _figures(sobol, nmf, digits, importance_path, concepts_path):
    import matplotlib.pyplot as plt

    from .plotting import plot_concept_images, plot_concept_importance

    fig = plot_concept_importance(sobol, top_n=5, ncols=5)
    fig.set_size_inches(14, 5)
    fig.tight_layout()
    fig.savefig(importance_path, format="png", dpi=100)
    plt.close(fig)

    top = np.asarray(sobol.total_indices_).argmax(axis=1)
    shown = list(dict.fromkeys(int(k) for k in top))  # one row per distinct concept
    names = [
        f"concept {k}\n(top for {', '.join(str(c) for c in sobol.classes_[top == k])})"
        for k in range(nmf.n_concepts)
    ]
    fig = plot_concept_images(
        nmf.transform(digits.A_test),
        digits.images_test,
        shown,
        n_top=8,
        concept_names=names,
        cmap="gray_r",
    )
    fig.savefig(concepts_path, format="png", dpi=100)
    plt.close(fig)
