"""Out-of-core fitting: a multi-GB float32 memmap, anonymous memory and throughput.

Run from the repository root::

    python benchmarks/bench_outofcore.py                 # 2 GiB memmap in /tmp
    python benchmarks/bench_outofcore.py --gib 4 --dir /scratch
    python benchmarks/bench_outofcore.py --gib 0.25      # quick check

A non-negative low-rank float32 matrix (``n x 512``, rank 16, plus noise) is
written chunk by chunk to a ``.npy`` memmap (the free space of ``--dir`` is
checked first, the file is deleted at the end) and opened read-only, as a
joblib worker would get it. Each row of the table is one fit on the whole
memmap, measured in this process:

* ``anon growth``: peak growth of ``RssAnon`` (``/proc/self/status``, sampled
  every 2 ms by a thread) over the value before the fit; memory mapped from
  the file (page cache) is not anonymous and is not counted. ``np.array``
  (a full in-memory copy) is the reference row;
* ``growth / data``: that growth as a fraction of the bytes of the rows fitted;
* throughput: rows processed per second (rows x passes / wall time) and MB/s.

The estimators: ``NMFConcepts`` (k = 16, 16384 rows per batch, two HALS
passes, random init) on the whole memmap; ``TopKSAE`` (64 concepts, top-k 8,
one epoch, batch ``--sae-batch`` = 1024) through ``fit`` on the whole memmap
(the engine moves device chunks of ``STREAM_CHUNK_BATCHES`` = 32 batches and
samples at most one chunk of rows for its initialisation), and through
:func:`skconcepts.fit_chunks` (``partial_fit`` over 64 MiB chunks) on the
leading ``--sae-gib`` GiB of rows; ``TaCoEraser`` (default ``"pca"``
decomposition, streamed on a memmap; logistic-regression probe; probes and
the ``n_remove="auto"`` search on ``max_train_samples`` = 16384 rows) on the
whole memmap, with a binary attribute (the first feature above its median);
``SemiNMFConcepts`` and ``ConvexNMFConcepts`` (k = 16, the same passes and
batch as NMF), ``ArchetypalSAE`` and ``AlignedSAE`` (64 concepts, one epoch;
the latter with two interleaved row groups as modalities) on the whole
memmap.
"""

import argparse
import os
import shutil
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from skconcepts import (  # noqa: E402
    AlignedSAE,
    ArchetypalSAE,
    ConvexNMFConcepts,
    NMFConcepts,
    SemiNMFConcepts,
    TaCoEraser,
    TopKSAE,
    fit_chunks,
)
from skconcepts.sae import _engine  # noqa: E402
from skconcepts.utils._testing import AnonMemorySampler  # noqa: E402

MiB = 2**20
HEAD = []  # the rows the R2 column is measured on


