"""skconcepts.inspection.nmf_codes_torch: differentiable NMF codes (CRAFT).

Ground truths: SciPy's exact NNLS (``scipy.optimize.nnls``) for the forward
pass, ``NMFConcepts.transform`` and ``concept_maps`` for the same codes,
``torch.autograd.gradcheck`` and central finite differences through a small
CNN for the backward pass. The naive gradient (unconstrained least squares
on every entry) is checked to be wrong on the same data, so the tests see
the KKT mechanism.
"""

import numpy as np
import pytest
from scipy.optimize import nnls
from sklearn.exceptions import NotFittedError

from skconcepts import NMFConcepts, SemiNMFConcepts, TopKSAE
from skconcepts.inspection import (
    concept_maps,
    nmf_codes_torch,
    positions_to_rows,
)
from skconcepts.inspection._diffnmf import masked_gram_solve

torch = pytest.importorskip("torch")


def _margins(W, x):
    """Exact NNLS code of ``x`` and its distance to the active-set boundary."""
    u, _ = nnls(W.T, x)
    lam = W @ (W.T @ u - x)  # KKT multipliers (gradient), >= 0 off the support
    active = u > 0
    margin = min(u[active].min(initial=np.inf), lam[~active].min(initial=np.inf))
    return u, margin, int((~active).sum())


def _rows_away_from_boundary(W, n, seed):
    """Random non-negative rows whose NNLS codes have zeros, with margins."""
    rng = np.random.RandomState(seed)
    rows = []
    while len(rows) < n:
        x = rng.rand(W.shape[1])
        _, margin, n_zero = _margins(W, x)
        if 0 < n_zero < W.shape[0] and margin > 1e-2:
            rows.append(x)
    return np.array(rows)


def _naive_codes(W, G, scale, l1, A, codes):
    """The NNLS codes' values with the unconstrained least-squares gradient."""
    ls = ((A @ W.T - l1) @ torch.linalg.pinv(G)) * scale
    return codes.detach() + (ls - ls.detach())


# ------------------------------------------------------------ (1) gradcheck
def test_gradcheck_plain_concepts_away_from_the_boundary():
    rng = np.random.RandomState(0)
    W = rng.rand(5, 12)
    X = _rows_away_from_boundary(W, 4, seed=1)
    A = torch.tensor(X, requires_grad=True)
    U = nmf_codes_torch(W, A)
    ref = np.array([nnls(W.T, x)[0] for x in X])
    np.testing.assert_allclose(U.detach().numpy(), ref, atol=1e-12)
    assert (ref == 0).any() and (ref > 0).any()
    assert torch.autograd.gradcheck(
        lambda a: nmf_codes_torch(W, a), (A,), eps=1e-6, atol=1e-7, rtol=1e-6
    )
    # the naive gradient (all entries, no constraint) fails the same check
    Wt = torch.tensor(W)
    G, one = Wt @ Wt.T, torch.ones(5, dtype=torch.float64)
    assert not torch.autograd.gradcheck(
        lambda a: _naive_codes(Wt, G, one, 0.0, a, nmf_codes_torch(W, a)),
        (A,),
        eps=1e-6,
        atol=1e-7,
        rtol=1e-6,
        raise_exception=False,
    )


def test_gradcheck_regularised_extractor_with_code_scale():
    # alpha_W with l1_ratio = 0.5: the L1 shift and the L2 diagonal enter the
    # KKT system; the code scale (unit components_) multiplies the codes
    rng = np.random.RandomState(2)
    X = rng.rand(200, 4) @ rng.rand(4, 10) + 0.2 * rng.rand(200, 10)
    nmf = NMFConcepts(4, alpha_W=0.01, l1_ratio=0.5, device="cpu", random_state=0).fit(
        X
    )
    assert not np.allclose(nmf._code_scale, 1.0)
    A = torch.tensor(X[:8], requires_grad=True)
    U = nmf_codes_torch(nmf, A).detach().numpy()
    assert (U == 0).any() and (U > 0).any()
    assert torch.autograd.gradcheck(
        lambda a: nmf_codes_torch(nmf, a), (A,), eps=1e-6, atol=1e-7, rtol=1e-6
    )


