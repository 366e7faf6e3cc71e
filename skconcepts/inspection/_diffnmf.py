"""Differentiable NMF codes: implicit differentiation of the NNLS solution.

CRAFT (Fel et al., CVPR 2023) takes gradients of concept codes with respect
to the input of the network. The codes of an NMF concept extractor are the
solution of a non-negative least-squares problem with the concepts fixed,

    u(a) = argmin_{u >= 0} 0.5 ||a - u W||^2 + l1 |u|_1 + 0.5 l2 ||u||^2,

and that solution is differentiable (almost everywhere) in ``a`` by implicit
differentiation of its KKT conditions: on the active set ``S = {j: u_j > 0}``
the solution solves ``G_SS u_S = (W a)_S - l1`` with ``G = W W^T + l2 I``,
so ``du_S / da = G_SS^{-1} W_S`` and the inactive entries have zero gradient.

:func:`nmf_codes_torch` is a torch autograd function that solves the codes
exactly (the package's HALS solver guesses the active sets, batched block
principal pivoting finishes, the KKT conditions are checked) and
back-propagates through that formula, batched over rows with one masked
Gram system per row.
"""

import numbers

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .._backend import (
    TEMP_MEMORY_SHARE,
    default_batch_size,
    resolve_device,
    working_memory_bytes,
)
from ..decomposition._base import _BaseNMF
from ..decomposition._solvers import gram_reg, nnls_codes
from ._positions import _check_channel_axis, _positional_channel_axis

__all__ = ["nmf_codes_torch"]

# HALS sweeps and tolerance of the first, approximate solve (``transform``'s
# tolerance, fewer sweeps). It only has to guess the active sets; the exact
# solve on them, block pivoting and the KKT check follow (a tighter HALS
# tolerance, 1e-12, or 200 sweeps gave the same codes, more slowly).
_MAX_SWEEPS = 30
_TOL = 1e-4
# Batched block-pivoting rounds on the active sets, then, for a row that
# still fails the KKT check, the exact active-set method (its outer steps
# are capped at this many per concept).
_PIVOT_ROUNDS = 100
_MAX_ACTIVE_SET_STEPS = 50


def _eps(dtype):
    import torch

    return float(torch.finfo(dtype).eps)