def write_memmap(path, n, d, seed=0, block=65536):
    rng = np.random.RandomState(seed)
    basis = rng.rand(16, d).astype(np.float32)
    noise = 0.01 * rng.rand(block, d).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for s in range(0, n, block):
        m = min(block, n - s)
        codes = rng.rand(m, 16).astype(np.float32)
        out[s : s + m] = codes @ basis + np.roll(noise[:m], s // block, axis=1)
    out.flush()
    del out


def measure(name, fn, n_rows_processed, nbytes_processed, file_bytes):
    t0 = time.perf_counter()
    with AnonMemorySampler() as mem:
        fitted = fn()
    dt = time.perf_counter() - t0
    # quality, outside the measurement (score has its own batch temporaries)
    result = None
    if isinstance(fitted, TaCoEraser):  # removed concepts of the 16
        result = f"removes {fitted.n_remove_} of {fitted.n_concepts_}"
    elif hasattr(fitted, "score"):
        result = fitted.score(HEAD[0])
    return {
        "run": name,
        "anon growth (MiB)": mem.growth / MiB,
        "growth / data": mem.growth / file_bytes,
        "time (s)": dt,
        "rows/s": n_rows_processed / dt,
        "MB/s": nbytes_processed / dt / 1e6,
        "result": result,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.0, help="size of the memmap")
    parser.add_argument("--dir", default="/tmp", help="folder of the memmap")
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--nmf-iter", type=int, default=2)
    parser.add_argument(
        "--sae-gib",
        type=float,
        default=0.25,
        help="the fit_chunks SAE row trains on this many GiB of leading rows",
    )
    parser.add_argument(
        "--sae-batch", type=int, default=1024, help="batch size of the SAE rows"
    )
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    d = args.features
    n = int(args.gib * 2**30 // (4 * d))
    file_bytes = n * d * 4
    free = shutil.disk_usage(args.dir).free
    if free < 1.5 * file_bytes:
        sys.exit(
            f"not enough free space in {args.dir}: {free / 2**30:.1f} GiB free, "
            f"{file_bytes / 2**30:.1f} GiB needed"
        )
    path = os.path.join(args.dir, f"skconcepts_outofcore_{os.getpid()}.npy")
    print(
        f"# memmap {n} x {d} float32 = {file_bytes / 2**30:.2f} GiB in {args.dir} "
        f"({free / 2**30:.0f} GiB free), torch threads {torch.get_num_threads()}",
        flush=True,
    )
    chunk = 64 * MiB // (4 * d)
    rows = []
    try:
        t0 = time.perf_counter()
        write_memmap(path, n, d)
        print(f"# written in {time.perf_counter() - t0:.1f} s", flush=True)
        X = np.load(path, mmap_mode="r")
        X.sum(axis=0)  # bring the file into the page cache once, for every row
        head = X[:65536]
        HEAD[:] = [head]
        # warm-up: torch's lazy initialisation and the allocator's first growth
        NMFConcepts(4, max_iter=2, batch_size=16384, device="cpu").fit(head)
        TopKSAE(32, 4, max_epochs=1, batch_size=4096, device="cpu").fit(head)

        def run(name, fn, n_rows, passes=1):
            rows.append(
                measure(
                    name, fn, n_rows * passes, n_rows * d * 4 * passes, n_rows * d * 4
                )
            )
            print(rows[-1]["run"], f"{rows[-1]['time (s)']:.1f} s", flush=True)

        run("np.array(memmap) (full copy, reference)", lambda: np.array(X), n)
        it = args.nmf_iter

        def nmf(**kw):
            return NMFConcepts(16, init="random", device="cpu", random_state=0, **kw)

        # passes over the data: statistics, max_iter iterations, final error
        run(
            f"NMFConcepts.fit (k=16, {it} HALS passes, batch 16384; whole memmap)",
            lambda: nmf(max_iter=it, tol=0.0, batch_size=16384).fit(X),
            n,
            passes=it + 2,
        )
        run(
            "NMFConcepts + fit_chunks (partial_fit, 64 MiB chunks; whole memmap)",
            lambda: fit_chunks(nmf(max_iter=20), X, chunk_size=chunk),
            n,
        )

        def sae():
            return TopKSAE(
                64,
                8,
                max_epochs=1,
                batch_size=args.sae_batch,
                device="cpu",
                random_state=0,
            )

        # the engine streams a memmap in device chunks of
        # STREAM_CHUNK_BATCHES batches and samples at most one chunk of rows
        # for its initialisation
        sb = args.sae_batch
        chunk_mib = _engine.STREAM_CHUNK_BATCHES * sb * d * 4 / MiB
        run(
            f"TopKSAE.fit (64 concepts, 1 epoch, batch {sb}, device chunks of "
            f"{_engine.STREAM_CHUNK_BATCHES} batches = {chunk_mib:.0f} MiB; "
            "whole memmap)",
            lambda: sae().fit(X),
            n,
        )
        n_sae = min(n, int(args.sae_gib * 2**30 // (4 * d)))
        Xs = X[:n_sae]  # still a read-only memmap
        tag = f"{n_sae} rows, {n_sae * d * 4 / 2**30:.2f} GiB"
        run(
            f"TopKSAE + fit_chunks (partial_fit, 64 MiB chunks; {tag})",
            lambda: fit_chunks(sae(), Xs, chunk_size=chunk),
            n_sae,
        )
        # the other learners, each on the whole memmap
        signed = dict(max_iter=it, tol=0.0, batch_size=16384, device="cpu")
        run(
            f"SemiNMFConcepts.fit (k=16, {it} passes, batch 16384; whole memmap)",
            lambda: SemiNMFConcepts(16, random_state=0, **signed).fit(X),
            n,
            passes=it + 2,
        )
        run(
            f"ConvexNMFConcepts.fit (k=16, {it} passes, 1000 candidate rows, "
            "batch 16384; whole memmap)",
            lambda: ConvexNMFConcepts(16, random_state=0, **signed).fit(X),
            n,
            passes=it + 2,
        )
        run(
            f"ArchetypalSAE.fit (64 concepts, 1 epoch, batch {sb}; whole memmap)",
            lambda: ArchetypalSAE(
                64, 8, max_epochs=1, batch_size=sb, device="cpu", random_state=0
            ).fit(X),
            n,
        )
        modality = np.arange(n) % 2  # two interleaved "modalities", 8 MiB
        run(
            f"AlignedSAE.fit (64 concepts, 1 epoch, batch {sb}, y = modality; "
            "whole memmap)",
            lambda: AlignedSAE(
                64, 8, max_epochs=1, batch_size=sb, device="cpu", random_state=0
            ).fit(X, modality),
            n,
        )
        from sklearn.linear_model import LogisticRegression

        y = (np.asarray(X[:, 0]) > np.median(head[:, 0])).astype(int)  # 4 MiB
        run(
            "TaCoEraser.fit (PCA k=16 streamed, logistic probe and auto search "
            "on max_train_samples=16384 rows; whole memmap)",
            lambda: TaCoEraser(
                16,
                probe=LogisticRegression(max_iter=100),
                n_designs=8,
                max_samples=128,
                max_train_samples=16384,
                batch_size=16384,
                device="cpu",
                random_state=0,
            ).fit(X, y),
            n,
        )
    finally:
        if os.path.exists(path):
            os.remove(path)
    cols = [
        "run",
        "anon growth (MiB)",
        "growth / data",
        "time (s)",
        "rows/s",
        "MB/s",
        "R2 (first 65536 rows)",
    ]
    print()
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        res = r["result"]
        cells = [
            r["run"],
            f"{r['anon growth (MiB)']:.0f}",
            f"{r['growth / data']:.3f}",
            f"{r['time (s)']:.1f}",
            f"{r['rows/s']:.3g}",
            f"{r['MB/s']:.0f}",
            f"{res:.4f}" if isinstance(res, float) else (res or ""),
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