# ---------------------------------------------- (2) through a small network
def _tiny_cnn(seed):
    rng = np.random.RandomState(seed)
    weight = torch.tensor(rng.randn(4, 1, 3, 3))
    bias = torch.tensor(0.3 * rng.randn(4))

    def features(x):  # (n, 1, 7, 7) -> (n, 4, 5, 5), channels first
        return torch.relu(torch.nn.functional.conv2d(x, weight, bias))

    x = torch.tensor(rng.rand(2, 1, 7, 7))
    return features, x


def test_concept_gradient_through_a_cnn_matches_finite_differences():
    features, x = _tiny_cnn(0)
    F = features(x).detach().numpy()
    rows, _ = positions_to_rows(F, channel_axis=1)
    nmf = NMFConcepts(3, device="cpu", random_state=0).fit(rows)
    j = 1

    def f(inp):  # one concept's map, summed over positions and inputs
        return nmf_codes_torch(nmf, features(inp), channel_axis=1)[..., j].sum()

    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(xg), xg)
    eps = 1e-6
    fd = torch.zeros_like(x)
    with torch.no_grad():
        flat = x.reshape(-1)
        for i in range(flat.numel()):
            xp, xm = flat.clone(), flat.clone()
            xp[i] += eps
            xm[i] -= eps
            fd.view(-1)[i] = (f(xp.view_as(x)) - f(xm.view_as(x))) / (2 * eps)
    err = float((grad - fd).norm() / fd.norm())
    assert err < 1e-6, err
    # the codes have zeros, and the naive gradient is wrong on this data
    codes = nmf_codes_torch(nmf, features(x), channel_axis=1)
    assert (codes == 0).any()
    W = torch.tensor(nmf._raw_components())
    G = W @ W.T
    scale = torch.tensor(nmf._code_scale)

    def f_naive(inp):
        Fi = features(inp).movedim(1, -1).reshape(-1, 4)
        c = nmf_codes_torch(nmf, Fi)
        return _naive_codes(W, G, scale, 0.0, Fi, c)[:, j].sum()

    (naive,) = torch.autograd.grad(f_naive(xg), xg)
    assert float((naive - fd).norm() / fd.norm()) > 0.1


# --------------------------------------------------- (3) forward = transform
def test_forward_equals_transform_and_concept_maps():
    features, x = _tiny_cnn(1)
    F = features(x).detach().numpy()  # (2, 4, 5, 5)
    rows, _ = positions_to_rows(F, channel_axis=1)
    nmf = NMFConcepts(3, device="cpu", random_state=0).fit(rows)
    codes = nmf_codes_torch(nmf, torch.tensor(F), channel_axis=1).numpy()
    assert codes.shape == (2, 5, 5, 3)
    # transform's own tolerance (1e-4, relative to the row's largest code)
    maps = concept_maps(nmf, F, channel_axis=1)
    assert np.abs(codes - maps).max() <= 1e-3 * maps.max()
    # the same solver run to convergence agrees to round-off
    nmf.set_params(tol=1e-13, max_iter=5000)
    np.testing.assert_allclose(
        codes, concept_maps(nmf, F, channel_axis=1), atol=1e-10 * maps.max()
    )
    # exact NNLS of the solver's concepts, times the code scale
    W = nmf._raw_components()
    ref = np.array([nnls(W.T, r)[0] for r in rows]) * nmf._code_scale
    np.testing.assert_allclose(codes.reshape(-1, 3), ref, atol=1e-12 * ref.max())


