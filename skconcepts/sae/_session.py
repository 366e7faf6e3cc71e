"""The training state of the SAE engine and how a fit starts or resumes.

A :class:`_Session` lives from the first ``fit`` / ``partial_fit`` to the
next ``fit`` (never pickled): the torch module, the Adam optimiser, the
seeded CPU generator, the step and epoch counters, the dead-atom counters,
the learning-rate schedule, ``history`` and, during a training call, the
callbacks (built-in then the user's), the data-parallel state ``dp`` and the
validation data of early stopping.

:func:`new_session` initialises a model from a device sample of the data
(the estimator's hooks ``_init_pre_bias``, ``_init_dictionary``,
``_make_rule``; JumpReLU thresholds calibrated by
:func:`calibrate_jumprelu`); :func:`resume_session` rebuilds one from the
fitted NumPy state (``partial_fit`` after unpickling).
"""

import math

import torch

from .._backend import make_generator
from ._modules import JumpReLURule, ReLURule, SAEModule

#: Warm-up steps of the learning rate when training by ``partial_fit``.
STREAM_WARMUP_STEPS = 50

#: Rows of the initialisation sample that calibrate the JumpReLU thresholds,
#: and the pre-activations (values) the quantile reads at most.
CALIBRATION_ROWS = 4096
CALIBRATION_VALUES = 2**24


class _Session:
    """Training state kept between ``partial_fit`` calls (never pickled)."""

    def __init__(self, module, optimizer, generator, data_var, device, dtype):
        self.module = module
        self.optimizer = optimizer
        self.generator = generator
        self.data_var = data_var
        self.device = device
        self.dtype = dtype
        self.step = 0
        self.epoch = 0
        self.dp = None  # the data-parallel state (sae._parallel), set by _train
        # names of the loss terms computed on the global batch (data parallel)
        self.global_terms = set()
        self.total_steps = None
        self.warmup_steps = STREAM_WARMUP_STEPS
        self.base_lr = optimizer.param_groups[0]["lr"]
        self.history = []
        self.callbacks = []  # during a training call: built-in, then the user's
        self.validation = None  # during a training call: (X, rows or tensor)
        self.epoch_rows = 0  # rows of the last epoch (all ranks)
        self.planned_epochs = None  # epochs of the current training call
        k = module.enc_weight.shape[0]
        self.steps_since_fired = torch.zeros(k, dtype=torch.long, device=device)


#: Share of the steps of ``fit`` over which the learning rate decays
#: linearly to 0 at the end (warm-up, constant, short decay).
LR_DECAY_FRACTION = 0.2


def lr_factor(step, warmup, total):
    """Linear warm-up, constant, then linear decay to 0 over the last steps.

    The decay covers the last :data:`LR_DECAY_FRACTION` of ``total`` steps
    (constant after the warm-up when ``total`` is None, as in
    ``partial_fit``). A cosine decay over the whole fit halves the mean
    learning rate and learned less per epoch (issue 14).
    """
    f = min(1.0, (step + 1) / max(1, warmup))
    if total is not None:
        start = max(warmup, int(total * (1.0 - LR_DECAY_FRACTION)))
        if step >= start:
            f *= max(0.0, (total - step) / max(1, total - start))
    return f


def make_optimizer(module, learning_rate):
    """Adam over the trainable parameters (one fused kernel when available)."""
    params = [p for p in module.parameters() if p.requires_grad]
    try:  # one fused kernel for all parameters (CPU and CUDA, torch >= 2.4)
        return torch.optim.Adam(params, lr=learning_rate, fused=True)
    except (RuntimeError, TypeError, ValueError):  # pragma: no cover
        return torch.optim.Adam(params, lr=learning_rate, foreach=True)


@torch.no_grad()
def calibrate_jumprelu(rule, X_init, enc_w, enc_b, b_pre, top_k, scale):
    """Start the JumpReLU thresholds at the quantile that keeps ``top_k`` codes.

    The ``1 - top_k / n_concepts`` quantile of the rectified pre-activations
    of the first :data:`CALIBRATION_ROWS` rows of the sample (at least
    ``1e-6 * scale``), the same for every atom.
    """
    n_concepts = enc_w.shape[0]
    pre = torch.addmm(enc_b, X_init[:CALIBRATION_ROWS] - b_pre, enc_w.t()).relu()
    q = 1.0 - min(1.0, top_k / n_concepts)
    thr = torch.quantile(pre.reshape(-1)[:CALIBRATION_VALUES].float(), q)
    thr = thr.to(enc_w.dtype).clamp_min(1e-6 * scale)
    rule.log_threshold.data.fill_(float(torch.log(thr)))


def new_session(est, X, device, dtype):
    """A new model initialised from a sample of ``X`` (``fit``)."""
    gen = make_generator(est.random_state)
    X_init = est._init_sample(X, gen, device, dtype)
    with torch.no_grad():
        b_pre = est._init_pre_bias(X_init).to(dtype)
        data_var = est._data_var(X_init)
        data_var = data_var if data_var > 0 else 1.0
        scale = math.sqrt(data_var)
        dictionary = est._init_dictionary(X_init, b_pre, gen)
        D = dictionary.weight().detach()
        sq = (D * D).sum(1, keepdim=True)
        enc_w = D / sq.clamp_min(torch.finfo(dtype).tiny)
        enc_b = torch.zeros(est.n_concepts, dtype=dtype, device=device)
        rule = est._make_rule(data_scale=scale)
        if isinstance(rule, JumpReLURule):
            calibrate_jumprelu(rule, X_init, enc_w, enc_b, b_pre, est.top_k, scale)
    module = SAEModule(enc_w, enc_b, b_pre, rule, dictionary).to(
        device=device, dtype=dtype
    )
    return _Session(module, est._make_optimizer(module), gen, data_var, device, dtype)


def resume_session(est, X, device, dtype):
    """A session restarted from the fitted NumPy state (e.g. after pickling)."""
    gen = make_generator(est.random_state)
    inf = est._device_state(device, dtype)["module"]
    rule = est._make_rule(
        data_scale=1.0,
        threshold=None if est.threshold_ is None else inf.rule.export(),
    )
    X_init = est._init_sample(X, gen, device, dtype)
    with torch.no_grad():
        data_var = est._data_var(X_init) or 1.0
    if isinstance(rule, ReLURule):
        rule.scale = math.sqrt(data_var)
    if isinstance(rule, JumpReLURule):
        rule.bandwidth = 1e-3 * math.sqrt(data_var)
    module = SAEModule(
        inf.enc_weight.data,
        inf.enc_bias.data,
        inf.b_pre.data,
        rule,
        est._dictionary_from_fitted(device, dtype),
    ).to(device=device, dtype=dtype)
    return _Session(module, est._make_optimizer(module), gen, data_var, device, dtype)
