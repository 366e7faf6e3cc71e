"""Sparse autoencoders: quality/stability on known atoms, and training speed.

Two benchmarks, run side by side in one process each::

    python benchmarks/bench_sae.py quality   # -> benchmarks/results/sae_quality.md
    python benchmarks/bench_sae.py speed     # -> benchmarks/results/sae.md

``quality``: the issue's synthetic problem (64 unit atoms in 128 dimensions,
each sample a non-negative combination of 3 of them, 20000 samples) with the
estimators' default training settings: reconstruction R^2, recovery of the
true atoms (mean best cosine per true atom) and stability (Hungarian matched
cosine between two fits) under four protocols that separate what the shared
k-means initialisation contributes from what the data and the training seed
do.

``speed``: samples/s of training and final R^2 of skconcepts' ``TopKSAE`` /
``ArchetypalSAE`` against overcomplete's ``TopKSAE`` / ``RATopKSAE`` +
``train_sae`` on the same data and settings (batch 1024, d = 256, 1024
concepts, top_k = 16, same epochs, Adam at the same learning rate, the same
candidate points for both archetypal models), R^2 computed the same way on
both sides; plus the GFLOP/s each reaches against the machine's measured
matrix-multiply rate.
"""

import argparse
import os
import sys
import time
import types

import numpy as np
import torch

from skconcepts.datasets import make_sparse_atoms
from skconcepts.metrics import atom_recovery, dictionary_stability, reconstruction_r2
from skconcepts.sae import ArchetypalSAE, TopKSAE

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


# --------------------------------------------------------------------------
# quality and stability


def _fit(cls, X, **params):
    t0 = time.perf_counter()
    est = cls(n_concepts=64, top_k=3, **params).fit(X)
    return est, time.perf_counter() - t0