def test_dtype_device_and_signed_extractor():
    rng = np.random.RandomState(3)
    X = rng.rand(150, 3) @ rng.rand(3, 8)
    nmf = NMFConcepts(3, device="cpu", random_state=0).fit(X)
    A64 = torch.tensor(X[:20])
    A32 = A64.float().requires_grad_(True)
    U32 = nmf_codes_torch(nmf, A32, device="cpu")
    U64 = nmf_codes_torch(nmf, A64, device="auto")
    assert U32.dtype == torch.float32 and U64.dtype == torch.float64
    assert U64.device == A64.device
    np.testing.assert_allclose(
        U32.detach().numpy(), U64.numpy(), atol=1e-4 * float(U64.max())
    )
    U32.sum().backward()
    assert A32.grad.dtype == torch.float32
    assert torch.equal(A64, torch.tensor(X[:20]))  # the input is untouched
    # SemiNMF: signed data and concepts, non-negative codes (same problem)
    Xs = rng.randn(120, 6)
    semi = SemiNMFConcepts(3, device="cpu", random_state=0).fit(Xs)
    semi.set_params(tol=1e-13, max_iter=5000)
    np.testing.assert_allclose(
        nmf_codes_torch(semi, torch.tensor(Xs[:10])).numpy(),
        semi.transform(Xs[:10]),
        atol=1e-9,
    )


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA (device-agnostic check)"
)
def test_cuda_matches_cpu():  # pragma: no cover - GPU machines only
    rng = np.random.RandomState(4)
    W = rng.rand(4, 10)
    X = _rows_away_from_boundary(W, 8, seed=5)
    Ac = torch.tensor(X, device="cuda", requires_grad=True)
    Ug = nmf_codes_torch(W, Ac)
    Ug[:, 0].sum().backward()
    A = torch.tensor(X, requires_grad=True)
    U = nmf_codes_torch(W, A)
    U[:, 0].sum().backward()
    assert Ug.device.type == "cuda"
    np.testing.assert_allclose(
        Ug.detach().cpu().numpy(), U.detach().numpy(), atol=1e-10
    )
    np.testing.assert_allclose(Ac.grad.cpu().numpy(), A.grad.numpy(), atol=1e-10)


# ------------------------------------------------- degenerate active sets
def test_masked_gram_solve_is_the_pseudo_inverse_on_the_active_block():
    rng = np.random.RandomState(6)
    M = rng.rand(3, 7)
    W = np.vstack([M, M[0] + M[1]])  # rank 3, four concepts
    G = W @ W.T
    mask = np.array([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0]], dtype=bool)
    rhs = rng.randn(3, 4)
    z = masked_gram_solve(torch.tensor(G), torch.tensor(mask), torch.tensor(rhs))
    for i in range(3):
        s = mask[i]
        expect = np.zeros(4)
        if s.any():
            expect[s] = np.linalg.pinv(G[np.ix_(s, s)]) @ rhs[i, s]
        np.testing.assert_allclose(z[i].numpy(), expect, atol=1e-10)


def test_duplicate_concepts_give_the_gradient_of_the_unique_sum():
    # two equal concepts: their split is not unique, their sum is
    rng = np.random.RandomState(7)
    w = rng.rand(3, 9)
    W = np.vstack([w[0], w[0], w[1], w[2]])
    X = rng.rand(5, 3) @ w + 0.05 * rng.rand(5, 9)
    A = torch.tensor(X, requires_grad=True)
    U = nmf_codes_torch(W, A)
    s = U[:, 0] + U[:, 1]
    ref = np.array([nnls(w.T, x)[0] for x in X])[:, 0]
    np.testing.assert_allclose(s.detach().numpy(), ref, atol=1e-10)
    (grad,) = torch.autograd.grad(s.sum(), A)
    assert bool(torch.isfinite(grad).all())
    Wr = torch.tensor(w)
    (exact,) = torch.autograd.grad(nmf_codes_torch(Wr, A)[:, 0].sum(), A)
    np.testing.assert_allclose(grad.numpy(), exact.numpy(), atol=1e-9)


