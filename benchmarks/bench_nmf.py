"""NMF concepts: skconcepts vs scikit-learn vs overcomplete, side by side.

Run from the repository root::

    python benchmarks/bench_nmf.py            # both sizes, 1 and default threads
    python benchmarks/bench_nmf.py --quick    # 5000 x 256 only

Data: a non-negative low-rank matrix plus uniform noise (float32), ``k = 32``,
``init="nndsvda"``, ``max_iter=200``, ``tol=1e-4``. For every method the table
gives the wall time of ``fit`` (best of ``--repeat`` runs; the machine is
shared and noisy), the relative error ``||X - UW||_F / ||X||_F``, the number of
dead atoms (concept rows or code columns that are all zero), and the time to
reach scikit-learn ``cd``'s final error within 1% ("time to target"). For
skconcepts that time is read from the ``fit`` callback; for scikit-learn it is
the whole fit when its final error is within the target. Ratios are against
scikit-learn ``cd`` in the same run and thread setting.

overcomplete (PyPI ``overcomplete``) is optional: install it for the benchmark
only with ``pip install --no-deps overcomplete einops opencv-python-headless
scikit-image`` (its own dependencies pull torchvision and a CUDA torch). Its
package ``__init__`` needs ``torchvision.transforms`` and matplotlib's removed
``cm.get_cmap``; neither is used by its NMF, so a stand-in module is put in
``sys.modules`` before the import. It is skipped when not installed.
"""

import argparse
import os
import sys
import time
import types

import numpy as np
import torch
from sklearn.decomposition import NMF
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from skconcepts import NMFConcepts  # noqa: E402


def import_overcomplete():
    """overcomplete's NMF class, or None when the package is not installed."""
    try:
        import matplotlib
        import matplotlib.cm as cm

        if not hasattr(cm, "get_cmap"):
            cm.get_cmap = matplotlib.colormaps.get_cmap
        if "torchvision" not in sys.modules:
            tv = types.ModuleType("torchvision")
            tv.transforms = types.ModuleType("torchvision.transforms")
            sys.modules["torchvision"] = tv
            sys.modules["torchvision.transforms"] = tv.transforms
        from overcomplete.optimization import NMF as OcNMF

        return OcNMF
    except Exception as exc:  # pragma: no cover - optional peer
        print(f"overcomplete not available ({type(exc).__name__}: {exc}); skipped")
        return None


def make_data(n, d, rank=32, noise=0.05, seed=0):
    rng = np.random.RandomState(seed)
    U = rng.rand(n, rank) ** 4
    W = rng.rand(rank, d)
    X = U @ W
    X += noise * X.mean() * rng.rand(n, d)
    return X.astype(np.float32)


def rel_err(X, U, W):
    return float(np.linalg.norm(X - U @ W) / np.linalg.norm(X))


def dead(U, W):
    return int(np.sum((np.abs(W).max(1) == 0) | (np.abs(U).max(0) == 0)))


def best_of(repeat, fn):
    """Run ``fn`` ``repeat`` times; keep the result of the fastest run."""
    best = None
    for _ in range(repeat):
        res = fn()
        if best is None or res["time"] < best["time"]:
            best = res
    return best


def run_sklearn(X, k, solver, max_iter):
    t0 = time.perf_counter()
    est = NMF(k, solver=solver, init="nndsvda", max_iter=max_iter, random_state=0)
    U = est.fit_transform(X)
    t = time.perf_counter() - t0
    return {
        "time": t,
        "err": rel_err(X, U, est.components_),
        "dead": dead(U, est.components_),
        "n_iter": est.n_iter_,
        "trace": None,
    }


def run_ours(X, k, solver, max_iter):
    trace = []
    t0 = time.perf_counter()

    class Trace:  # the callback protocol shared with the SAEs
        def on_epoch_end(self, est, session, record):
            trace.append((time.perf_counter() - t0, record["relative_error"]))

    est = NMFConcepts(
        k,
        solver=solver,
        init="nndsvda",
        max_iter=max_iter,
        random_state=0,
        device="cpu",
        callbacks=[Trace()],
    ).fit(X)
    t = time.perf_counter() - t0
    nx = float(np.linalg.norm(X))
    # codes of the fit are not kept; dead atoms are zero concept rows (the
    # HALS guard re-seeds zero code columns during the fit)
    n_dead = int(np.sum(np.abs(est.components_).max(1) == 0))
    return {
        "time": t,
        "err": est.reconstruction_err_ / nx,
        "dead": n_dead,
        "n_iter": est.n_iter_,
        "trace": trace,
    }