def quality(n_samples=20000, n_jobs=2):
    from joblib import Parallel, delayed

    X, atoms, _ = make_sparse_atoms(n_samples, 128, 64, 3, random_state=0)
    perm = np.random.RandomState(0).permutation(n_samples)
    H1, H2 = X[np.sort(perm[: n_samples // 2])], X[np.sort(perm[n_samples // 2 :])]
    A, T = ArchetypalSAE, TopKSAE
    jobs = {
        # single fits on all the data
        "A_full": (A, X, dict(random_state=0)),
        "T_full": (T, X, dict(random_state=0)),
        "A0_full": (A, X, dict(random_state=0, relaxation=0.0)),
        # (a) different halves, different seeds (k-means seed too)
        "A_h1": (A, H1, dict(random_state=1)),
        "A_h2": (A, H2, dict(random_state=2)),
        "A0_h1": (A, H1, dict(random_state=1, relaxation=0.0)),
        "A0_h2": (A, H2, dict(random_state=2, relaxation=0.0)),
        "T_h1": (T, H1, dict(random_state=1)),
        "T_h2": (T, H2, dict(random_state=2)),
        # (b) different halves, shared k-means seed
        "A_h1_k0": (A, H1, dict(random_state=1, kmeans_random_state=0)),
        "A_h2_k0": (A, H2, dict(random_state=2, kmeans_random_state=0)),
        # (c) same data, shared k-means seed, different training seeds
        "A_f1_k0": (A, X, dict(random_state=1, kmeans_random_state=0)),
        "A_f2_k0": (A, X, dict(random_state=2, kmeans_random_state=0)),
        # (d) same data, different seeds (k-means seed too)
        "A_f1": (A, X, dict(random_state=1)),
        "A_f2": (A, X, dict(random_state=2)),
        "T_f1": (T, X, dict(random_state=1)),
        "T_f2": (T, X, dict(random_state=2)),
    }

    def run(name, cls, data, params):
        torch.set_num_threads(1)
        est, secs = _fit(cls, data, **params)
        return name, est, secs

    t0 = time.perf_counter()
    out = Parallel(n_jobs=n_jobs)(
        delayed(run)(name, *job) for name, job in jobs.items()
    )
    wall = time.perf_counter() - t0
    fits = {name: (est, secs) for name, est, secs in out}

    lines = [
        "# Sparse autoencoders on known atoms: quality and stability",
        "",
        f"Data: `make_sparse_atoms({n_samples}, 128, 64, 3, random_state=0)` "
        "(64 unit atoms in 128 dimensions, 3 per sample, magnitudes U[0.5, 1.5]). "
        "`n_concepts=64, top_k=3`, every other parameter at its default. "
        "Recovery = mean over true atoms of the best cosine with a learned atom.",
        "",
        "| model | R² | recovery | atoms >= 0.9 | L0 | dead | fit time (s, 1 thread) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label in [
        ("A_full", "ArchetypalSAE (default relaxation)"),
        ("A0_full", "ArchetypalSAE relaxation=0 (strict A-SAE)"),
        ("T_full", "TopKSAE"),
    ]:
        est, secs = fits[name]
        D = est.components_
        lines.append(
            f"| {label} | {est.reconstruction_r2_:.4f} | {atom_recovery(atoms, D):.4f}"
            f" | {atom_recovery(atoms, D, threshold=0.9):.3f}"
            f" | {est.mean_l0_:.2f} | {est.dead_fraction_:.3f} | {secs:.1f} |"
        )

    def stab(a, b):
        return dictionary_stability(fits[a][0].components_, fits[b][0].components_)

    lines += [
        "",
        "Stability: Hungarian matched cosine between the dictionaries of two fits.",
        "",
        "| protocol | ArchetypalSAE | ArchetypalSAE relaxation=0 | TopKSAE |",
        "|---|---|---|---|",
        f"| (a) different halves, different seeds (training and k-means) "
        f"| {stab('A_h1', 'A_h2'):.4f} | {stab('A0_h1', 'A0_h2'):.4f} "
        f"| {stab('T_h1', 'T_h2'):.4f} |",
        f"| (b) different halves, shared k-means seed "
        f"| {stab('A_h1_k0', 'A_h2_k0'):.4f} | | |",
        f"| (c) same data, shared k-means seed, different training seeds "
        f"| {stab('A_f1_k0', 'A_f2_k0'):.4f} | | |",
        f"| (d) same data, different seeds (training and k-means) "
        f"| {stab('A_f1', 'A_f2'):.4f} | | {stab('T_f1', 'T_f2'):.4f} |",
        "",
        "Recovery of the true atoms by the fits of protocol (a): "
        f"ArchetypalSAE {atom_recovery(atoms, fits['A_h1'][0].components_):.4f} / "
        f"{atom_recovery(atoms, fits['A_h2'][0].components_):.4f}, "
        f"TopKSAE {atom_recovery(atoms, fits['T_h1'][0].components_):.4f} / "
        f"{atom_recovery(atoms, fits['T_h2'][0].components_):.4f}.",
        "",
        f"{len(jobs)} fits in {wall:.0f} s wall ({n_jobs} processes, 1 thread each). "
        "Command: `python benchmarks/bench_sae.py quality`.",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# speed against overcomplete


def _import_overcomplete():
    """Import overcomplete with the stand-ins described in shared/peers.md."""
    # stand-ins for modules overcomplete imports but its SAE code never uses
    if "torchvision" not in sys.modules:
        tv = types.ModuleType("torchvision")
        tv.transforms = types.ModuleType("torchvision.transforms")
        sys.modules["torchvision"] = tv
        sys.modules["torchvision.transforms"] = tv.transforms
    try:
        import skimage.measure  # noqa: F401
    except ImportError:
        sk = types.ModuleType("skimage")
        sk.measure = types.ModuleType("skimage.measure")
        sys.modules["skimage"] = sk
        sys.modules["skimage.measure"] = sk.measure
    import matplotlib
    from matplotlib import cm

    if not hasattr(cm, "get_cmap"):
        cm.get_cmap = matplotlib.colormaps.get_cmap
    import overcomplete

    return overcomplete


def _matmul_gflops(dtype=torch.float32, n=2048, repeat=5):
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    a @ b
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def _r2_global(X, X_hat):
    """overcomplete's R^2 (variance around one global scalar mean)."""
    X = np.asarray(X, dtype=np.float64)
    return 1.0 - np.mean((X - X_hat) ** 2) / np.mean((X - X.mean()) ** 2)


def _skorch_samples_per_s(X, k, top_k, bs, lr, epochs=1):
    """Throughput of the same TopK module trained through skorch's NeuralNet.

    skorch feeds batches through a torch ``DataLoader`` over its ``Dataset``
    (one ``__getitem__`` per sample, then collation): the cost the engine
    avoids by gathering batches from tensors already on the device.
    """
    from skorch import NeuralNet

    est = TopKSAE(k, top_k, max_epochs=1, batch_size=bs, random_state=0)
    est.fit(X[:bs])
    module = est._session.module

    class Recon(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.sae = module

        def forward(self, x):
            return self.sae(x).x_hat

    net = NeuralNet(
        Recon,
        criterion=torch.nn.MSELoss,
        optimizer=torch.optim.Adam,
        lr=lr,
        max_epochs=epochs,
        batch_size=bs,
        train_split=None,
        iterator_train__shuffle=True,
        verbose=0,
    )
    t0 = time.perf_counter()
    net.fit(X, X)
    return X.shape[0] * epochs / (time.perf_counter() - t0)


def speed(n_samples=16384, epochs=5, threads=2):
    torch.set_num_threads(threads)
    d, k, top_k, bs, lr = 256, 1024, 16, 1024, 5e-4
    X, _, _ = make_sparse_atoms(n_samples, d, 2048, 16, random_state=0)
    X = X.astype(np.float32)
    Xt = torch.from_numpy(X)
    oc = _import_overcomplete()
    from overcomplete.sae import RATopKSAE as OcRA
    from overcomplete.sae import TopKSAE as OcTopK
    from overcomplete.sae import train_sae
    from overcomplete.sae.losses import top_k_auxiliary_loss
    from torch.utils.data import DataLoader, TensorDataset

    steps = epochs * int(np.ceil(n_samples / bs))
    # skconcepts' candidates (k-means on 8192 rows), shared with overcomplete
    probe = ArchetypalSAE(k, top_k, max_epochs=1, random_state=0, device="cpu")
    probe.fit(X[:8192])
    rows = []

    def ours(cls, **kw):
        est = cls(
            k,
            top_k,
            max_epochs=epochs,
            batch_size=bs,
            learning_rate=lr,
            random_state=0,
            device="cpu",
            **kw,
        )
        t0 = time.perf_counter()
        est.fit(X)
        train_s = sum(h["time"] for h in est.history_)
        total = time.perf_counter() - t0
        X_hat = est.inverse_transform(est.transform(X))
        return train_s, total, X_hat

    def theirs(model):
        torch.manual_seed(0)
        loader = DataLoader(TensorDataset(Xt), batch_size=bs, shuffle=True)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        import contextlib
        import io

        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            train_sae(
                model,
                loader,
                top_k_auxiliary_loss,
                opt,
                nb_epochs=epochs,
                monitoring=0,
            )
        train_s = time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            X_hat = np.concatenate(
                [model(Xt[i : i + bs])[2].numpy() for i in range(0, n_samples, bs)]
            )
        return train_s, train_s, X_hat

    # FLOPs of one training sample, as each implementation computes it
    dense_flops = 2 * d * k * 5  # encoder fwd + bwd(W) + decoder fwd + 2 bwd
    ours_flops = 2 * d * k + 2 * d * top_k * 5  # dense encoder, sparse rest
    arch_flops = 2 * k * k * d * 2 / bs  # D = W C and its gradient, per sample
    peak = _matmul_gflops()

    cases = [
        ("TopK", "skconcepts TopKSAE", lambda: ours(TopKSAE), ours_flops),
        (
            "TopK",
            "overcomplete TopKSAE + train_sae",
            lambda: theirs(OcTopK(d, k, top_k=top_k)),
            dense_flops,
        ),
        (
            "RA",
            "skconcepts ArchetypalSAE",
            lambda: ours(ArchetypalSAE, candidates=probe.candidates_ + probe.pre_bias_),
            ours_flops + arch_flops,
        ),
        (
            "RA",
            "overcomplete RATopKSAE + train_sae",
            lambda: theirs(
                OcRA(d, k, points=torch.from_numpy(probe.candidates_), top_k=top_k)
            ),
            dense_flops + arch_flops,
        ),
    ]
    for family, name, fn, flops in cases:
        train_s, total, X_hat = fn()
        print(f"{name}: {n_samples * epochs / train_s:,.0f} samples/s", file=sys.stderr)
        sps = n_samples * epochs / train_s
        dense = dense_flops + (arch_flops if family == "RA" else 0)
        rows.append(
            (
                family,
                name,
                sps,
                reconstruction_r2(X, X_hat),
                _r2_global(X, X_hat),
                sps * flops / 1e9,
                sps * dense / 1e9,
                total,
            )
        )
    skorch_sps = _skorch_samples_per_s(X, k, top_k, bs, lr)
    lines = [
        "# Sparse autoencoder training speed: skconcepts vs overcomplete",
        "",
        f"Data: `make_sparse_atoms({n_samples}, {d}, 2048, 16, random_state=0)` "
        f"(float32). Settings on both sides: batch {bs}, d = {d}, {k} concepts, "
        f"top_k = {top_k}, {epochs} epochs ({steps} steps), Adam lr {lr}, AuxK "
        "loss, CPU, "
        f"{threads} threads. overcomplete {oc.__version__} with `train_sae("
        "monitoring=0)` and a shuffled `DataLoader`; its archetypal model gets "
        "the same candidate points as ours. R² per feature (scikit-learn's "
        "definition) and overcomplete's global-mean R², both on the training "
        "data after training. GFLOP/s: the arithmetic each implementation "
        "performs per sample times samples/s; the machine's measured float32 "
        f"matmul rate is {peak:.0f} GFLOP/s.",
        "",
        "| model | samples/s | R² | R² (global mean) | GFLOP/s performed"
        " | % of matmul rate | dense-equivalent GFLOP/s | speed ratio"
        " | whole fit (s) | whole-fit ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for family in ("TopK", "RA"):
        fam = [r for r in rows if r[0] == family]
        ref, ref_total = fam[1][2], fam[1][7]
        for _, name, sps, r2, r2g, gf, gfd, total in fam:
            lines.append(
                f"| {name} | {sps:,.0f} | {r2:.4f} | {r2g:.4f} | {gf:.1f} "
                f"| {100 * gf / peak:.0f}% | {gfd:.1f} | {sps / ref:.2f}x "
                f"| {total:.1f} | {ref_total / total:.2f}x |"
            )
    lines += [
        "",
        "Speed ratio: samples/s relative to overcomplete's model of the same "
        "family. GFLOP/s performed counts what each implementation computes "
        "(ours: a dense encoder product, then sparse products over the "
        f"top_k = {top_k} kept codes); dense-equivalent GFLOP/s counts the "
        "dense formulation's arithmetic for both, i.e. it is proportional to "
        "samples/s. samples/s counts the training epochs (ours: the epoch "
        "times of `history_`; overcomplete: its whole `train_sae` call); whole "
        "fit adds, for ours, everything `fit` does besides (validation, "
        "initialisation, k-means candidates, export of the NumPy state), and "
        "its ratio compares the whole `fit` with overcomplete's `train_sae`.",
        "",
        f"The same TopK module trained through skorch's `NeuralNet` (its "
        f"`DataLoader`, one `__getitem__` per sample then collation, 1 epoch): "
        f"{skorch_sps:,.0f} samples/s, "
        f"{skorch_sps / rows[0][2]:.2f}x the engine's.",
        "",
        "Command: `python benchmarks/bench_sae.py speed`.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["quality", "speed"])
    parser.add_argument("--n-samples", type=int, default=None)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.which == "quality":
        kw = {} if args.n_samples is None else {"n_samples": args.n_samples}
        text, out = quality(**kw), "sae_quality.md"
    else:
        kw = {} if args.n_samples is None else {"n_samples": args.n_samples}
        text, out = speed(**kw), "sae.md"
    print(text)
    if not args.no_write:
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, out), "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