# --------------------------------------------------------------- (5) errors
def test_bad_input_errors():
    rng = np.random.RandomState(8)
    X = rng.rand(60, 5)
    nmf = NMFConcepts(2, max_iter=20, device="cpu", random_state=0).fit(X)
    A = torch.tensor(X[:4])
    with pytest.raises(ValueError, match="negative entries"):
        nmf_codes_torch(nmf, A - 1.0)
    with pytest.raises(ValueError, match="6 features .* concepts have 5"):
        nmf_codes_torch(nmf, torch.rand(4, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="channel_axis=1"):
        nmf_codes_torch(nmf, torch.rand(2, 5, 3, 3, dtype=torch.float64))
    with pytest.raises(NotFittedError):
        nmf_codes_torch(NMFConcepts(2), A)
    with pytest.raises(TypeError, match="NMF-family"):
        nmf_codes_torch(TopKSAE(4), A)
    with pytest.raises(TypeError, match="torch.Tensor"):
        nmf_codes_torch(nmf, X[:4])
    with pytest.raises(TypeError, match="float32 or float64"):
        nmf_codes_torch(nmf, torch.ones(4, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="NaN"):
        nmf_codes_torch(nmf, torch.full((4, 5), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="channel_axis"):
        nmf_codes_torch(nmf, torch.rand(2, 3, 5, dtype=torch.float64), channel_axis=0)
    with pytest.raises(ValueError, match="shape \\(n_concepts, n_features\\)"):
        nmf_codes_torch(np.ones(5), A)
    with pytest.raises(TypeError, match="concepts W"):
        nmf_codes_torch("nmf", A)
    with pytest.raises(ValueError, match="device"):
        nmf_codes_torch(nmf, A, device="tpu")


# ------------------------------------------- known answer: where the pattern is
def test_concept_gradient_map_peaks_on_the_pattern():
    # the plus-sign images of test_inspection, through the same fixed conv
    # layer written in torch: gradient x input of the plus concept's summed
    # code, x * d sum(u_plus) / dx, peaks on the plus sign. (The plain
    # gradient does not: the concept is active at almost every position and
    # the codes are linear on a fixed active set, so d u / d a is the same
    # matrix everywhere; on this data its peak is 2-13 pixels off.)
    from test_inspection import PLUS, _features, _pattern_images

    images, centres = _pattern_images(n=12)
    rows, _ = positions_to_rows(_features(images), channel_axis=1)
    nmf = NMFConcepts(3, max_iter=200, device="cpu", random_state=0).fit(rows)
    plus = int(np.argmax(nmf.components_[:, 0]))
    filters = torch.tensor(
        np.stack(
            [
                PLUS - PLUS.mean(),
                [[1.0, 1, 1], [0, 0, 0], [-1, -1, -1]],
                [[1.0, 0, -1], [1, 0, -1], [1, 0, -1]],
                np.full((3, 3), 1 / 9),
            ]
        )[:, None]
    )

    def features(x):  # (n, 1, 16, 16) -> (n, 4, 8, 8), as _features
        x = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
        f = torch.relu(torch.nn.functional.conv2d(x, filters))
        return torch.nn.functional.avg_pool2d(f, 2)

    x = torch.tensor(images[:, None], requires_grad=True)
    F = features(x)
    np.testing.assert_allclose(F.detach().numpy(), _features(images), atol=1e-12)
    nmf_codes_torch(nmf, F, channel_axis=1)[..., plus].sum().backward()
    saliency = (x.grad * x).detach()[:, 0].numpy()
    peaks = np.array(
        np.unravel_index(saliency.reshape(len(images), -1).argmax(1), (16, 16))
    ).T
    dist = np.abs(peaks - centres).max(axis=1)  # Chebyshev: inside the 3 x 3 plus
    assert np.all(dist <= 1), dist


def test_fallback_paths_of_the_forward_solve(monkeypatch):
    # one HALS sweep leaves wrong active sets: block pivoting must fix them,
    # and without pivoting the exact active-set method must
    import skconcepts.inspection._diffnmf as mod

    rng = np.random.RandomState(9)
    W = rng.rand(6, 15)
    X = rng.rand(60, 15)
    ref = np.array([nnls(W.T, x)[0] for x in X])
    assert (ref == 0).mean() > 0.2
    monkeypatch.setattr(mod, "_MAX_SWEEPS", 1)
    for rounds in (10, 0):
        monkeypatch.setattr(mod, "_PIVOT_ROUNDS", rounds)
        U = nmf_codes_torch(W, torch.tensor(X)).numpy()
        np.testing.assert_allclose(U, ref, atol=1e-12)


def test_float32_input_is_solved_in_float64():
    # nearly dependent concepts (cond(W W^T) ~ 1e7): a float32 Gram solve
    # would lose the active sets; the codes of float32 input are those of
    # float64 on the same (rounded) numbers, returned in float32
    rng = np.random.RandomState(10)
    base = rng.rand(3, 20)
    W = np.vstack([base, base[:2] + 2e-3 * rng.rand(2, 20)])
    assert np.linalg.cond(W @ W.T) > 1e6
    X32 = torch.tensor(rng.rand(300, 5) @ W, dtype=torch.float32)
    U32 = nmf_codes_torch(W, X32)
    U64 = nmf_codes_torch(W, X32.double())
    assert U32.dtype == torch.float32
    assert torch.equal(U32 > 0, U64 > 0)
    np.testing.assert_allclose(U32.numpy(), U64.numpy(), atol=1e-5 * float(U64.max()))
