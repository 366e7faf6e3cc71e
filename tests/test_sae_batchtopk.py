"""The BatchTopK selection and its sparse training path (issue 14).

The fast selection (:func:`batch_topk_mask`: a threshold from a sampled lower
bound, ties in row-major order) must equal the plain reference, a stable
descending sort of the flattened batch cut at ``top_k * B``, exactly; the
sparse path must give the dense path's codes, reconstruction and gradients.
"""

import numpy as np
import pytest
import torch

from skconcepts.sae import TopKSAE
from skconcepts.sae import _modules as M


def _reference_mask(pos, n_keep):
    # the documented rule: the n_keep largest of the flattened batch, ties
    # by flat (row-major) position; only positive entries are codes
    flat = pos.reshape(-1)
    order = torch.sort(flat, descending=True, stable=True).indices[:n_keep]
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[order] = True
    return mask.reshape(pos.shape) & (pos > 0)


def _inputs(seed):
    g = torch.Generator().manual_seed(seed)
    B = int(torch.randint(1, 60, (1,), generator=g))
    k = int(torch.randint(2, 80, (1,), generator=g))
    kind = seed % 5
    if kind == 0:
        pre = torch.randn(B, k, generator=g)
    elif kind == 1:  # many ties: integers
        pre = torch.randint(-3, 4, (B, k), generator=g).to(torch.float32)
    elif kind == 2:  # duplicated rows: ties across rows
        pre = torch.randn(B, k, generator=g)
        pre[B // 2 :] = pre[: B - B // 2].clone()
    elif kind == 3:  # few positive entries
        pre = torch.randn(B, k, generator=g) - 2.5
    else:  # rows of very different scales
        pre = torch.randn(B, k, generator=g) * torch.rand(B, 1, generator=g) * 10
    top_k = int(torch.randint(1, k + 2, (1,), generator=g))
    return torch.relu(pre), top_k * B


@pytest.mark.parametrize("sample", [None, 7, 64])
def test_batch_topk_mask_equals_the_stable_sort_reference(monkeypatch, sample):
    # sample=None: the default sample (small inputs take the plain top-n);
    # small samples force the sampled lower bound and its retries
    if sample is not None:
        monkeypatch.setattr(M, "BATCH_TOPK_SAMPLE", sample)
    for seed in range(150):
        pos, n_keep = _inputs(seed)
        mask = M.batch_topk_mask(pos, n_keep)
        assert torch.equal(mask, _reference_mask(pos, n_keep)), seed
        assert int(mask.sum()) == min(n_keep, int((pos > 0).sum()))


def test_batch_topk_mask_large_batch_and_adversarial_sample(monkeypatch):
    g = torch.Generator().manual_seed(0)
    pos = torch.relu(
        torch.randn(512, 300, generator=g) + torch.randn(512, 1, generator=g)
    )
    pos[100:140] = pos[:40].clone()  # tied rows
    assert torch.equal(M.batch_topk_mask(pos, 16 * 512), _reference_mask(pos, 16 * 512))
    # a sample whose entries are the largest of the batch: its lower bound is
    # too high, the bound is lowered until enough entries are gathered
    monkeypatch.setattr(M, "BATCH_TOPK_SAMPLE", 4096)
    flat = pos.reshape(-1)
    stride = flat.numel() // 4096
    while torch.gcd(torch.tensor(stride), torch.tensor(flat.numel())) != 1:
        stride -= 1
    adv = pos.clone().reshape(-1)
    adv[::stride] += 100.0
    adv = adv.reshape(pos.shape)
    for n_keep in (500, 4000, 20000):
        assert torch.equal(M.batch_topk_mask(adv, n_keep), _reference_mask(adv, n_keep))


def test_batchtopk_threshold_is_the_smallest_kept_code():
    # the inference threshold keeps its definition: running mean of the
    # smallest kept positive code of each batch (the first batch sets it)
    g = torch.Generator().manual_seed(1)
    rule = M.BatchTopKRule(3)
    pre1, pre2 = torch.randn(20, 30, generator=g), torch.randn(20, 30, generator=g)
    rule.select(pre1)
    m1 = torch.relu(pre1)[_reference_mask(torch.relu(pre1), 60)].min()
    assert float(rule.threshold) == float(m1)
    rule.select(pre2)
    m2 = torch.relu(pre2)[_reference_mask(torch.relu(pre2), 60)].min()
    assert float(rule.threshold) == pytest.approx(float(m1 + 0.01 * (m2 - m1)))
    # inference: every pre-activation above the threshold, row by row
    codes = rule.infer_codes(pre2)
    assert torch.equal(codes != 0, pre2 > rule.threshold)


def test_sampled_dots_match_the_dense_product():
    # unsorted indices and repeated indices in a row (the padding)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 5, generator=g), torch.randn(11, 5, generator=g)
    idx = torch.randint(0, 11, (7, 4), generator=g)
    idx[:, -1] = idx[:, 0]
    got = M._sampled_dots(a, b, idx)
    np.testing.assert_allclose(got, (a @ b.T).gather(1, idx), rtol=1e-5, atol=1e-6)
    assert M._sampled_dots(a[:0], b, idx[:0]).shape == (0, 4)


def _module_and_batch(share=None):
    est = TopKSAE(40, 3, activation="batchtopk", max_epochs=1, random_state=0)
    X = np.random.RandomState(0).standard_normal((64, 12)).astype(np.float32)
    X[32:48] = X[:16]  # duplicated rows: ties in the selection
    est.fit(X)
    state = est._device_state(torch.device("cpu"), torch.float32)
    return state["module"], torch.from_numpy(X)


def _step(module, xb, sparse_ok):
    module.zero_grad(set_to_none=True)
    module.rule.threshold.fill_(float("nan"))
    out = module(xb, sparse_ok=sparse_ok)
    loss = ((xb - out.x_hat) ** 2).sum() + out.codes.square().sum() * 0.1
    loss.backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters()}
    return out, grads, float(module.rule.threshold)


@pytest.mark.parametrize("share", [M.BATCH_TOPK_SPARSE_SHARE, 0.0])
def test_batchtopk_sparse_path_equals_the_dense_path(monkeypatch, share):
    # share 0.0: every selection is "too wide", the dense fallback runs
    monkeypatch.setattr(M, "BATCH_TOPK_SPARSE_SHARE", share)
    module, xb = _module_and_batch()
    dense, g_dense, thr_dense = _step(module, xb, sparse_ok=False)
    fast, g_fast, thr_fast = _step(module, xb, sparse_ok=True)
    assert (fast.idx is not None) == (share > 0)  # the sparse path is taken
    assert thr_fast == thr_dense
    assert torch.equal(fast.codes != 0, dense.codes != 0)
    assert torch.equal(fast.fired(), dense.fired())
    assert int(fast.l0_sum()) == int(dense.l0_sum()) == 3 * xb.shape[0]
    torch.testing.assert_close(fast.codes, dense.codes)
    torch.testing.assert_close(fast.x_hat, dense.x_hat)
    for name, g in g_dense.items():
        torch.testing.assert_close(g_fast[name], g, rtol=1e-4, atol=1e-5)


def test_padded_selection_of_an_empty_share():
    # a data-parallel share may keep nothing (or hold no row): t >= 1 pads
    pre = -torch.rand(4, 6)
    sel, idx = M.padded_selection(pre, torch.zeros(4, 6, dtype=torch.bool))
    assert sel.shape == idx.shape == (4, 1) and not sel.any()
    sel, idx = M.padded_selection(pre[:0], torch.zeros(0, 6, dtype=torch.bool))
    assert sel.shape == (0, 1)