def run_overcomplete(OcNMF, X, k, solver, max_iter):
    A = torch.from_numpy(X)
    t0 = time.perf_counter()
    Z, D = OcNMF(k, solver=solver).fit(A, max_iter=max_iter)
    t = time.perf_counter() - t0
    Z, D = Z.numpy(), D.numpy()
    return {
        "time": t,
        "err": rel_err(X, Z, D),
        "dead": dead(Z, D),
        "n_iter": max_iter,
        "trace": None,
    }


def time_to(res, target):
    if res["trace"]:
        for t, e in res["trace"]:
            if e <= target:
                return t
        return None
    return res["time"] if res["err"] <= target else None


def bench(X, k, threads, repeat, OcNMF, max_iter=200):
    torch.set_num_threads(threads)
    rows = []
    with threadpool_limits(threads):
        runs = [
            ("scikit-learn NMF cd", lambda: run_sklearn(X, k, "cd", max_iter)),
            ("scikit-learn NMF mu", lambda: run_sklearn(X, k, "mu", max_iter)),
            ("skconcepts HALS", lambda: run_ours(X, k, "hals", max_iter)),
            ("skconcepts MU", lambda: run_ours(X, k, "mu", max_iter)),
        ]
        if OcNMF is not None:
            runs += [
                (
                    "overcomplete HALS",
                    lambda: run_overcomplete(OcNMF, X, k, "hals", max_iter),
                ),
                (
                    "overcomplete MU",
                    lambda: run_overcomplete(OcNMF, X, k, "mu", max_iter),
                ),
            ]
        results = {}
        for name, fn in runs:
            # overcomplete and the multi-thread runs once: they are the slow ones
            one = name.startswith("overcomplete") or threads > 1
            rep = 1 if one else repeat
            results[name] = best_of(rep, fn)
            print(f"  {name}: {results[name]['time']:.2f} s", flush=True)
    ref = results["scikit-learn NMF cd"]
    target = 1.01 * ref["err"]
    t_ref = ref["time"]
    oc = results.get("overcomplete HALS")
    for name, r in results.items():
        tt = time_to(r, target)
        # time to reach overcomplete HALS's own final error (x 1.01); for the
        # methods without a trace this is their whole fit (an upper bound)
        tt_oc = time_to(r, 1.01 * oc["err"]) if oc is not None else None
        rows.append(
            (
                name,
                threads,
                r["time"],
                r["err"],
                r["n_iter"],
                r["dead"],
                tt,
                (t_ref / tt) if tt else None,
                tt_oc,
                (oc["time"] / tt_oc) if (oc is not None and tt_oc) else None,
            )
        )
    return rows


def table(rows, shape, k):
    out = [
        f"\n**{shape[0]} x {shape[1]} float32, k = {k}** (target: scikit-learn cd's "
        "final error x 1.01)\n",
        "| method | threads | fit time (s) | rel. error | iterations | dead atoms "
        "| time to target (s) | speed-up vs sklearn cd at equal error "
        "| time to overcomplete HALS's error (s) | speed-up vs overcomplete HALS "
        "at its error |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(v, spec, missing):
        return format(v, spec) if v is not None else missing

    for name, th, t, e, it, nd, tt, sp, tto, spo in rows:
        out.append(
            f"| {name} | {th} | {t:.2f} | {e:.4f} | {it} | {nd} "
            f"| {fmt(tt, '.2f', 'not reached')} | {fmt(sp, '.1f', '-')}"
            f"{'x' if sp else ''} | {fmt(tto, '.2f', 'not reached')} "
            f"| {fmt(spo, '.1f', '-')}{'x' if spo else ''} |"
        )
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="5000 x 256 only")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=None, help="write the markdown here")
    args = ap.parse_args()
    default_threads = torch.get_num_threads()
    OcNMF = import_overcomplete()
    sizes = [(5000, 256)] if args.quick else [(20000, 512), (5000, 256)]
    thread_settings = sorted({1, default_threads})
    parts = [
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, default torch threads "
        f"{default_threads}; best of {args.repeat} runs with 1 thread (overcomplete "
        "and the default-thread runs: 1 run)."
    ]
    for n, d in sizes:
        X = make_data(n, d)
        rows = []
        for th in thread_settings:
            print(f"{n} x {d}, {th} thread(s)", flush=True)
            rows += bench(X, 32, th, args.repeat, OcNMF)
        parts.append(table(rows, (n, d), 32))
    text = "\n".join(parts) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(f"# NMF benchmark\n\nCommand: `python {' '.join(sys.argv)}`\n\n")
            f.write(text)


if __name__ == "__main__":
    main()
