"""Torch solvers shared by every estimator of the NMF family.

Notation (rows are samples): ``X ~ U W`` with ``X`` of shape ``(n, d)``, codes
``U`` of shape ``(n, k)`` and concepts ``W`` of shape ``(k, d)``. Codes are kept
transposed, ``Ut = U.T`` of shape ``(k, n)``, so that one code column is a
contiguous row of ``Ut``.

Every solver here is a function of two small sufficient statistics per
iteration, ``UtU = U^T U`` (``k x k``) and ``UtX = U^T X`` (``k x d``), plus a
code update that is row-independent. One pass over the rows of ``X`` per
iteration computes both, so the same loop runs on a tensor held on the device
or streams a memmap from disk in row batches (:class:`Rows`).

The scikit-learn conventions are kept: the objective is

    0.5 ||X - U W||_F^2 + l1_U |U|_1 + 0.5 l2_U ||U||_F^2
                        + l1_W |W|_1 + 0.5 l2_W ||W||_F^2,

HALS is cyclic coordinate descent by code column / concept row (the same
update as scikit-learn's ``solver="cd"``), and the stopping rule of HALS is
scikit-learn's projected-gradient "violation" relative to the first iteration.
"""

import math

import numpy as np

from .._backend import (
    TEMP_MEMORY_SHARE,
    _torch,
    gen_batches_idx,
    to_tensor,
    working_memory_bytes,
)
from .._faults import deferred_interrupt
from .._io import is_on_disk

# Smallest denominator of a multiplicative update (scikit-learn's EPSILON).
_EPS = float(np.finfo(np.float32).eps)


#: The one on-disk check of the package (:func:`skconcepts._io.is_on_disk`),
#: under the name the NMF family uses.
is_memmap = is_on_disk