def masked_gram_solve(G, mask, rhs, rtol=None):
    """Solve ``G_SS z_S = rhs_S``, ``z_{not S} = 0`` for every row at once.

    Each row ``i`` has its own active set ``S_i = mask[i]``. The system is
    embedded in a ``k x k`` matrix, ``M_i = G * (m m^T) + c diag(1 - m)``
    (identity block, scaled by ``c = max diag G``, on the inactive entries),
    and solved with the Moore-Penrose pseudo-inverse of ``M_i``:
    eigenvalues below ``rtol * max |eigenvalue|`` are cut, so a singular
    active block (a rank-deficient active set, e.g. more active concepts
    than the rank of their rows, or a dead concept with ``l2 = 0``) gives
    the minimum-norm solution instead of infinities. ``rtol`` defaults to
    ``10 k eps`` of the dtype (ten times the default of
    ``torch.linalg.pinv``).

    Rows are taken in blocks whose systems fit in 1/16 of scikit-learn's
    ``working_memory``. Fast path: rows whose Cholesky factorisation
    succeeds with pivots ``L_jj^2`` spread by less than ``1 / (100 rtol)``
    are solved with it (the smallest eigenvalue is at most the smallest
    pivot, so a wider spread means the matrix may be near the cut); the
    others through the eigendecomposition.

    Parameters
    ----------
    G : tensor of shape (k, k)
        Symmetric positive semi-definite Gram matrix.
    mask : bool tensor of shape (n, k)
        Active entries of each row.
    rhs : tensor of shape (n, k)
        Right-hand sides; their inactive entries are ignored.
    rtol : float or None, default=None
        Relative cut of the eigenvalues.

    Returns
    -------
    z : tensor of shape (n, k)
        Zero on the inactive entries.
    """
    import torch

    n, k = mask.shape
    if rtol is None:
        rtol = 10.0 * k * _eps(G.dtype)
    # blocks of rows whose k x k systems (and two temporaries) fit in 1/16 of
    # scikit-learn's working_memory
    step = max(1, working_memory_bytes(TEMP_MEMORY_SHARE) // (3 * k * k * G.itemsize))
    if n > step:
        return torch.cat(
            [
                _masked_gram_solve(G, mask[i : i + step], rhs[i : i + step], rtol)
                for i in range(0, n, step)
            ]
        )
    return _masked_gram_solve(G, mask, rhs, rtol)


def _masked_gram_solve(G, mask, rhs, rtol):
    """:func:`masked_gram_solve` on one block of rows."""
    import torch

    if mask.shape[0] == 0:
        return torch.zeros_like(rhs)
    m = mask.to(G.dtype)
    c = torch.diagonal(G).max().clamp(min=torch.finfo(G.dtype).tiny)
    M = G.unsqueeze(0) * (m.unsqueeze(2) * m.unsqueeze(1))
    M.diagonal(dim1=1, dim2=2).add_(c * (1.0 - m))
    b = (rhs * m).unsqueeze(2)
    L, info = torch.linalg.cholesky_ex(M)
    piv = torch.diagonal(L, dim1=1, dim2=2) ** 2
    fast = (info == 0) & (piv.amin(dim=1) > 100.0 * rtol * piv.amax(dim=1))
    z = torch.empty_like(b)
    if bool(fast.all()):
        z = torch.cholesky_solve(b, L)
    else:
        if bool(fast.any()):
            z[fast] = torch.cholesky_solve(b[fast], L[fast])
        slow = ~fast
        evals, evecs = torch.linalg.eigh(M[slow])
        cut = rtol * evals.abs().amax(dim=1, keepdim=True)
        keep = evals > cut
        inv = torch.where(keep, 1.0 / torch.where(keep, evals, 1.0), 0.0)
        z[slow] = evecs @ (inv.unsqueeze(2) * (evecs.transpose(1, 2) @ b[slow]))
    return z.squeeze(2) * m


def _kkt_tolerance(U, G, B):
    """Per-row tolerance of the KKT check: ``100 k eps`` times the row's scale."""
    import torch

    k = G.shape[0]
    gmax = float(G.diagonal().abs().max())
    size = torch.maximum(B.abs().amax(dim=1), gmax * U.abs().amax(dim=1))
    return 100.0 * k * _eps(U.dtype) * size.clamp(min=torch.finfo(U.dtype).tiny)


def _active_set_row(G, b, tol):
    """Exact NNLS of one row in Gram form (Lawson & Hanson, Bro & De Jong).

    Minimises ``0.5 u^T G u - b^T u`` over ``u >= 0``: the passive set grows
    by the entry of largest negative gradient, and the inner loop steps back
    into the feasible region whenever the unconstrained solution on the
    passive set has a non-positive entry. Returns ``u``, shape ``(k,)``.
    """
    import torch

    k = G.shape[0]
    u = torch.zeros_like(b)
    passive = torch.zeros(k, dtype=torch.bool, device=b.device)
    for _ in range(_MAX_ACTIVE_SET_STEPS * k):
        w = b - G @ u
        cand = (~passive) & (w > tol)
        if not bool(cand.any()):
            break
        j = int(torch.argmax(torch.where(cand, w, torch.full_like(w, -np.inf))))
        passive = passive.clone()
        passive[j] = True
        for _ in range(k + 1):
            s = masked_gram_solve(G, passive.unsqueeze(0), b.unsqueeze(0))[0]
            if bool((s[passive] > 0).all()):
                u = s
                break
            neg = passive & (s <= 0)
            step = (u[neg] - s[neg]).clamp(min=torch.finfo(u.dtype).tiny)
            alpha = torch.min(u[neg] / step)
            u = u + alpha * (s - u)
            passive = passive & (u > 10 * _eps(u.dtype) * u.abs().max())
            u = torch.where(passive, u, torch.zeros_like(u))
    return u


def _solve_codes(A, W, G, l1):
    """Codes ``(n, k)`` of the rows of ``A`` (solver scale, no code scale).

    HALS (the package's ``transform`` solver, ``_MAX_SWEEPS`` sweeps) guesses
    the active sets; then the block principal pivoting of Kim & Park (2011),
    batched over rows: solve the equations on each row's active set
    exactly, flip every infeasible entry (an active one that came out
    non-positive, an inactive one with a negative gradient) while the
    number of infeasible entries falls, with three back-up tries, else only
    the infeasible entry of largest index (Murty's rule, which terminates).
    A row still unsolved after ``_PIVOT_ROUNDS`` rounds is solved by
    :func:`_active_set_row`.
    """
    import torch

    Ginv = torch.linalg.pinv(G)
    U0 = nnls_codes(A, W, G, Ginv, l1=l1, max_iter=_MAX_SWEEPS, tol=_TOL).T
    B = A @ W.T
    if l1 > 0:
        B = B - l1
    n, k = U0.shape
    dev = A.device
    mask = U0 > 0
    U = U0.clone()
    todo = torch.arange(n, device=dev)
    ninf = torch.full((n,), k + 1, dtype=torch.long, device=dev)
    backup = torch.full((n,), 3, dtype=torch.long, device=dev)
    position = torch.arange(k, device=dev)
    for _ in range(_PIVOT_ROUNDS):
        if todo.numel() == 0:
            break
        m, b = mask[todo], B[todo]
        sub = masked_gram_solve(G, m, b)
        tol_rows = _kkt_tolerance(sub, G, b)[:, None]
        grad = sub @ G - b
        infeasible = (m & (sub <= 0)) | (~m & (grad < -tol_rows))
        count = infeasible.sum(dim=1)
        good = count == 0
        U[todo[good]] = sub[good]
        keep = ~good
        fewer = count < ninf[todo]
        use_backup = ~fewer & (backup[todo] > 0)
        murty = ~fewer & ~use_backup
        ninf[todo] = torch.where(fewer, count, ninf[todo])
        backup[todo] = torch.where(fewer, 3, backup[todo] - use_backup.long())
        last = torch.where(infeasible, position, -1).amax(dim=1, keepdim=True)
        flip = torch.where(murty[:, None], position == last, infeasible)
        mask[todo] = m ^ flip
        todo = todo[keep]
    for i in todo.tolist():
        tol_i = float(_kkt_tolerance(U0[i : i + 1], G, B[i : i + 1])[0])
        U[i] = _active_set_row(G, B[i], tol_i)
    return U


class _NNLSCodes:
    """Holder of the torch autograd Function (built lazily: torch is optional
    at import time)."""

    fn = None

    @classmethod
    def get(cls):
        if cls.fn is not None:
            return cls.fn
        import torch

        class NNLSCodes(torch.autograd.Function):
            """Codes ``s * u(a)`` of the NNLS problem; KKT implicit backward."""

            @staticmethod
            def forward(ctx, A, W, G, scale, l1):
                # solved in the dtype of W (float64 but on MPS), in row
                # blocks of a quarter of working_memory; returned in A's
                step = default_batch_size(A.shape[1] + 2 * W.shape[0])
                with torch.no_grad():
                    U = torch.cat(
                        [
                            _solve_codes(A[i : i + step].to(W.dtype), W, G, l1)
                            for i in range(0, A.shape[0], step)
                        ]
                    )
                ctx.save_for_backward(U, W, G, scale)
                ctx.in_dtype = A.dtype
                return (U * scale).to(A.dtype)

            @staticmethod
            @torch.autograd.function.once_differentiable
            def backward(ctx, grad_out):
                U, W, G, scale = ctx.saved_tensors
                z = masked_gram_solve(G, U > 0, grad_out.to(W.dtype) * scale)
                return (z @ W).to(ctx.in_dtype), None, None, None, None

        cls.fn = NNLSCodes
        return NNLSCodes


def _concepts(extractor, dtype, device):
    """``(W, G, scale, l1, positive_only)`` on ``device`` for the NNLS problem."""
    import torch

    if isinstance(extractor, _BaseNMF):
        check_is_fitted(extractor)
        state = extractor._device_state(device, dtype)
        l1, _, _, _ = extractor._regularization(1, extractor.n_features_in_)
        return (
            state["raw"],
            state["gram"],
            state["scale"],
            float(l1),
            bool(extractor._positive_only),
        )
    if isinstance(extractor, type) or hasattr(extractor, "fit"):
        raise TypeError(
            "nmf_codes_torch needs a fitted NMF-family concept extractor "
            "(NMFConcepts, SemiNMFConcepts or ConvexNMFConcepts), whose codes "
            "solve a non-negative least-squares problem, or the concepts W as "
            f"an array of shape (n_concepts, n_features); got {extractor!r}. "
            "Other extractors (SAEs) are differentiable torch modules already."
        )
    if isinstance(extractor, torch.Tensor):
        W = extractor.detach().to(device=device, dtype=dtype)
    else:
        try:
            W = torch.as_tensor(np.asarray(extractor, dtype=float))
        except (TypeError, ValueError) as exc:
            raise TypeError(
                "extractor must be a fitted NMFConcepts, SemiNMFConcepts or "
                "ConvexNMFConcepts, or the concepts W as an array of shape "
                f"(n_concepts, n_features); got {type(extractor).__name__}."
            ) from exc
        W = W.to(device=device, dtype=dtype)
    if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] < 1:
        raise ValueError(
            "The concepts W must be a 2-D array of shape (n_concepts, "
            f"n_features); got shape {tuple(W.shape)}."
        )
    if not bool(torch.isfinite(W).all()):
        raise ValueError("The concepts W contain NaN or infinity.")
    G = gram_reg(W, 0.0)
    scale = torch.ones(W.shape[0], dtype=dtype, device=device)
    return W, G, scale, 0.0, False


