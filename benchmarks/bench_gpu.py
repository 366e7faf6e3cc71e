"""GPU path: speed-up of the torch solvers on CUDA over the CPU and over scikit-learn.

Run from the repository root::

    python benchmarks/bench_gpu.py            # NMF 20000 x 512, SAE 50000 x 256
    python benchmarks/bench_gpu.py --quick    # smaller, for a smoke test

Every row is one ``fit`` in this process on the same float32 data, with the
time of the best of ``--repeat`` runs (the machine may be shared):

* NMF: non-negative low-rank data plus noise, ``k = 32``, ``init="nndsvda"``,
  scikit-learn's ``NMF(solver="cd")`` for 100 iterations (``tol=0``; the CPU
  reference) against the time :class:`~skconcepts.NMFConcepts` (``device="cpu"``
  and ``device="cuda"``) takes to reach scikit-learn's final relative error
  ``||X - UW|| / ||X||`` within 1% (read from its ``fit`` callback; our HALS
  does several code sweeps per iteration, so equal iteration counts are not
  equal work).
* SAE: sparse non-negative combinations of 512 unit atoms, 2 epochs, batch
  1024, 512 concepts, top-k 16: scikit-learn's
  ``MiniBatchDictionaryLearning`` (1 epoch, OMP codes with 16 non-zeros; the
  closest scikit-learn estimator, a CPU reference), :class:`~skconcepts.TopKSAE`
  with ``device="cpu"`` and ``device="cuda"``. Quality: reconstruction R^2.

Without a CUDA device the GPU rows read "not run: no CUDA device" and the
script still reports the CPU figures.

``--large`` runs instead the language-model-sized SAE configuration of
``bench_sae.py large`` (d = 768, 16384 concepts, top_k 32, batch 4096, random
data; throughput only): samples/s, the share of the fp32 matmul rate measured
in the same run on the encoder's shapes, and peak memory against the ideal
(parameters + two Adam moments + one batch), on CUDA when present, else on
the CPU. ``--large-size tiny`` shrinks it to a smoke test of the code path::

    python benchmarks/bench_gpu.py --large                 # CUDA (or CPU)
    python benchmarks/bench_gpu.py --large --large-size tiny
"""

import argparse
import os
import sys
import time

import numpy as np
import torch
from sklearn.decomposition import NMF, MiniBatchDictionaryLearning

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from skconcepts import NMFConcepts, TopKSAE  # noqa: E402
from skconcepts.metrics import reconstruction_r2  # noqa: E402


def nmf_data(n, d, rng):
    X = rng.rand(n, 32) @ rng.rand(32, d) + 0.1 * rng.rand(n, d)
    return X.astype(np.float32)


def sae_data(n, d, rng, n_atoms=512, k=8):
    atoms = rng.randn(n_atoms, d)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    idx = np.argsort(rng.rand(n, n_atoms), axis=1)[:, :k]
    X = np.zeros((n, d))
    for j in range(k):
        X += rng.rand(n, 1) * atoms[idx[:, j]]
    return (X + 0.01 * rng.randn(n, d)).astype(np.float32)


