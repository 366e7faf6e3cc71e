"""Torch pieces of a sparse autoencoder: codec, sparsity rules, dictionaries.

An SAE encodes ``z = sigma(E (a - b_pre))`` and decodes ``a_hat = z D + b_pre``.
This module holds the pieces; :mod:`skconcepts.sae._engine` trains them.

- :class:`SAEModule`: encoder (``enc_weight`` of shape ``(k, d)``, ``enc_bias``),
  the pre-decoder bias ``b_pre``, a sparsity rule and a dictionary.
- Sparsity rules (``sigma``): :class:`TopKRule`, :class:`BatchTopKRule`,
  :class:`ReLURule` (ReLU + L1), :class:`JumpReLURule`.
- Dictionaries: :class:`FreeDictionary` (unit-norm rows) and
  :class:`ArchetypalDictionary` (``D = (W C + Lambda) exp(s)``).
- :class:`_SparseCodec`: the TopK fast path. Only ``top_k`` of the ``k``
  pre-activations of a row are kept, so the decoder and every gradient except
  the encoder's forward product are sparse: the backward pass costs
  ``O(batch * top_k * d)`` instead of four dense ``batch x k x d`` products.
- :func:`kmeans_torch`: the shared seeded k-means of
  :mod:`skconcepts._kmeans` (archetypal candidates), re-exported.

Nothing here touches the global torch RNG: every random draw takes a
``torch.Generator`` on the CPU and is moved to the device afterwards.
"""

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .._kmeans import kmeans as kmeans_torch  # noqa: F401 (re-exported)

# --------------------------------------------------------------------------
# the sparse TopK codec


def _coo(rows, cols, values, shape):
    return torch.sparse_coo_tensor(
        torch.stack([rows, cols]), values, shape, check_invariants=False
    )