class Rows:
    """Row access to ``X``: one tensor on the device, or batches read on demand.

    With ``batch_size=None`` the whole array is moved to the device once (no
    copy for a writeable C-contiguous array on the CPU). Otherwise each pass
    reads ``batch_size`` rows at a time, so a memmap larger than memory is
    never copied whole.
    """

    def __init__(self, X, device, dtype, batch_size=None):
        self.n, self.d = X.shape
        self.device, self.dtype = device, dtype
        if batch_size is None or batch_size >= self.n:
            self._tensor = to_tensor(X, device, dtype)
            self._array = None
        else:
            self._tensor = None
            self._array = X
        self.batch_size = batch_size
        self._buf = None

    @property
    def streamed(self):
        return self._tensor is None

    def batches(self, max_rows=None):
        """Yield ``(slice, tensor)`` over the rows.

        ``max_rows`` splits a device-held tensor into views of at most that many
        rows (used by passes that make a float64 temporary per batch).
        """
        if self._tensor is not None:
            for sl in gen_batches_idx(self.n, max_rows):
                yield sl, self._tensor[sl]
            return
        # one reusable host buffer per Rows: repeated batch-sized allocations
        # fragment the heap and grow the resident memory
        if self._buf is None:
            self._buf = np.empty(
                (min(self.batch_size, self.n), self.d), dtype=self._array.dtype
            )
        for sl in gen_batches_idx(self.n, self.batch_size):
            view = self._buf[: sl.stop - sl.start]
            np.copyto(view, self._array[sl])
            yield sl, to_tensor(view, self.device, self.dtype)

    @property
    def _chunk(self):
        # rows per float64 temporary: 1/16 of working_memory (64 MiB default)
        return max(1, working_memory_bytes(TEMP_MEMORY_SHARE) // (8 * max(1, self.d)))

    def take(self, idx):
        """Rows ``idx`` (a 1-D integer tensor or array) as a tensor, in order."""
        torch = _torch()
        if self._tensor is not None:
            return self._tensor[torch.as_tensor(idx, device=self.device)]
        idx = np.asarray(torch.as_tensor(idx).cpu(), dtype=np.intp)
        order = np.argsort(idx, kind="stable")
        out = np.empty((idx.size, self.d), dtype=self._array.dtype)
        out[order] = self._array[idx[order]]
        return to_tensor(out, self.device, self.dtype)

    def stats(self, centred=False):
        """``(||X||_F^2, mean(X))`` as Python floats, in one pass.

        With ``centred``, also ``||X - mean_rows(X)||_F^2`` (the total sum of
        squares of an R^2), from float64 per-feature sums.
        """
        torch = _torch()
        sq = torch.zeros((), dtype=torch.float64, device=self.device)
        s1 = torch.zeros(self.d, dtype=torch.float64, device=self.device)
        for _, xb in self.batches(self._chunk):
            sq += torch.linalg.vector_norm(xb).double() ** 2
            s1 += xb.sum(0, dtype=torch.float64)
        sq, mean = float(sq), float(s1.sum()) / max(1, self.n * self.d)
        if not centred:
            return sq, mean
        sst = sq - float((s1 * s1).sum()) / max(1, self.n)
        return sq, mean, max(sst, 0.0)

    def matmul(self, M):
        """``X @ M`` for ``M`` of shape ``(d, l)``; returns ``(n, l)``."""
        torch = _torch()
        out = torch.empty((self.n, M.shape[1]), dtype=self.dtype, device=self.device)
        for sl, xb in self.batches():
            torch.mm(xb, M, out=out[sl])
        return out

    def rmatmul(self, Q):
        """``Q^T @ X`` for ``Q`` of shape ``(n, l)``; returns ``(l, d)``."""
        torch = _torch()
        out = torch.zeros((Q.shape[1], self.d), dtype=self.dtype, device=self.device)
        for sl, xb in self.batches():
            out.addmm_(Q[sl].T, xb)
        return out

    def residual_stats(self, Ut, W):
        """``(||X - U W||_F^2, ||X - mean(X)||_F^2)`` in one pass.

        The residual is computed itself (no cancellation); the total sum of
        squares comes from float64 per-feature sums.
        """
        torch = _torch()
        tot = torch.zeros((), dtype=torch.float64, device=self.device)
        sq = torch.zeros((), dtype=torch.float64, device=self.device)
        s1 = torch.zeros(self.d, dtype=torch.float64, device=self.device)
        r = None
        for sl, xb in self.batches(self._chunk):
            if r is None:
                r = torch.empty_like(xb)
            m = sl.stop - sl.start
            torch.addmm(xb, Ut[:, sl].T, W, alpha=-1, out=r[:m])
            tot += torch.linalg.vector_norm(r[:m]).double() ** 2
            sq += torch.linalg.vector_norm(xb).double() ** 2
            s1 += xb.sum(0, dtype=torch.float64)
        sst = float(sq) - float((s1 * s1).sum()) / max(1, self.n)
        return float(tot), max(sst, 0.0)


# --------------------------------------------------------------------- SVD


def _orthonormalize(Y):
    """Orthonormal basis of the columns of ``Y`` (``n x l``), in place.

    CholeskyQR2 (two rounds of ``Y <- Y R^{-1}`` with ``R^T R = Y^T Y``),
    applied in row blocks so that no second ``n x l`` matrix is allocated;
    falls back to a Householder QR when ``Y`` is (numerically) rank
    deficient.
    """
    torch = _torch()
    # row blocks of 1/16 of working_memory (each row's product is independent
    # of the blocking)
    block = working_memory_bytes(TEMP_MEMORY_SHARE)
    step = max(1, block // (Y.element_size() * max(1, Y.shape[1])))
    for _ in range(2):
        L, info = torch.linalg.cholesky_ex(Y.T @ Y)
        if int(info) != 0 or not bool(torch.isfinite(L).all()):
            return torch.linalg.qr(Y).Q
        Rinv = torch.linalg.solve_triangular(
            L.T, torch.eye(L.shape[0], dtype=L.dtype, device=L.device), upper=True
        )
        for start in range(0, Y.shape[0], step):
            blk = Y[start : start + step]
            blk.copy_(blk @ Rinv)
    return Y


def randomized_svd(rows, k, gen, n_oversamples=10, n_iter="auto"):
    """Truncated SVD ``X ~ (Q M) diag(S) Vt`` of rank ``k`` in torch.

    Halko, Martinsson & Tropp's randomized range finder with orthonormalised
    power iterations (``n_iter="auto"``: 7 when ``k < 0.1 min(n, d)``, else 4,
    as scikit-learn's ``randomized_svd``). Every product with ``X`` is a pass
    over its rows, so a streamed memmap is never loaded whole, and the left
    singular vectors are returned factored as ``Q @ M`` (``Q`` is
    ``n x (k + n_oversamples)``, ``M`` is small) so that no further ``n x k``
    matrix is formed. The Gaussian test matrix is drawn from ``gen`` (a CPU
    generator). Small in-memory matrices get an exact SVD.
    """
    torch = _torch()
    n, d = rows.n, rows.d
    ell = min(k + n_oversamples, n, d)
    if not rows.streamed and (min(n, d) <= 2 * ell or n * d <= 50_000):
        P, S, Vt = torch.linalg.svd(rows._tensor, full_matrices=False)
        eye = torch.eye(k, dtype=P.dtype, device=P.device)
        return P[:, :k], eye, S[:k], Vt[:k]
    if n_iter == "auto":
        n_iter = 7 if k < 0.1 * min(n, d) else 4
    omega = torch.randn((d, ell), generator=gen, dtype=torch.float64)
    Y = rows.matmul(omega.to(device=rows.device, dtype=rows.dtype))
    for _ in range(n_iter):
        Y = _orthonormalize(Y)
        Z = torch.linalg.qr(rows.rmatmul(Y).T).Q  # (d, ell)
        del Y
        Y = rows.matmul(Z)
    Q = _orthonormalize(Y)
    B = rows.rmatmul(Q)  # (ell, d)
    Pb, S, Vt = torch.linalg.svd(B, full_matrices=False)
    return Q, Pb[:, :k], S[:k], Vt[:k]


# -------------------------------------------------------------------- inits


def nmf_init(rows, k, init, gen, mean, eps=1e-6, svd_n_iter="auto"):
    """Initial ``(Ut, W)`` for NMF, as scikit-learn's ``_initialize_nmf``.

    ``init`` is one of ``"random"``, ``"nndsvd"``, ``"nndsvda"``,
    ``"nndsvdar"`` (already resolved from ``None``). Returns ``Ut`` of shape
    ``(k, n)`` and ``W`` of shape ``(k, d)`` on the device of ``rows``.
    """
    torch = _torch()
    n, d = rows.n, rows.d
    dev, dt = rows.device, rows.dtype
    if init == "random":
        avg = math.sqrt(mean / k)
        W = torch.randn((k, d), generator=gen, dtype=dt).abs_().mul_(avg)
        Ut = torch.randn((k, n), generator=gen, dtype=dt).abs_().mul_(avg)
        return Ut.to(dev), W.to(dev)
    Q, M, S, Vt = randomized_svd(rows, k, gen, n_iter=svd_n_iter)
    # Boutsidis & Gallopoulos: keep, for every singular pair, the sign whose
    # positive parts carry more mass (pairs with a flipped sign give the same).
    # Column by column, so that only one n-vector temporary exists at a time.
    tiny = torch.finfo(dt).tiny
    Vp, Vn = Vt.clamp(min=0), (-Vt).clamp(min=0)
    vp, vn = torch.linalg.norm(Vp, dim=1), torch.linalg.norm(Vn, dim=1)
    Ut = torch.empty((k, n), dtype=dt, device=dev)
    W = torch.empty((k, d), dtype=dt, device=dev)
    for j in range(k):
        x = Q @ M[:, j]  # left singular vector j
        if j == 0:  # the leading pair is non-negative: taken in absolute value
            torch.abs(x, out=Ut[0])
            Ut[0] *= math.sqrt(float(S[0]))
            W[0] = Vt[0].abs() * math.sqrt(float(S[0]))
            continue
        xp = x.clamp(min=0)
        xp_n = float(torch.linalg.norm(xp))
        xn_n = float(torch.linalg.norm(x.clamp(max=0)))
        mp, mn = xp_n * float(vp[j]), xn_n * float(vn[j])
        if mp > mn:
            u, un, v, vnrm, sigma = xp, xp_n, Vp[j], float(vp[j]), mp
        else:
            u, un, v, vnrm, sigma = (-x).clamp(min=0), xn_n, Vn[j], float(vn[j]), mn
        lbd = math.sqrt(float(S[j]) * sigma)
        torch.mul(u, lbd / max(un, tiny), out=Ut[j])
        W[j] = v * (lbd / max(vnrm, tiny))
    del Q
    Ut.masked_fill_(Ut < eps, 0)
    W.masked_fill_(W < eps, 0)
    if init == "nndsvda":
        Ut.masked_fill_(Ut == 0, mean)
        W.masked_fill_(W == 0, mean)
    elif init == "nndsvdar":
        for M in (Ut, W):
            mask = M == 0
            cnt = int(mask.sum())
            noise = torch.randn(cnt, generator=gen, dtype=torch.float64)
            M[mask] = (mean * noise / 100).abs().to(dev, dt)
    return Ut, W


# ------------------------------------------------------------ core updates


def hals_sweep(V, B, G, nonneg=True, l1=0.0, n_sweeps=1, inner_tol=None):
    """Cyclic HALS / coordinate-descent passes over the rows of ``V``.

    Minimises ``0.5 tr(V^T G V) - tr(V^T B)`` row by row in place: row ``t``
    becomes ``P(V[t] + (B[t] - G[t] @ V) / G[t, t])`` with ``P`` the projection
    on the non-negative orthant (``nonneg``), or a soft-threshold by ``l1``
    for signed rows. For non-negative rows the L1 term is expected to be
    already subtracted from ``B`` (as scikit-learn does). Rows whose
    curvature ``G[t, t]`` is zero (a dead atom) are left alone.

    ``n_sweeps`` passes are made; with ``inner_tol`` the passes stop once the
    squared change of a pass falls below ``inner_tol**2`` times that of the
    first pass (Gillis & Glineur's accelerated HALS).

    The same function updates codes (``V = Ut``, ``B = W X^T``, ``G = W W^T``)
    and concepts (``V = W``, ``B = U^T X``, ``G = U^T U``).
    """
    torch = _torch()
    # the k curvatures read once (one transfer); dead rows get 0 and are skipped
    hs = G.diagonal().tolist()
    inv = G.new_tensor([1.0 / h if h > 0 else 0.0 for h in hs])
    # Row t of the update is P(B[t]/h - (G[t]/h - e_t) @ V): two ops per row.
    Gm = G * inv[:, None]
    Gm.diagonal().sub_(1.0)
    Bn = B * inv[:, None]
    rows = [
        (t, v, b, g)
        for t, (v, b, g) in enumerate(
            zip(V.unbind(0), Bn.unbind(0), Gm.unbind(0), strict=True)
        )
        if hs[t] > 0
    ]
    thr = (l1 * inv).tolist() if (not nonneg and l1 > 0) else None
    Vt = V.T
    buf = torch.empty_like(V[0])
    first = None
    for _ in range(n_sweeps):
        prev = V.clone() if inner_tol is not None else None
        for t, v, b, g in rows:
            torch.addmv(b, Vt, g, alpha=-1, out=buf)
            if nonneg:
                torch.clamp(buf, min=0, out=v)
            elif thr is not None:
                v.copy_(torch.sign(buf) * (buf.abs() - thr[t]).clamp(min=0))
            else:
                v.copy_(buf)
        if prev is not None:
            delta = float(torch.sum((V - prev) ** 2))
            if first is None:
                first = delta
            elif delta <= inner_tol**2 * first:
                break


try:  # scikit-learn's compiled coordinate-descent sweep (its ``solver="cd"``)
    from sklearn.decomposition._cdnmf_fast import _update_cdnmf_fast
except ImportError:  # pragma: no cover - private name moved: torch sweeps
    _update_cdnmf_fast = None

#: Largest ``V`` (``k x m`` entries) swept by the compiled kernel on the CPU.
#: A torch sweep costs two dispatched operations per row (a few us each),
#: the compiled one about ``k`` ns per entry: on small factors (digits'
#: 16 x 64 concepts: 85 us for three sweeps against 655 us) the kernel
#: wins; the two are equal near 8192 entries (16 x 512, 32 x 256), above
#: which the BLAS matrix-vector products of torch win (16 x 1797: 1.1 ms
#: against 3.0 ms). Measured with one thread.
SMALL_SWEEP = 8192


def _small_cpu(V):
    return (
        _update_cdnmf_fast is not None
        and V.device.type == "cpu"
        and V.numel() <= SMALL_SWEEP
        and V.dtype in (_torch().float32, _torch().float64)
    )


def hals_sweep_small(V, B, G, n_sweeps=1, inner_tol=None):
    """:func:`hals_sweep` of a small non-negative ``V`` on the CPU, compiled.

    The same cyclic update (row ``t`` becomes
    ``max(V[t] + (B[t] - G[t] @ V) / G[t, t], 0)``, rows with
    ``G[t, t] == 0`` left alone) by scikit-learn's compiled coordinate
    descent sweep, without the per-row dispatch of torch; same stopping of
    the passes.
    """
    dt = V.numpy().dtype
    Vn = np.ascontiguousarray(V.numpy().T)  # (m, k): scikit-learn's layout
    Bn = B.numpy().T
    Gn = G.numpy()
    if Bn.dtype != dt or Gn.dtype != dt:  # pragma: no cover - same dtype here
        Bn, Gn = Bn.astype(dt), Gn.astype(dt)
    perm = np.arange(V.shape[0], dtype=np.intp)
    first = None
    prev = np.empty_like(Vn) if inner_tol is not None else None
    for _ in range(n_sweeps):
        if prev is not None:
            np.copyto(prev, Vn)
        _update_cdnmf_fast(Vn, Gn, Bn, perm)
        if prev is not None:
            prev -= Vn
            delta = float(np.vdot(prev, prev))
            if first is None:
                first = delta
            elif delta <= inner_tol**2 * first:
                break
    V.copy_(_torch().from_numpy(Vn.T))


def n_inner_codes(n_features, n_concepts, cheap=False):
    """HALS code sweeps per pass over the data.

    One pass costs two products with ``X`` (``~ 4 n d k`` flops), one code
    sweep ``~ 2 n k^2``: with ``d >> k`` a few extra sweeps are almost free
    and make every pass count (Gillis & Glineur's accelerated HALS). We take
    ``1 + d // (2 k)`` sweeps, at most 4, when sweeps are ``cheap``: the
    codes are swept by the compiled kernel (small blocks on the CPU, see
    :data:`SMALL_SWEEP`), or the concept update is an exact solve and the
    codes carry the convergence (Semi-NMF). A torch sweep is ``k``
    matrix-vector products, slower per flop than the matrix products of a
    pass: there we take
    ``1 + d // (4 k)`` (``benchmarks/bench_nmf.py``: 4 on the 20000 x 512
    matrix with k = 32; on digits, k = 16, 2 sweeps reach scikit-learn's
    error in a median of 54 passes over 5 seeds, worst 64; 3 sweeps in 56,
    worst 120, each pass costing one sweep more).
    """
    per = 2 if cheap else 4
    return int(min(4, 1 + n_features // (per * n_concepts)))


def compiled_codes(rows, n_concepts):
    """Whether the code blocks of ``rows`` go through the compiled sweep."""
    torch = _torch()
    m = rows.n if rows.batch_size is None else min(rows.batch_size, rows.n)
    return (
        _update_cdnmf_fast is not None
        and torch.device(rows.device).type == "cpu"
        and n_concepts * m <= SMALL_SWEEP
        and rows.dtype in (torch.float32, torch.float64)
    )


def projected_violation(V, B, G):
    """Sum of the absolute projected gradient of ``0.5 tr(V^T G V) - tr(V^T B)``.

    scikit-learn's convergence measure for ``solver="cd"`` (a tensor).
    """
    grad = G @ V - B
    return _torch().where(V > 0, grad, grad.clamp(max=0)).abs().sum().double()


def mu_step(V, B, G, l1=0.0):
    """One multiplicative update of ``V >= 0`` (Lee & Seung, scikit-learn's).

    ``V <- V * B / (G @ V + l1)`` with ``B`` the raw numerator (``W X^T`` or
    ``U^T X``) and ``G`` the Gram matrix with the L2 term on its diagonal.
    """
    denom = G @ V
    if l1 > 0:
        denom += l1
    denom.clamp_(min=_EPS)
    V.mul_(B / denom)


def gram_reg(M, l2):
    """``M M^T + l2 I``."""
    G = M @ M.T
    if l2 > 0:
        G.diagonal().add_(l2)
    return G


def nnls_codes(Xb, W, G, Ginv, l1=0.0, max_iter=200, tol=1e-4):
    """Non-negative codes of the rows of ``Xb`` with the concepts ``W`` fixed.

    Solves, for every row ``x`` independently,
    ``min_{u >= 0} 0.5 ||x - u W||^2 + l1 |u|_1 + 0.5 l2 ||u||^2`` (``G`` is
    ``W W^T + l2 I`` and ``Ginv`` its pseudo-inverse). Each row starts from its
    own clipped least-squares solution and runs HALS sweeps until its largest
    change is below ``tol`` times its largest code, or ``max_iter`` sweeps;
    rows that have converged are removed from the active set, so a row's code
    never depends on the other rows of the batch. Used by the ``transform`` of
    every NMF variant (``W`` may be signed) and by ``partial_fit``.

    Returns the codes transposed, ``(k, n_rows)``.
    """
    torch = _torch()
    B = W @ Xb.T
    if l1 > 0:
        B -= l1
    out = (Ginv @ B).clamp_(min=0)
    V, Ba = out, B
    active = None
    for _ in range(max_iter):
        prev = V.clone()
        hals_sweep(V, Ba, G)
        change = (V - prev).abs().amax(0)
        done = change <= tol * V.abs().amax(0)
        if bool(done.any()):
            if active is None:
                active = torch.arange(out.shape[1], device=out.device)
            out[:, active[done]] = V[:, done]
            keep = ~done
            if not bool(keep.any()):
                return out
            active = active[keep]
            V, Ba = V[:, keep].contiguous(), Ba[:, keep].contiguous()
    if active is not None:
        out[:, active] = V
    return out


def init_codes(rows, W, l1=0.0, l2=0.0):
    """Clipped least-squares codes ``max(pinv(W W^T) W x, 0)`` for every row."""
    torch = _torch()
    G = gram_reg(W, l2)
    Ginv = torch.linalg.pinv(G)
    Ut = torch.empty((W.shape[0], rows.n), dtype=rows.dtype, device=rows.device)
    for sl, xb in rows.batches():
        B = W @ xb.T
        if l1 > 0:
            B -= l1
        torch.mm(Ginv, B, out=Ut[:, sl])
    return Ut.clamp_(min=0)


def worst_rows(rows, Ut, W, m):
    """Indices of the ``m`` worst-reconstructed rows and their residual rows."""
    torch = _torch()
    res = torch.empty(rows.n, dtype=torch.float64, device=rows.device)
    for sl, xb in rows.batches(rows._chunk):
        r = torch.addmm(xb, Ut[:, sl].T, W, alpha=-1)
        res[sl] = (r.double() ** 2).sum(1)
    idx = torch.topk(res, min(m, rows.n)).indices
    R = rows.take(idx) - Ut[:, idx].T @ W
    return idx, R


# -------------------------------------------------------- concept updates


class ConceptUpdate:
    """Base of the concept (``W``) updates plugged into :func:`fit_alternating`."""

    has_violation = False

    def __init__(self, W):
        self.W = W

    def step(self, UtU, UtX, check=False):  # pragma: no cover - abstract
        """Update the concepts from ``U^T U`` and ``U^T X``.

        Returns the projected-gradient violation before the update when
        ``check`` (None for updates that have none).
        """
        raise NotImplementedError

    def dead(self, UtU):
        """Boolean mask of atoms whose codes or concept row are all zero."""
        return (UtU.diagonal() <= 0) | (self.W.abs().amax(1) <= 0)

    def reseed(self, dead, rows, Ut):
        """Re-seed dead atoms on the worst-reconstructed rows.

        The dead concept becomes the residual of the worst row (its positive
        part for non-negative concepts) and that row gets code 1 on it, so the
        objective decreases and the next code update spreads the atom.
        """
        torch = _torch()
        ts = torch.nonzero(dead).flatten().tolist()
        idx, R = worst_rows(rows, Ut, self.W, len(ts))
        for j, t in enumerate(ts[: len(idx)]):
            r = self._project(R[j])
            if not bool((r.abs() > 0).any()):
                r = rows.take(idx[j : j + 1])[0].abs()
            self.W[t] = r
            Ut[t].zero_()
            Ut[t, idx[j]] = 1.0

    def _project(self, r):
        return r.clamp(min=0)


class NonnegHALS(ConceptUpdate):
    """HALS update of ``W >= 0`` with up to ``n_inner`` sweeps."""

    has_violation = True

    def __init__(self, W, l1=0.0, l2=0.0, n_inner=1, inner_tol=0.1):
        super().__init__(W)
        self.l1, self.l2, self.n_inner, self.inner_tol = l1, l2, n_inner, inner_tol

    def step(self, UtU, UtX, check=False):
        G = UtU.clone()
        if self.l2 > 0:
            G.diagonal().add_(self.l2)
        B = UtX - self.l1 if self.l1 > 0 else UtX
        viol = projected_violation(self.W, B, G) if check else None
        sweep = hals_sweep_small if _small_cpu(self.W) else hals_sweep
        sweep(self.W, B, G, n_sweeps=self.n_inner, inner_tol=self.inner_tol)
        return viol


class NonnegMU(ConceptUpdate):
    """Multiplicative update of ``W >= 0`` (Lee & Seung)."""

    def __init__(self, W, l1=0.0, l2=0.0):
        super().__init__(W)
        self.l1, self.l2 = l1, l2

    def step(self, UtU, UtX, check=False):
        G = UtU.clone()
        if self.l2 > 0:
            G.diagonal().add_(self.l2)
        mu_step(self.W, UtX, G, self.l1)


class SignedLS(ConceptUpdate):
    """Unconstrained concepts (Semi-NMF): exact ridge least squares.

    With an L1 term the rows are updated by coordinate descent with
    soft-thresholding instead (``n_inner`` sweeps).
    """

    def __init__(self, W, l1=0.0, l2=0.0, n_inner=5):
        super().__init__(W)
        self.l1, self.l2, self.n_inner = l1, l2, n_inner

    def step(self, UtU, UtX, check=False):
        torch = _torch()
        G = UtU.clone()
        if self.l2 > 0:
            G.diagonal().add_(self.l2)
        if self.l1 > 0:
            hals_sweep(self.W, UtX, G, nonneg=False, l1=self.l1, n_sweeps=self.n_inner)
            return
        alive = G.diagonal() > 0
        if not bool(alive.any()):
            return
        Ga = G[alive][:, alive]
        jitter = 1e-10 * float(Ga.diagonal().mean()) + 1e-300
        Ga.diagonal().add_(jitter)
        L, info = torch.linalg.cholesky_ex(Ga)
        if int(info) == 0:
            self.W[alive] = torch.cholesky_solve(UtX[alive], L)
        else:
            self.W[alive] = torch.linalg.lstsq(Ga, UtX[alive]).solution

    def _project(self, r):
        return r


class ConvexMU(ConceptUpdate):
    """Convex-NMF concepts ``W = Gm C`` with ``Gm >= 0`` over candidate rows ``C``.

    Ding, Li & Jordan's multiplicative rule for the mixing weights, in the
    candidate form ``min ||X - U Gm C||^2``: with ``P = U^T X C^T`` and
    ``K = C C^T`` split in positive and negative parts,
    ``Gm <- Gm * sqrt((P+ + UtU Gm K-) / (P- + UtU Gm K+ + l1 + l2 Gm))``.
    """

    def __init__(self, Gm, C, cand_idx, l1=0.0, l2=0.0, n_inner=10):
        self.Gm, self.C, self.cand_idx = Gm, C, cand_idx
        K = C @ C.T
        self.Kp, self.Kn = K.clamp(min=0), (-K).clamp(min=0)
        self.l1, self.l2, self.n_inner = l1, l2, n_inner
        super().__init__(Gm @ C)

    def step(self, UtU, UtX, check=False):
        torch = _torch()
        P = UtX @ self.C.T
        Pp, Pn = P.clamp(min=0), (-P).clamp(min=0)
        for _ in range(self.n_inner):
            A = UtU @ self.Gm
            num = Pp + A @ self.Kn
            den = Pn + A @ self.Kp
            if self.l1 > 0:
                den += self.l1
            if self.l2 > 0:
                den += self.l2 * self.Gm
            self.Gm.mul_(torch.sqrt(num / den.clamp(min=_EPS)))
        self.W = self.Gm @ self.C

    def dead(self, UtU):
        return (UtU.diagonal() <= 0) | (self.Gm.amax(1) <= 0)

    def reseed(self, dead, rows, Ut, cand_codes=None):
        """Re-seed dead atoms on the worst-reconstructed candidates.

        ``cand_codes`` (``k x n_candidates``): the candidates' codes when the
        columns of ``Ut`` are not the rows the candidates were drawn from
        (``partial_fit`` on a later chunk); the dead atoms' codes in ``Ut``
        are then only zeroed.
        """
        torch = _torch()
        ts = torch.nonzero(dead).flatten().tolist()
        own = cand_codes is None
        Uc = Ut[:, self.cand_idx] if own else cand_codes
        R = self.C - Uc.T @ self.W
        worst = torch.topk((R * R).sum(1), min(len(ts), R.shape[0])).indices
        m = self.C.shape[0]
        for j, t in enumerate(ts[: len(worst)]):
            self.Gm[t] = 1e-3 / m
            self.Gm[t, worst[j]] = 1.0
            Ut[t].zero_()
            if own:
                Ut[t, self.cand_idx[worst[j]]] = 1.0
        self.W = self.Gm @ self.C


# ---------------------------------------------------------------- the loop


#: HALS stopping guard: scikit-learn's violation rule applies once the
#: objective decreased by less than this share of itself since the previous
#: check (5 iterations; the error by about half of it). Our code sweeps
#: shrink the gradient faster than the objective: on a 300 x 50 matrix
#: (``tests/test_nmf.py``, nndsvda) the rule alone stops 9% above
#: scikit-learn's error, with a guard of 0.1 6% above, with 0.06 at 0.96 of
#: it; a tighter guard runs the 20000 x 512 benchmark matrix longer (0.04:
#: 80-95 iterations instead of 70-90, 3 seeds; scikit-learn takes 72-109).
STALL_RTOL = 0.06

#: HALS also stops when the objective decreased by less than
#: ``STALL_TOL_FACTOR * tol`` of itself per iteration since the previous
#: check: where the projected gradient stays large (digits) this ends the fit
#: once it stalls instead of at ``max_iter``. 4 (4e-4 per iteration at the
#: default ``tol``) stops digits at 0.99 of scikit-learn's error after 45-110
#: iterations (5 seeds); 12 stops one seed 3% above it.
STALL_TOL_FACTOR = 4.0


def _statistics(rows, Ut, k):
    """``(U^T U, U^T X)`` of the codes ``Ut`` (one pass over the rows)."""
    torch = _torch()
    UtU = torch.zeros((k, k), dtype=rows.dtype, device=rows.device)
    UtX = torch.zeros((k, rows.d), dtype=rows.dtype, device=rows.device)
    for sl, xb in rows.batches():
        V = Ut[:, sl]
        UtU.addmm_(V, V.T)
        UtX.addmm_(V, xb)
    return UtU, UtX


def _objective(err2, Ut, UtU, update, l1_U, l2_U):
    """The penalised objective ``0.5 ||X - UW||^2 + penalties`` (a float)."""
    f = 0.5 * max(err2, 0.0)
    if l1_U > 0:
        f += l1_U * float(Ut.sum())
    if l2_U > 0:
        f += 0.5 * l2_U * float(UtU.diagonal().sum())
    l1_W, l2_W = getattr(update, "l1", 0.0), getattr(update, "l2", 0.0)
    if l1_W > 0:
        f += l1_W * float(update.W.abs().sum())
    if l2_W > 0:
        f += 0.5 * l2_W * float((update.W * update.W).sum())
    return f


def fit_alternating(rows, Ut, update, *, xsq, on_iter=None, sst=None, **kwargs):
    """:func:`alternate` that stops well on Ctrl-C; same arguments and result.

    The first Ctrl-C (SIGINT, :func:`skconcepts._faults.deferred_interrupt`)
    lets the iteration in progress finish; then ``on_iter(...,
    interrupted=True)`` reports it and the loop ends, with the fitted state
    of that iteration. A ``KeyboardInterrupt`` raised inside the loop (by a
    callback, or off the main thread) ends it where it lands: the statistics
    are recomputed from the codes as they are (both factors stay consistent),
    and ``on_iter(..., interrupted=True)`` reports it.
    """
    done = 0
    total = sst if sst is not None else xsq

    def hook(n_iter, err, rel_err, sst_, W):
        nonlocal done
        if flag.requested:
            done = n_iter
            if on_iter is not None:
                on_iter(n_iter, err, rel_err, sst_, W, interrupted=True)
            return True
        stop = on_iter is not None and on_iter(n_iter, err, rel_err, sst_, W)
        done = n_iter  # (a KeyboardInterrupt in on_iter: iteration n_iter)
        return stop

    with deferred_interrupt() as flag:
        try:
            return alternate(rows, Ut, update, xsq=xsq, on_iter=hook, sst=sst, **kwargs)
        except KeyboardInterrupt:
            UtU, UtX = _statistics(rows, Ut, Ut.shape[0])
            W = update.W
            err2 = xsq - 2 * float((W * UtX).sum()) + float((UtU * (W @ W.T)).sum())
            err = math.sqrt(max(err2, 0.0))
            if on_iter is not None:
                rel = err / math.sqrt(max(xsq, 1e-300))
                on_iter(done + 1, err, rel, total, W, interrupted=True)
            return done + 1, UtU, UtX


def alternate(
    rows,
    Ut,
    update,
    *,
    xsq,
    code_solver="hals",
    n_inner=1,
    l1_U=0.0,
    l2_U=0.0,
    max_iter=200,
    tol=1e-4,
    stop="violation",
    check_every=5,
    guard=True,
    verbose=0,
    on_iter=None,
    sst=None,
):
    """Alternate code and concept updates; return ``(n_iter, UtU, UtX)``.

    Each iteration makes one pass over the rows of ``X``: for every batch it
    computes ``W X_b^T`` once, updates the batch's codes (``n_inner`` HALS
    sweeps, or one multiplicative update), and accumulates ``UtU`` and
    ``UtX``; then ``update.step`` updates the concepts from these statistics
    alone. Code updates are row-independent, so the result does not depend on
    the batch size (up to floating-point rounding).

    Stopping: ``stop="violation"`` (HALS) is checked every ``check_every``
    iterations, with ``drop`` the decrease of the penalised objective since
    the previous check relative to the objective, per iteration: it stops when
    ``drop <= STALL_TOL_FACTOR * tol`` (the objective stalls), or on
    scikit-learn's coordinate-descent rule (``solver="cd"``: projected-gradient
    violation relative to the first iteration below ``tol``) once
    ``drop * check_every <= STALL_RTOL``; ``tol=0`` runs to ``max_iter``.
    ``stop="error"``
    checks every 10 iterations whether the relative error decreased by less
    than ``tol`` times the first error (scikit-learn's multiplicative-update
    rule). ``guard`` re-seeds atoms whose code column or
    concept row became all zero.

    ``on_iter(n_iter, err, rel_err, sst, W)`` (optional) is called after every
    iteration with the Frobenius error computed from the statistics, the
    relative error, the total sum of squares ``sst`` of ``X`` and the
    concepts; a true return value stops the fit.
    """
    torch = _torch()
    k = Ut.shape[0]
    dev, dt = rows.device, rows.dtype
    UtU = torch.zeros((k, k), dtype=dt, device=dev)
    UtX = torch.zeros((k, rows.d), dtype=dt, device=dev)
    viol_init = None
    err_init = prev_err = None
    prev_iter = 0
    xnorm = math.sqrt(max(xsq, 1e-300))
    # the error from the statistics carries a cancellation noise of about
    # sqrt(eps) ||X||: below ten times that, X counts as reconstructed
    reseed_floor = 10 * math.sqrt(float(torch.finfo(dt).eps) * max(xsq, 0.0))
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        W = update.W
        G = gram_reg(W, l2_U)
        UtU.zero_()
        UtX.zero_()
        # the violation costs a product and three passes over the codes:
        # measure it at the first iteration and every ``check_every`` after
        check = stop == "violation" and (n_iter == 1 or n_iter % check_every == 0)
        viol = torch.zeros((), dtype=torch.float64, device=dev) if check else None
        for sl, xb in rows.batches():
            B = W @ xb.T
            V = Ut[:, sl]
            if code_solver == "hals":
                if l1_U > 0:
                    B -= l1_U
                if check:
                    viol += projected_violation(V, B, G)
                sweep = hals_sweep_small if _small_cpu(V) else hals_sweep
                sweep(V, B, G, n_sweeps=n_inner)
            else:
                mu_step(V, B, G, l1_U)
            UtU.addmm_(V, V.T)
            UtX.addmm_(V, xb)
        v_w = update.step(UtU, UtX, check)
        W = update.W
        err2 = xsq - 2 * float((W * UtX).sum()) + float((UtU * (W @ W.T)).sum())
        err = math.sqrt(max(err2, 0.0))
        stop_now = on_iter is not None and on_iter(
            n_iter, err, err / xnorm, sst if sst is not None else xsq, W
        )
        if verbose and (n_iter % 10 == 0 or n_iter == 1):
            print(f"iteration {n_iter:4d}: relative error {err / xnorm:.6f}")
        if stop_now:
            break
        # re-seed dead atoms, unless X is already reconstructed to rounding;
        # never at the last pass (no code update would follow)
        if guard and err > reseed_floor and n_iter < max_iter:
            dead = update.dead(UtU)
            if bool(dead.any()):
                if verbose:
                    print(
                        f"iteration {n_iter}: re-seeding {int(dead.sum())} dead atoms"
                    )
                update.reseed(dead, rows, Ut)
                if stop == "violation":
                    prev_err = None  # the next check only re-arms the drop
                continue
        if check:
            v = float(viol) + (float(v_w) if v_w is not None else 0.0)
            if viol_init is None:
                viol_init = v
                if v == 0:
                    break
            obj = _objective(err2, Ut, UtU, update, l1_U, l2_U)
            if obj <= 0:
                break
            if prev_err is not None and tol > 0:
                # scikit-learn's ``solver="cd"`` rule (``tol`` has its
                # meaning), guarded against the inner code sweeps, which
                # shrink the gradient faster than the objective; or the
                # objective stalls where the gradient stays large (issue 14)
                drop = (prev_err - obj) / obj / (n_iter - prev_iter)
                if drop <= STALL_TOL_FACTOR * tol or (
                    v / viol_init <= tol and drop * check_every <= STALL_RTOL
                ):
                    break
            prev_err, prev_iter = obj, n_iter
        elif stop == "error":
            if err_init is None:
                err_init = prev_err = err
            elif tol > 0 and n_iter % 10 == 0:
                if err_init == 0 or (prev_err - err) / err_init < tol:
                    break
                prev_err = err
    return n_iter, UtU, UtX