def best_of(repeat, fn):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def rel_error(X, U, W):
    return float(np.linalg.norm(X - U @ W) / np.linalg.norm(X))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--large", action="store_true")
    parser.add_argument("--large-steps", type=int, default=200)
    parser.add_argument("--large-size", choices=["lm", "tiny"], default="lm")
    args = parser.parse_args()
    if args.large:
        return large(args.large_steps, args.large_size)
    rng = np.random.RandomState(0)
    n_nmf, n_sae = (4000, 8000) if args.quick else (20000, 50000)
    cuda = torch.cuda.is_available()
    gpu_name = torch.cuda.get_device_name(0) if cuda else "none"
    print(
        f"# torch {torch.__version__}, CPU threads {torch.get_num_threads()}, "
        f"CUDA device: {gpu_name}",
        flush=True,
    )
    rows = []

    # ------------------------------------------------------------------ NMF
    X = nmf_data(n_nmf, 512, rng)

    def sk_nmf():
        m = NMF(32, init="nndsvda", solver="cd", max_iter=100, tol=0, random_state=0)
        U = m.fit_transform(X)
        return rel_error(X, U, m.components_)

    def our_nmf(device, target):
        """Time to reach ``target`` relative error (read from the fit callback)."""

        def fit():
            trace = []
            t0 = time.perf_counter()

            class Trace:  # the callback protocol shared with the SAEs
                def on_epoch_end(self, est, session, record):
                    trace.append((time.perf_counter(), record["relative_error"]))

            m = NMFConcepts(
                32,
                init="nndsvda",
                max_iter=100,
                tol=0,
                device=device,
                random_state=0,
                callbacks=[Trace()],
            )
            m.fit(X)
            hit = [t for t, err in trace if err <= target]
            t_hit = (hit[0] if hit else trace[-1][0]) - t0
            return t_hit, float(m.reconstruction_err_ / np.linalg.norm(X))

        def timed():
            return min((fit() for _ in range(args.repeat)), key=lambda r: r[0])

        return timed

    # warm-up: torch's lazy imports (Adam imports torch._dynamo) and kernels
    NMFConcepts(4, max_iter=2, device="cpu").fit(X[:500])
    TopKSAE(8, 2, max_epochs=1, device="cpu").fit(X[:500])
    t_sk, e_sk = best_of(args.repeat, sk_nmf)
    target = 1.01 * e_sk
    rows.append(
        ("NMF", "scikit-learn NMF(cd), 100 iterations, CPU", t_sk, f"{e_sk:.4f}")
    )
    t_cpu, e_cpu = our_nmf("cpu", target)()
    rows.append(
        (
            "NMF",
            "NMFConcepts, CPU (time to scikit-learn's error + 1%)",
            t_cpu,
            f"{e_cpu:.4f} after 100",
        )
    )
    if cuda:
        our_nmf("cuda", target)()  # warm-up (CUDA context, kernels)
        t_gpu, e_gpu = our_nmf("cuda", target)()
        rows.append(
            (
                "NMF",
                f"NMFConcepts, CUDA ({gpu_name}), same target",
                t_gpu,
                f"{e_gpu:.4f} after 100",
            )
        )
    else:
        rows.append(("NMF", "NMFConcepts, CUDA", None, ""))
    nmf_ref = (t_sk, t_cpu)

    # ------------------------------------------------------------------ SAE
    X = sae_data(n_sae, 256, rng)

    def sk_dl():
        m = MiniBatchDictionaryLearning(
            512,
            batch_size=1024,
            max_iter=1,
            transform_algorithm="omp",
            transform_n_nonzero_coefs=16,
            random_state=0,
        ).fit(X)
        U = m.transform(X[:5000])
        return reconstruction_r2(X[:5000], U @ m.components_)

    def our_sae(device):
        def fit():
            m = TopKSAE(
                512, 16, max_epochs=2, batch_size=1024, device=device, random_state=0
            ).fit(X)
            return m.reconstruction_r2_

        return fit

    t_sk2, r_sk = best_of(1, sk_dl)
    rows.append(
        (
            "SAE",
            "scikit-learn MiniBatchDictionaryLearning (1 epoch), CPU",
            t_sk2,
            f"{r_sk:.4f}",
        )
    )
    t_cpu2, r_cpu = best_of(args.repeat, our_sae("cpu"))
    rows.append(("SAE", "TopKSAE (2 epochs), CPU", t_cpu2, f"{r_cpu:.4f}"))
    if cuda:
        our_sae("cuda")()
        t_gpu2, r_gpu = best_of(args.repeat, our_sae("cuda"))
        rows.append(
            ("SAE", f"TopKSAE (2 epochs), CUDA ({gpu_name})", t_gpu2, f"{r_gpu:.4f}")
        )
    else:
        rows.append(("SAE", "TopKSAE (2 epochs), CUDA", None, ""))
    refs = {"NMF": nmf_ref, "SAE": (t_sk2, t_cpu2)}

    print()
    print(
        f"NMF: {n_nmf} x 512, k = 32, 100 iterations; SAE: {n_sae} x 256, "
        "512 concepts, top-k 16, batch 1024"
    )
    print()
    print(
        "| task | method | fit time (s) | speed-up vs scikit-learn | "
        "speed-up vs our CPU | quality |"
    )
    print("|---|---|---|---|---|---|")
    for task, name, t, quality in rows:
        if t is None:
            print(f"| {task} | {name} | not run: no CUDA device | | | |")
            continue
        sk, cpu = refs[task]
        print(
            f"| {task} | {name} | {t:.2f} | {sk / t:.2f}x | {cpu / t:.2f}x "
            f"| {quality} |"
        )
    print()
    print(
        "quality: NMF relative error ||X - UW|| / ||X|| (ours after its 100 "
        "iterations; its time is the time to reach scikit-learn's final error "
        "within 1%); SAE reconstruction R2 (scikit-learn: on the first 5000 rows)."
    )


def large(steps, size):
    """The LM-sized SAE of ``bench_sae.py large``, on CUDA when present."""
    sys.path.insert(0, os.path.dirname(__file__))
    from bench_sae import LARGE, LARGE_HEADER, large_report, large_run

    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = dict(LARGE) if size == "lm" else dict(d=32, k=256, top_k=4, batch=128)
    r = large_run(steps=steps, device=device, **cfg)
    cmd = f"python benchmarks/bench_gpu.py --large --large-steps {steps}"
    if size != "lm":
        cmd += " --large-size tiny"
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU (no CUDA)"
    print(
        f"# {name}: d = {cfg['d']}, {cfg['k']} concepts, top_k {cfg['top_k']}, "
        f"batch {cfg['batch']}"
    )
    print()
    print("\n".join(LARGE_HEADER))
    print(large_report(r, cmd))
    return r


if __name__ == "__main__":
    main()
