"""Memory bar: NMFConcepts.fit on a float32 memmap larger than 1 GB.

Run from the repository root::

    python benchmarks/bench_memory.py                 # 1.2 GB file in /tmp
    python benchmarks/bench_memory.py --gb 0.2        # a smaller file

A float32 low-rank + noise matrix (``n x 512``) is written chunk by chunk to a
memmap in ``/tmp`` (deleted at the end), opened read-only, and fitted with
``NMFConcepts(n_concepts=32, max_iter=...)`` streaming row batches. The
process's anonymous resident memory (``RssAnon`` in ``/proc/self/status``;
the memmap's pages are file-backed and count in ``RssFile`` instead) is read
before the fit, sampled every 10 ms during the fit (peak), and after. The
extra anonymous memory must stay far below the file's size: the fit keeps the
codes (``n x 32``) and one batch of rows, never a copy of ``X``.
"""

import argparse
import os
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def rss_anon_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("RssAnon not found (Linux only)")


class PeakSampler(threading.Thread):
    def __init__(self, every=0.01):
        super().__init__(daemon=True)
        self.every, self.peak, self._halt = every, rss_anon_mb(), threading.Event()

    def run(self):
        while not self._halt.is_set():
            self.peak = max(self.peak, rss_anon_mb())
            time.sleep(self.every)

    def stop(self):
        self._halt.set()
        self.join()
        self.peak = max(self.peak, rss_anon_mb())
        return self.peak


def write_memmap(path, n, d, rank=32, chunk=50_000, seed=0):
    rng = np.random.RandomState(seed)
    W = rng.rand(rank, d).astype(np.float32)
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, d))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        U = (rng.rand(stop - start, rank) ** 4).astype(np.float32)
        block = U @ W
        block += 0.05 * float(block.mean()) * rng.rand(stop - start, d)
        mm[start:stop] = block
    mm.flush()
    del mm


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.2, help="file size in GB")
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--max-iter", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="write the markdown here")
    args = ap.parse_args()

    import torch

    from skconcepts import NMFConcepts

    if args.threads:
        torch.set_num_threads(args.threads)
    d = args.d
    n = int(args.gb * 1e9 / (4 * d))
    tmpdir = tempfile.mkdtemp(prefix="skconcepts-mem-", dir="/tmp")
    path = os.path.join(tmpdir, "X.f32")
    try:
        t0 = time.perf_counter()
        write_memmap(path, n, d)
        t_write = time.perf_counter() - t0
        size_mb = os.path.getsize(path) / 2**20
        X = np.memmap(path, dtype=np.float32, mode="r", shape=(n, d))
        # warm-up on a tiny array: torch and LAPACK load their own buffers once
        NMFConcepts(4, max_iter=2, device="cpu", random_state=0).fit(
            np.random.RandomState(0).rand(200, d).astype(np.float32)
        )
        est = NMFConcepts(
            32,
            max_iter=args.max_iter,
            batch_size=args.batch_size,
            device="cpu",
            random_state=0,
        )
        before = rss_anon_mb()
        sampler = PeakSampler()
        sampler.start()
        t0 = time.perf_counter()
        est.fit(X)
        t_fit = time.perf_counter() - t0
        peak = sampler.stop()
        after = rss_anon_mb()
        codes_mb = n * 32 * 4 / 2**20
        rel = est.reconstruction_err_ / np.sqrt(
            sum(
                float(np.sum(X[s : s + 100_000].astype(np.float64) ** 2))
                for s in range(0, n, 100_000)
            )
        )
    finally:
        for f in os.listdir(tmpdir):
            os.remove(os.path.join(tmpdir, f))
        os.rmdir(tmpdir)
    lines = [
        f"float32 memmap {n} x {d} = {size_mb:.0f} MiB (written in {t_write:.0f} s), "
        f"NMFConcepts(n_concepts=32, max_iter={args.max_iter}, "
        f"batch_size={args.batch_size}), torch threads {torch.get_num_threads()}",
        "",
        "| quantity | MiB | share of the file |",
        "|---|---|---|",
        f"| file size | {size_mb:.0f} | 100% |",
        f"| RssAnon before fit | {before:.0f} | |",
        f"| RssAnon peak during fit - before | {peak - before:.0f} | "
        f"{100 * (peak - before) / size_mb:.1f}% |",
        f"| RssAnon after fit - before | {after - before:.0f} | "
        f"{100 * (after - before) / size_mb:.1f}% |",
        f"| codes U (n x 32 float32), kept during the fit | {codes_mb:.0f} | "
        f"{100 * codes_mb / size_mb:.1f}% |",
        "",
        f"fit time {t_fit:.1f} s, {est.n_iter_} iterations, relative error {rel:.4f}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# NMF memory benchmark\n\n")
            f.write(f"Command: `python {' '.join(sys.argv)}`\n\n")
            f.write(text)


if __name__ == "__main__":
    main()
