"""The one k-means of skconcepts: seeded k-means++ then Lloyd, in torch.

Used by the archetypal SAE (candidate points, :mod:`skconcepts.sae`) and by
the Semi- / Convex-NMF initialisation (:mod:`skconcepts.decomposition`).
Every random draw comes from a CPU ``torch.Generator`` (the global torch RNG
is never touched), so a seed gives the same centroids on every device. The
distance blocks of the assignment step hold at most scikit-learn's
``working_memory`` (``sklearn.get_config()["working_memory"]``, MiB).
"""

import math

import torch

from ._backend import working_memory_bytes

__all__ = ["assign", "kmeans", "kmeans_plusplus"]


def _sq_dists(X, C, C_sq):
    # ||x - c||^2 up to the constant ||x||^2
    return C_sq.unsqueeze(0) - 2.0 * (X @ C.t())


def assign(X, C, chunk=None, x_sq=None):
    """Nearest centroid of every row and its squared distance.

    The distance blocks hold ``chunk`` rows (None: as many as fit
    scikit-learn's ``working_memory``).
    """
    if chunk is None:
        chunk = _chunk_rows(C.shape[0], X.element_size())
    C_sq = (C * C).sum(1)
    labels = torch.empty(X.shape[0], dtype=torch.long, device=X.device)
    best = torch.empty(X.shape[0], dtype=X.dtype, device=X.device)
    for s in range(0, X.shape[0], chunk):
        d = _sq_dists(X[s : s + chunk], C, C_sq)
        b, lab = d.min(dim=1)
        labels[s : s + chunk] = lab
        best[s : s + chunk] = b
    best += (X * X).sum(1) if x_sq is None else x_sq
    return labels, best.clamp_min(0)


@torch.no_grad()
def kmeans_plusplus(X, n_clusters, generator):
    """k-means++ seeding (D^2 sampling); the uniforms come from ``generator``."""
    n = X.shape[0]
    u = torch.rand(n_clusters, generator=generator, dtype=torch.float64).to(X.device)
    first = int(torch.randint(n, (1,), generator=generator))
    centers = [first]
    x_sq = (X * X).sum(1)
    # 2.0 * (X @ c): scaling the product, not X (an X-sized temporary per
    # centre); bit-identical, the factor 2 being exact
    dist = (x_sq - 2.0 * (X @ X[first]) + x_sq[first]).clamp_min(0)
    for i in range(1, n_clusters):
        cum = torch.cumsum(dist.double(), 0)
        j = torch.searchsorted(cum, (u[i] * cum[-1]).reshape(1)).clamp_max(n - 1)
        c = X[j[0]]
        centers.append(j)
        dist = torch.minimum(dist, (x_sq - 2.0 * (X @ c) + (c * c).sum()).clamp_min(0))
    idx = torch.cat([torch.as_tensor([first], device=X.device)] + centers[1:])
    return X[idx].clone()


def _chunk_rows(n_clusters, itemsize):
    """Rows of a distance block that fits ``working_memory``."""
    return max(1, working_memory_bytes() // max(1, n_clusters * itemsize))


@torch.no_grad()
def kmeans(X, n_clusters, generator, n_iter=30, tol=1e-6, *, return_labels=False):
    """Seeded k-means (k-means++ seeding, then Lloyd) on ``X``'s device.

    The seeding runs on at most ``max(4096, 8 n_clusters)`` rows; an empty
    cluster is re-seeded at the point farthest from its centroid. All
    randomness comes from ``generator`` (a CPU generator). Lloyd stops after
    ``n_iter`` iterations or when the inertia improves by at most ``tol``
    (relative; ``tol=0`` runs until it stops decreasing).

    Parameters
    ----------
    X : tensor of shape (n, d)
    n_clusters : int
        Clusters (at most ``n``).
    generator : torch.Generator
        A CPU generator.
    n_iter : int, default=30
    tol : float, default=1e-6
    return_labels : bool, default=False
        Also return the cluster of every row (for the last centroids).

    Returns
    -------
    centroids : tensor of shape (min(n_clusters, n), d)
    labels : tensor of shape (n,), only with ``return_labels``
    """
    n = X.shape[0]
    n_clusters = min(int(n_clusters), n)
    n_seed = min(n, max(4096, 8 * n_clusters))
    rows = torch.randperm(n, generator=generator)[:n_seed].to(X.device)
    C = kmeans_plusplus(X[rows], n_clusters, generator)
    chunk = _chunk_rows(n_clusters, X.element_size())
    prev = math.inf
    x_sq = (X * X).sum(1)  # once, not an X-sized temporary per iteration
    for _ in range(n_iter):
        labels, dist = assign(X, C, chunk, x_sq)
        sums = torch.zeros_like(C).index_add_(0, labels, X)
        counts = torch.bincount(labels, minlength=n_clusters).to(X.dtype)
        empty = counts == 0
        C = sums / counts.clamp_min(1).unsqueeze(1)
        if bool(empty.any()):
            far = dist.topk(int(empty.sum())).indices
            C[empty] = X[far]
        inertia = float(dist.sum())
        # (the first iteration has no previous inertia: inf - x <= tol * inf
        # would stop every run after one Lloyd step)
        if prev < math.inf and prev - inertia <= tol * max(prev, 1e-30):
            break
        prev = inertia
    if return_labels:
        return C, assign(X, C, chunk, x_sq)[0]
    return C