def nmf_codes_torch(extractor, A, *, channel_axis=-1, device=None):
    """Differentiable NMF concept codes of a torch tensor of activations.

    The codes of :meth:`NMFConcepts.transform
    <skconcepts.NMFConcepts.transform>` as a torch autograd function, so
    that gradients of concept codes flow back through the network that
    produced ``A`` (CRAFT's concept attribution maps). For every row ``a``
    the forward pass solves the non-negative least-squares problem of the
    extractor with its concepts fixed,
    ``u(a) = argmin_{u >= 0} 0.5 ||a - u W||^2 + l1 |u|_1 + 0.5 l2 ||u||^2``
    (the same problem as ``transform``, regularisation and code scale
    included), and the backward pass uses the implicit gradient of the KKT
    conditions: with ``S`` the active set ``{j: u_j > 0}`` and
    ``G = W W^T + l2 I``, ``du_S / da = G_SS^{-1} W_S`` and zero on the
    inactive entries.

    Parameters
    ----------
    extractor : NMFConcepts, SemiNMFConcepts, ConvexNMFConcepts or array-like
        A fitted NMF-family concept extractor, or the concepts ``W`` as an
        array or tensor of shape ``(n_concepts, n_features)`` (then the plain
        problem ``min_{u >= 0} 0.5 ||a - u W||^2``, signed rows allowed).
        ``W`` is a constant: no gradient flows to it.
    A : torch.Tensor of shape (n_samples, [<grid>,] n_features)
        Activations, float32 or float64, e.g. the output of the layer before
        the cut with ``requires_grad`` through the network. With positions
        (a feature map ``(n, h, w, c)``, patch tokens ``(n, p, c)``) the
        codes of every position are computed, rows stacked as
        :func:`positions_to_rows` stacks them. Non-negative for
        :class:`~skconcepts.NMFConcepts`.
    channel_axis : int, default=-1
        The axis of the features in ``A`` when it has positions (``1`` for
        torch's ``(n, c, h, w)``).
    device : str or None, default=None
        Where the codes are solved: None solves on ``A``'s device (where its
        autograd graph lives); ``"auto"``, ``"cpu"``, ``"cuda"``,
        ``"cuda:N"`` or ``"mps"`` follow the package's device rules
        (``"auto"``: CUDA when available). The codes are returned on ``A``'s
        device either way.

    Returns
    -------
    codes : torch.Tensor of shape (n_samples, [<grid>,] n_concepts)
        The concept codes, in the dtype and on the device of ``A``, equal
        to ``extractor.transform`` of the rows (solved to high precision);
        with positions, on the grid with the concepts last (as
        :func:`concept_maps`).

    Raises
    ------
    TypeError
        If ``A`` is not a floating-point torch tensor, or ``extractor`` is
        not an NMF-family extractor (or a concept matrix).
    ValueError
        If the extractor is not fitted (``NotFittedError``), ``A`` has the
        wrong number of features, negative entries for
        :class:`~skconcepts.NMFConcepts`, or NaN / infinite values.

    See Also
    --------
    concept_maps : The same codes on the grid, from NumPy arrays (no gradient).
    skconcepts.NMFConcepts.transform : The codes, NumPy in and out.

    Notes
    -----
    The problem is solved in float64 whatever the dtype of ``A`` (float32
    on MPS, which has no float64): its Gram matrix squares the conditioning
    of the concepts, and float32 lost the active sets of nearly dependent
    concepts. The forward pass runs the package's HALS code solver
    (``transform``'s, at most 30 sweeps, tolerance 1e-4) to guess the
    active set of every row, then solves the active set's equations ``G_SS u_S = (W a)_S
    - l1`` exactly and checks the KKT conditions (``u_S > 0``; the gradient
    ``u G - W a + l1`` zero on ``S`` and non-negative off it); a row that
    fails the check is solved by an exact active-set method
    (Lawson-Hanson in Gram form). The backward pass solves one masked
    ``k x k`` Gram system per row, batched.

    The map ``a -> u(a)`` is piecewise linear and continuous; it is not
    differentiable where the active set changes, i.e. where an active code
    is exactly 0 or an inactive one has a zero KKT multiplier (its
    gradient entry is 0). There the backward gives the derivative of the
    piece where the entries at zero stay at zero (a one-sided derivative).
    When ``G_SS`` is singular (the active concepts are linearly dependent,
    possible only without L2 regularisation) the solution need not be
    unique; the backward then uses the pseudo-inverse of ``G_SS`` (the
    minimum-norm derivative; eigenvalues below ``10 k eps`` times the
    largest are cut). Only first derivatives are available (no double
    backward).

    References
    ----------
    .. [1] Fel, T. et al. (2023). CRAFT: Concept Recursive Activation
       FacTorization for explainability. CVPR.
    .. [2] Amos, B. & Kolter, J. Z. (2017). OptNet: differentiable
       optimization as a layer in neural networks. ICML.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from skconcepts import NMFConcepts
    >>> from skconcepts.inspection import nmf_codes_torch
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(200, 3) @ rng.rand(3, 12)
    >>> nmf = NMFConcepts(3, device="cpu", random_state=0).fit(X)
    >>> A = torch.tensor(X[:5], requires_grad=True)
    >>> U = nmf_codes_torch(nmf, A)
    >>> bool(np.allclose(U.detach().numpy(), nmf.transform(X[:5]), atol=1e-3))
    True
    >>> U[:, 0].sum().backward()
    >>> A.grad.shape
    torch.Size([5, 12])
    """
    import torch

    if not isinstance(A, torch.Tensor):
        raise TypeError(
            "A must be a torch.Tensor (the activations, with requires_grad "
            "through the network); for NumPy arrays use extractor.transform or "
            f"concept_maps. Got {type(A).__name__}."
        )
    if A.dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"A must be float32 or float64; got {A.dtype}. Convert it with "
            "A.float() or A.double()."
        )
    if A.ndim < 2:
        raise ValueError(
            "A must have shape (n_samples, n_features) or (n_samples, <grid>, "
            f"n_features); got shape {tuple(A.shape)}."
        )
    out_device = A.device
    dev = A.device if device is None else resolve_device(device)
    if A.ndim > 2:
        axis = _positional_channel_axis(channel_axis, A.ndim)
        A_last = torch.movedim(A, axis, -1)
        grid_shape = tuple(A_last.shape[:-1])
        rows = A_last.reshape(-1, A_last.shape[-1])
    else:
        if not isinstance(channel_axis, numbers.Integral):
            _check_channel_axis(channel_axis, 2)
        grid_shape = None
        rows = A
    # the NNLS problem is solved in float64 (MPS has none: float32), whatever
    # the dtype of A: its Gram matrix squares the conditioning of W
    work = torch.float32 if dev.type == "mps" else torch.float64
    W, G, scale, l1, positive_only = _concepts(extractor, work, dev)
    d = W.shape[1]
    if rows.shape[1] != d:
        raise ValueError(
            f"A has {rows.shape[1]} features (channels) but the concepts have "
            f"{d}; pass the activations of the layer the extractor was fitted "
            "on (for channels-first (n, c, h, w) use channel_axis=1)."
        )
    with torch.no_grad():
        if not bool(torch.isfinite(rows).all()):
            raise ValueError("A contains NaN or infinity.")
        if positive_only and bool((rows < 0).any()):
            raise ValueError(
                f"A has negative entries ({float(rows.min()):.3g}) but "
                f"{type(extractor).__name__} takes non-negative activations; "
                "take them after the ReLU (or use SemiNMFConcepts for signed "
                "activations)."
            )
    rows = rows.to(dev)
    codes = _NNLSCodes.get().apply(rows, W, G, scale, l1)
    codes = codes.to(out_device)
    if grid_shape is not None:
        codes = codes.reshape(*grid_shape, codes.shape[-1])
    return codes