def _sampled_dots(a, b, idx):
    """``out[i, j] = a[i] . b[idx[i, j]]`` (``a (n, d)``, ``b (k, d)``, ``idx (n, t)``).

    A sampled product over the CSR pattern of ``idx``: ``n * t * d``
    multiply-adds and no ``(n, t, d)`` gather.
    """
    n, t = idx.shape
    if n == 0 or t == 0:
        return torch.zeros((n, t), dtype=a.dtype, device=a.device)
    crow = torch.arange(0, n * t + 1, t, device=idx.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CSR support is in beta state"
        pattern = torch.sparse_csr_tensor(
            crow,
            idx.reshape(-1),
            torch.zeros(n * t, dtype=a.dtype, device=a.device),
            (n, b.shape[0]),
            check_invariants=False,
        )
    out = torch.sparse.sampled_addmm(pattern, a, b.t(), beta=0.0)
    return out.values().reshape(n, t)


class _SparseCodec(torch.autograd.Function):
    """Kept codes and their reconstruction, with a sparse backward pass.

    ``forward(xc, enc_weight, enc_bias, dictionary, idx, sel_pre)`` returns
    ``vals = relu(sel_pre)`` (``(B, t)``, the kept codes, ``sel_pre`` being
    the pre-activations ``xc @ enc_weight.T + enc_bias`` at ``idx``) and
    ``rec = sum_j vals[:, j] dictionary[idx[:, j]]`` (``(B, d)``).

    Gradients flow to ``xc``, ``enc_weight``, ``enc_bias`` and ``dictionary``
    through the kept entries only (a kept pre-activation is the only one with
    a non-zero derivative under TopK), computed with sparse products.
    """

    @staticmethod
    def forward(ctx, xc, enc_weight, enc_bias, dictionary, idx, sel_pre):
        vals = torch.relu(sel_pre)
        rec = F.embedding_bag(idx, dictionary, per_sample_weights=vals, mode="sum")
        ctx.save_for_backward(xc, enc_weight, dictionary, idx, vals)
        return vals, rec

    @staticmethod
    def backward(ctx, g_vals, g_rec):
        xc, enc_weight, dictionary, idx, vals = ctx.saved_tensors
        B, t = idx.shape
        k = dictionary.shape[0]
        flat_idx = idx.reshape(-1)
        rows = torch.arange(B, device=idx.device).repeat_interleave(t)
        g_xc = g_we = g_be = g_dict = None
        if g_rec is not None:
            # d rec / d vals_bj = dictionary[idx_bj]: the B x t dot products
            # <g_rec[b], dictionary[idx_bj]> only (no B x t x d gather)
            dvals = _sampled_dots(g_rec, dictionary, idx)
            if ctx.needs_input_grad[3]:
                g_dict = torch.sparse.mm(
                    _coo(flat_idx, rows, vals.reshape(-1), (k, B)), g_rec
                )
        else:
            dvals = torch.zeros_like(vals)
        if g_vals is not None:
            dvals = dvals + g_vals
        dpre = (dvals * (vals > 0)).reshape(-1)
        if ctx.needs_input_grad[1]:
            g_we = torch.sparse.mm(_coo(flat_idx, rows, dpre, (k, B)), xc)
        if ctx.needs_input_grad[2]:
            g_be = torch.zeros(k, dtype=dpre.dtype, device=dpre.device)
            g_be.index_add_(0, flat_idx, dpre)
        if ctx.needs_input_grad[0]:
            g_xc = torch.sparse.mm(_coo(rows, flat_idx, dpre, (B, k)), enc_weight)
        return g_xc, g_we, g_be, g_dict, None, None


def sparse_codec(xc, enc_weight, enc_bias, dictionary, idx, sel_pre):
    """Differentiable ``(vals, rec)`` of the codes kept at ``idx``.

    See :class:`_SparseCodec`. ``sel_pre`` must be the pre-activations at
    ``idx`` (computed without gradient).
    """
    return _SparseCodec.apply(xc, enc_weight, enc_bias, dictionary, idx, sel_pre)


# --------------------------------------------------------------------------
# sparsity rules


class _Rule(nn.Module):
    """A sparsity rule ``sigma``: pre-activations -> codes.

    ``sparse = True`` marks rules whose training codes have few kept entries
    per row; the engine then uses the :func:`sparse_codec` fast path and calls
    :meth:`select` (``-> (sel, idx)``, the pre-activations at the kept
    indices, ``(B, t)``; padding entries have a pre-activation <= 0) instead
    of :meth:`train_codes`. ``select`` may return ``(mask, None)``: the
    module then computes dense codes ``relu(pre) * mask``.
    """

    sparse = False

    def train_codes(self, pre, dp=None):
        """Differentiable codes of a training batch (dense).

        ``dp`` is the data-parallel state of the session
        (:class:`skconcepts.sae._parallel._DataParallel`) or None; a rule
        whose selection spans the batch (BatchTopK) uses it to select over
        the global batch.
        """
        raise NotImplementedError

    def infer_codes(self, pre):
        """Codes at inference; must treat every row independently."""
        return self.train_codes(pre)

    def penalty(self, pre, codes, dictionary):
        """Sparsity penalty added to the loss (a scalar tensor) or None."""
        return None

    def after_step(self):
        """Called after each optimiser step (e.g. to clamp a parameter)."""

    def export(self):
        """Learned inference threshold(s) as a tensor, or None."""
        return None


def _row_mean(v):
    """Mean of a per-row vector; 0 (not NaN) for an empty batch share."""
    return v.sum() / max(1, v.shape[0])


class TopKRule(_Rule):
    """Keep the ``top_k`` largest pre-activations of each row, then ReLU."""

    sparse = True

    def __init__(self, top_k):
        super().__init__()
        self.top_k = int(top_k)

    def select(self, pre, dp=None):
        return pre.topk(self.top_k, dim=1)

    def train_codes(self, pre, dp=None):
        vals, idx = pre.topk(self.top_k, dim=1)
        return torch.zeros_like(pre).scatter(1, idx, torch.relu(vals))


#: Entries of the strided sample from which :func:`batch_topk_mask` takes a
#: lower bound of the selection threshold (any sample is exact; its size only
#: sets the cost).
BATCH_TOPK_SAMPLE = 2**15

#: BatchTopK takes the sparse path (:func:`sparse_codec` over padded per-row
#: indices) when the row keeping the most codes keeps at most this share of
#: the atoms; a wider selection is decoded densely.
BATCH_TOPK_SPARSE_SHARE = 0.25


def _kth_largest(flat, n):
    """The ``n``-th largest entry of the 1-d tensor ``flat`` (``n < len(flat)``).

    Exact: a lower bound ``L`` is read from a strided sample, the entries
    ``>= L`` are gathered and, when there are at least ``n`` of them, the
    ``n``-th largest entry is among them (every larger entry is ``>= L``).
    Otherwise the sample bound is lowered (twice the margin) and, as a last
    resort, ``flat.topk(n)`` is used. Costs about two passes over ``flat``
    instead of a top-``n`` over it.
    """
    N = flat.numel()
    stride = max(1, N // BATCH_TOPK_SAMPLE)
    while stride > 1 and math.gcd(stride, N) != 1 and stride > N // (4 * n):
        stride -= 1  # a stride coprime with N (and the row length) mixes columns
    sample = flat[::stride]
    m = sample.numel()
    q = min(m, math.ceil(n * m / N * 1.25) + 32)
    while q < m:
        low = sample.topk(q).values[-1]
        cand = flat[flat >= low]
        c = cand.numel()
        if c >= n:
            # the n-th largest of cand: its (c - n + 1)-th smallest
            return cand.topk(c - n + 1, largest=False).values.max()
        q = min(m, 2 * q)
    return flat.topk(n).values[-1]


@torch.no_grad()
def batch_topk_mask(pos, n_keep, return_threshold=False):
    """Boolean mask of the BatchTopK selection of non-negative codes ``pos``.

    The ``n_keep`` largest entries of ``pos`` over the whole ``(B, k)`` batch,
    restricted to the positive ones (a zero code is zero whether it is kept
    or not). Ties at the threshold are broken in row-major order: among the
    entries equal to the ``n_keep``-th largest, those of the earlier rows
    (then the earlier atoms) are kept, so the mask is exactly that of a
    stable descending sort of ``pos.reshape(-1)`` cut at ``n_keep``.

    With ``return_threshold=True`` returns ``(mask, tau)``: ``tau`` the
    ``n_keep``-th largest entry (then the smallest kept one) when it is
    positive, else None (every positive entry is kept).
    """
    flat = pos.reshape(-1)
    tau = None
    if n_keep < flat.numel():
        tau = _kth_largest(flat, n_keep)
        if tau <= 0:  # at most n_keep positive entries: all of them
            tau = None
    if tau is None:
        mask = pos > 0
    else:
        mask = pos >= tau
        extra = int(torch.count_nonzero(mask)) - n_keep
        if extra > 0:  # ties at tau: drop the last ones in row-major order
            ties = (flat == tau).nonzero().squeeze(1)
            mask.view(-1)[ties[ties.numel() - extra :]] = False
    return (mask, tau) if return_threshold else mask


def padded_selection(pre, mask, counts=None):
    """``(sel, idx)`` of shape ``(B, t)`` for :func:`sparse_codec` from a mask.

    ``t`` is the largest number of kept entries of a row (at least 1); row
    ``b`` lists its kept atoms in increasing order, then pads with atom 0 and
    a pre-activation of 0 (a zero code, which carries no gradient and adds
    nothing to the reconstruction). ``counts``: ``mask.sum(1)`` if known.
    """
    B = mask.shape[0]
    rows, cols = mask.nonzero(as_tuple=True)  # row-major order
    if counts is None:
        counts = torch.count_nonzero(mask, dim=1)
    t = max(1, int(counts.max()) if B else 0)  # embedding_bag needs t >= 1
    starts = counts.cumsum(0) - counts
    slot = torch.arange(rows.numel(), device=rows.device) - starts[rows]
    idx = torch.zeros((B, t), dtype=torch.long, device=pre.device)
    sel = torch.zeros((B, t), dtype=pre.dtype, device=pre.device)
    idx[rows, slot] = cols
    sel[rows, slot] = pre[rows, cols]
    return sel, idx


class BatchTopKRule(_Rule):
    """Keep the ``top_k * batch`` largest pre-activations over the batch.

    Ties at the threshold are broken in row-major order (see
    :func:`batch_topk_mask`); under data parallelism every entry equal to
    the global threshold is kept. Training takes the sparse path of
    :func:`sparse_codec` (per-row kept atoms, padded to the widest row) when
    the widest row keeps at most :data:`BATCH_TOPK_SPARSE_SHARE` of the
    atoms, else the codes are dense: the same codes and gradients.

    At inference a row keeps every pre-activation above the learned threshold
    ``threshold``: an exponential running mean (``momentum``) of the smallest
    kept positive pre-activation of each training batch.
    """

    sparse = True

    def __init__(self, top_k, threshold=None, momentum=0.01):
        super().__init__()
        self.top_k = int(top_k)
        self.momentum = momentum
        init = float("nan") if threshold is None else float(threshold)
        self.register_buffer("threshold", torch.tensor(init))

    @torch.no_grad()
    def keep_mask(self, pre, dp=None):
        """Mask of the kept entries of a training batch; updates ``threshold``."""
        pos = torch.relu(pre)
        if dp is None:
            mask, m = batch_topk_mask(
                pos, self.top_k * pre.shape[0], return_threshold=True
            )
        else:
            # a share of a global batch of dp.batch_rows rows: the kept
            # entries are those at or above the global (top_k * B)-th largest
            # value, found from every share's own top candidates (ties
            # aside, the single-process selection; relu zeros code 0 anyway)
            n_keep = self.top_k * dp.batch_rows
            flat = pos.reshape(-1)
            n_local = min(n_keep, flat.numel())
            cand = torch.full((n_keep,), -torch.inf, dtype=pos.dtype, device=pos.device)
            cand[:n_local] = flat.topk(n_local).values
            top = dp.all_gather(cand).topk(n_keep).values
            mask = (pos >= top[-1]) & (pos > 0)
            kept = top[top > 0]  # the global batch's smallest kept code
            m = kept.min() if kept.numel() else None
        if m is None and dp is None:  # every positive entry is kept
            kept = pos[mask]
            m = kept.min() if kept.numel() else None
        if m is not None:
            if torch.isnan(self.threshold):
                self.threshold.copy_(m)
            else:
                self.threshold.lerp_(m, self.momentum)
        return mask

    def select(self, pre, dp=None):
        mask = self.keep_mask(pre, dp)
        counts = torch.count_nonzero(mask, dim=1)
        widest = int(counts.max()) if mask.shape[0] else 0
        if widest > BATCH_TOPK_SPARSE_SHARE * pre.shape[1]:
            return mask, None
        return padded_selection(pre, mask, counts)

    def train_codes(self, pre, dp=None):
        return torch.relu(pre) * self.keep_mask(pre.detach(), dp)

    def infer_codes(self, pre):
        thr = self.threshold
        if torch.isnan(thr):
            thr = torch.zeros_like(thr)
        return torch.where(pre > thr, torch.relu(pre), torch.zeros_like(pre))

    def export(self):
        return self.threshold


class ReLURule(_Rule):
    """ReLU codes with an L1 penalty ``coef * mean_b sum_j z_bj ||D_j|| / s``.

    ``s`` is the data scale (root mean squared norm of the centred data), so
    that ``coef`` does not depend on the units of the activations.
    """

    def __init__(self, coef, scale=1.0):
        super().__init__()
        self.coef = float(coef)
        self.scale = float(scale)

    def train_codes(self, pre, dp=None):
        return torch.relu(pre)

    def penalty(self, pre, codes, dictionary):
        norms = dictionary.norm(dim=1)
        return self.coef * _row_mean(codes @ norms) / self.scale


class _JumpReLUFn(torch.autograd.Function):
    """``pre * H(pre - theta)`` with the straight-through estimator for theta."""

    @staticmethod
    def forward(ctx, pre, theta, bandwidth):
        ctx.save_for_backward(pre, theta)
        ctx.bandwidth = bandwidth
        return pre * (pre > theta)

    @staticmethod
    def backward(ctx, g):
        pre, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        g_pre = g * (pre > theta)
        # rectangle kernel pseudo-derivative (Rajamanoharan et al., 2024)
        window = ((pre - theta).abs() < eps / 2).to(g.dtype)
        g_theta = -(theta / eps) * window * g
        return g_pre, g_theta.sum(0), None


class _StepFn(torch.autograd.Function):
    """``H(pre - theta)`` with the straight-through estimator for theta."""

    @staticmethod
    def forward(ctx, pre, theta, bandwidth):
        ctx.save_for_backward(pre, theta)
        ctx.bandwidth = bandwidth
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, g):
        pre, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        window = ((pre - theta).abs() < eps / 2).to(g.dtype)
        return None, (-(1.0 / eps) * window * g).sum(0), None


class JumpReLURule(_Rule):
    """JumpReLU: ``z = pre * H(pre - theta_j)`` with learned per-atom thresholds.

    ``theta = exp(log_theta)`` is trained with a straight-through estimator
    (rectangle kernel of width ``bandwidth``). The penalty is
    ``coef * mean_b L0_b / top_k``: the number of active atoms relative to
    the target ``top_k``.
    """

    def __init__(self, n_concepts, top_k, coef, bandwidth, log_threshold=None):
        super().__init__()
        self.top_k = int(top_k)
        self.coef = float(coef)
        self.bandwidth = float(bandwidth)
        init = torch.zeros(n_concepts) if log_threshold is None else log_threshold
        self.log_threshold = nn.Parameter(init.clone())

    def train_codes(self, pre, dp=None):
        theta = self.log_threshold.exp()
        return _JumpReLUFn.apply(pre, theta, self.bandwidth)

    def infer_codes(self, pre):
        theta = self.log_threshold.exp()
        return pre * (pre > theta)

    def penalty(self, pre, codes, dictionary):
        theta = self.log_threshold.exp()
        l0 = _row_mean(_StepFn.apply(pre, theta, self.bandwidth).sum(1))
        return self.coef * l0 / self.top_k

    def export(self):
        return self.log_threshold.exp()


# --------------------------------------------------------------------------
# dictionaries


class FreeDictionary(nn.Module):
    """A free dictionary whose rows are projected back to unit norm."""

    def __init__(self, weight, normalize=True):
        super().__init__()
        self.atoms = nn.Parameter(weight.clone())
        self.normalize = normalize
        if normalize:
            self.project_()

    def weight(self):
        return self.atoms

    @torch.no_grad()
    def project_(self):
        if self.normalize:
            norms = self.atoms.norm(dim=1, keepdim=True)
            self.atoms.div_(norms.clamp_min(torch.finfo(norms.dtype).tiny))


def project_row_stochastic_(W, fallback=None):
    """``W <- relu(W)`` then rows divided by their sum, in place.

    A row whose entries are all <= 0 would become 0/0; it is set to the
    one-hot vector of its largest entry instead (of ``fallback`` when given),
    so the projection never produces NaN or an all-zero atom.
    """
    raw = W.clone() if fallback is None else fallback
    W.clamp_(min=0)
    s = W.sum(dim=1, keepdim=True)
    bad = s.squeeze(1) <= 0
    if bool(bad.any()):
        onehot = F.one_hot(raw[bad].argmax(dim=1), W.shape[1]).to(W.dtype)
        W[bad] = onehot
        s[bad] = 1.0
    W.div_(s)
    return W


class ArchetypalDictionary(nn.Module):
    """``D = (W C + Lambda) * exp(s)`` (Fel et al., 2025).

    ``C`` (``(n_candidates, d)``, a buffer) holds candidate points from the
    data; ``W`` (``(k, n_candidates)``) is row-stochastic; each row of
    ``Lambda`` has norm at most ``relaxation`` (``relaxation=0`` gives the
    strict A-SAE: ``Lambda`` is a zero buffer, not a parameter); ``s`` is a
    learned scalar (when ``learn_scale``). :meth:`project_` restores the
    constraints after every optimiser step.
    """

    def __init__(
        self, candidates, W, relaxation, *, learn_scale=True, Lambda=None, log_scale=0.0
    ):
        super().__init__()
        self.relaxation = float(relaxation)
        self.register_buffer("candidates", candidates.clone())
        self.W = nn.Parameter(W.clone())
        k, d = W.shape[0], candidates.shape[1]
        lam = torch.zeros(k, d, dtype=W.dtype, device=W.device)
        if Lambda is not None:
            lam = Lambda.clone()
        if self.relaxation > 0:
            self.Lambda = nn.Parameter(lam)
        else:
            self.register_buffer("Lambda", torch.zeros_like(lam))
        s = torch.tensor(float(log_scale), dtype=W.dtype, device=W.device)
        if learn_scale:
            self.log_scale = nn.Parameter(s)
        else:
            self.register_buffer("log_scale", s)
        self.project_()

    def weight(self):
        return torch.addmm(self.Lambda, self.W, self.candidates) * self.log_scale.exp()

    @torch.no_grad()
    def project_(self):
        project_row_stochastic_(self.W)
        if self.relaxation > 0:
            norms = self.Lambda.norm(dim=1, keepdim=True)
            tiny = torch.finfo(norms.dtype).tiny
            self.Lambda.mul_((self.relaxation / norms.clamp_min(tiny)).clamp(max=1.0))


# --------------------------------------------------------------------------
# the autoencoder


class SAEOutput:
    """What one forward pass over a training batch produced.

    Attributes
    ----------
    x, xc : tensors ``(B, d)``
        The batch and the batch minus ``b_pre``.
    pre : tensor ``(B, k)``
        Pre-activations. Differentiable on the dense path; detached on the
        TopK sparse path (only the kept codes carry gradients there).
    idx, vals : tensors ``(B, t)`` or None
        Sparse path only: indices and (differentiable) values of kept codes
        (``t = top_k`` for TopK; for BatchTopK the widest row's count, the
        other rows padded with atom 0 and a zero value).
    x_hat : tensor ``(B, d)``
        Reconstruction ``z D + b_pre``.
    dictionary : tensor ``(k, d)``
        The dictionary used for this batch (differentiable).
    codes : tensor ``(B, k)``
        Dense, differentiable codes (built lazily on the sparse path).
    """

    def __init__(self, x, xc, pre, x_hat, dictionary, codes=None, idx=None, vals=None):
        self.x, self.xc, self.pre, self.x_hat = x, xc, pre, x_hat
        self.dictionary = dictionary
        self.idx, self.vals = idx, vals
        self._codes = codes

    @property
    def codes(self):
        if self._codes is None:
            # scatter_add: padding entries (atom 0, code 0) may repeat an index
            self._codes = torch.zeros_like(self.pre).scatter_add(1, self.idx, self.vals)
        return self._codes

    def fired(self):
        """Boolean ``(k,)``: atoms with a non-zero code somewhere in the batch."""
        if self.idx is not None:
            k = self.pre.shape[1]
            counts = torch.zeros(k, dtype=self.vals.dtype, device=self.vals.device)
            counts.index_add_(
                0, self.idx.reshape(-1), (self.vals > 0).reshape(-1).to(counts.dtype)
            )
            return counts > 0
        return (self._codes.detach() != 0).any(dim=0)

    def l0_sum(self):
        """Number of non-zero codes in the batch (a tensor)."""
        if self.idx is not None:
            return (self.vals.detach() > 0).sum()
        return (self._codes.detach() != 0).sum()


class SAEModule(nn.Module):
    """Encoder + sparsity rule + dictionary, with the pre-decoder bias.

    Parameters
    ----------
    enc_weight : tensor (k, d)
    enc_bias : tensor (k,)
    b_pre : tensor (d,)
    rule : _Rule
    dictionary : FreeDictionary or ArchetypalDictionary (any module with
        ``weight()`` and ``project_()``)
    """

    def __init__(self, enc_weight, enc_bias, b_pre, rule, dictionary):
        super().__init__()
        self.enc_weight = nn.Parameter(enc_weight.clone())
        self.enc_bias = nn.Parameter(enc_bias.clone())
        self.b_pre = nn.Parameter(b_pre.clone())
        self.rule = rule
        self.dictionary = dictionary

    def pre_activations(self, xc):
        return torch.addmm(self.enc_bias, xc, self.enc_weight.t())

    def training_encoder(self, x):
        """``(xc, W, b)`` a training forward pass encodes: ``x - b_pre``, the
        encoder's weight and bias (a subclass may encode a block of ``x``)."""
        return x - self.b_pre, self.enc_weight, self.enc_bias

    def forward(self, x, sparse_ok=True, dp=None):
        """Training forward pass; returns an :class:`SAEOutput`.

        ``dp``: the session's data-parallel state (or None), passed to the
        sparsity rule (a batch-wide rule selects over the global batch).
        """
        xc, W, bias = self.training_encoder(x)
        D = self.dictionary.weight()
        if self.rule.sparse and sparse_ok:
            with torch.no_grad():
                pre = torch.addmm(bias, xc, W.t())
                sel, idx = self.rule.select(pre, dp)
            if idx is not None:
                vals, rec = sparse_codec(xc, W, bias, D, idx, sel)
                return SAEOutput(x, xc, pre, rec + self.b_pre, D, idx=idx, vals=vals)
            # a selection too wide for the sparse path: `sel` is its mask
            pre = torch.addmm(bias, xc, W.t())
            codes = torch.relu(pre) * sel
        else:
            pre = torch.addmm(bias, xc, W.t())
            codes = self.rule.train_codes(pre, dp)
        x_hat = torch.addmm(self.b_pre, codes, D)
        return SAEOutput(x, xc, pre, x_hat, D, codes=codes)

    @torch.no_grad()
    def encode(self, x):
        """Inference codes (row-independent), dense ``(B, k)``."""
        return self.rule.infer_codes(self.pre_activations(x - self.b_pre))

    @torch.no_grad()
    def project_(self):
        self.dictionary.project_()
        self.rule.after_step()
