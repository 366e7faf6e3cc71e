"""Differentiable NMF codes (``skconcepts.inspection.nmf_codes_torch``).

Two measurements, printed as text:

1. The backward pass against central finite differences (``eps = 1e-6``)
   of one concept's summed map through the small CNN of
   ``tests/test_diffnmf.py`` (conv 1 -> 4, 3 x 3, ReLU; NMF with 3 concepts
   on the 5 x 5 feature map), for 5 network seeds and every concept: the
   relative error of the KKT gradient and of the naive one (the
   unconstrained least-squares derivative on every entry).
2. The forward pass on 20 000 rows (k = 10 and an ill-conditioned k = 30)
   against SciPy's exact ``nnls`` (500 rows) and against
   ``NMFConcepts.transform``, and its cost relative to ``transform``
   (forward; forward + backward), interleaved, median of 3.

Run: ``python benchmarks/bench_diffnmf.py`` (about two minutes on one
thread of a loaded 2-core machine).
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))


def _errors(torch, nmf_codes_torch, naive_codes, nmf, features, x, j):
    """Relative errors of the KKT and the naive gradient of concept ``j``."""
    W = torch.tensor(nmf._raw_components())
    G = W @ W.T
    scale = torch.tensor(nmf._code_scale)

    def f(inp):
        return nmf_codes_torch(nmf, features(inp), channel_axis=1)[..., j].sum()

    def f_naive(inp):
        Fi = features(inp).movedim(1, -1).reshape(-1, 4)
        c = naive_codes(W, G, scale, 0.0, Fi, nmf_codes_torch(nmf, Fi))
        return c[:, j].sum()

    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(xg), xg)
    (gn,) = torch.autograd.grad(f_naive(xg), xg)
    fd = torch.zeros_like(x)
    flat = x.reshape(-1)
    with torch.no_grad():
        for i in range(flat.numel()):
            xp, xm = flat.clone(), flat.clone()
            xp[i] += 1e-6
            xm[i] -= 1e-6
            fd.view(-1)[i] = (f(xp.view_as(x)) - f(xm.view_as(x))) / 2e-6
    return float((g - fd).norm() / fd.norm()), float((gn - fd).norm() / fd.norm())


def finite_differences(torch, NMFConcepts, nmf_codes_torch, positions_to_rows):
    from test_diffnmf import _naive_codes, _tiny_cnn

    for seed in range(5):
        features, x = _tiny_cnn(seed)
        rows, _ = positions_to_rows(features(x).detach().numpy(), channel_axis=1)
        nmf = NMFConcepts(3, device="cpu", random_state=0).fit(rows)
        errs, naive_errs = zip(
            *[
                _errors(torch, nmf_codes_torch, _naive_codes, nmf, features, x, j)
                for j in range(3)
            ],
            strict=True,
        )
        codes = nmf_codes_torch(nmf, features(x), channel_axis=1)
        print(
            f"seed {seed}: zero codes {float((codes == 0).double().mean()):.2f}  "
            f"KKT gradient rel. error max {max(errs):.1e}  naive "
            f"{min(naive_errs):.2f}-{max(naive_errs):.2f}"
        )


def forward_cost(torch, NMFConcepts, nmf_codes_torch):
    from scipy.optimize import nnls

    rng = np.random.RandomState(1)
    for k, d in [(10, 64), (30, 64)]:
        W_true = rng.rand(k, d)
        X = rng.rand(20000, k) ** 3 @ W_true + 0.01 * rng.rand(20000, d)
        nmf = NMFConcepts(k, max_iter=20, device="cpu", random_state=0)
        nmf.fit(X[:2000])
        W = nmf._raw_components()
        ref = np.array([nnls(W.T, r)[0] for r in X[:500]]) * nmf._code_scale
        times = {"transform": [], "forward": [], "forward+backward": []}
        for _ in range(3):
            t0 = time.perf_counter()
            U_t = nmf.transform(X)
            times["transform"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            U = nmf_codes_torch(nmf, torch.tensor(X))
            times["forward"].append(time.perf_counter() - t0)
            A = torch.tensor(X, requires_grad=True)
            t0 = time.perf_counter()
            nmf_codes_torch(nmf, A)[:, 0].sum().backward()
            times["forward+backward"].append(time.perf_counter() - t0)
        med = {name: float(np.median(v)) for name, v in times.items()}
        U = U.numpy()
        print(
            f"k={k}: cond(G) {np.linalg.cond(W @ W.T):.1e}, zero codes "
            f"{float((U == 0).mean()):.2f}, max|U - scipy|/max "
            f"{np.abs(U[:500] - ref).max() / ref.max():.1e}, transform (tol 1e-4) "
            f"vs scipy {np.abs(U_t[:500] - ref).max() / ref.max():.1e}; "
            + ", ".join(
                f"{name} {v:.2f}s ({v / med['transform']:.1f}x)"
                for name, v in med.items()
            )
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    from skconcepts import NMFConcepts
    from skconcepts.inspection import nmf_codes_torch, positions_to_rows

    torch.set_num_threads(args.threads)
    print("load average", os.getloadavg())
    finite_differences(torch, NMFConcepts, nmf_codes_torch, positions_to_rows)
    forward_cost(torch, NMFConcepts, nmf_codes_torch)
    print("load average", os.getloadavg())


if __name__ == "__main__":
    main()
