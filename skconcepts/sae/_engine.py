"""The one training engine every sparse autoencoder of skconcepts plugs into.

:class:`_BaseSAE` is a :class:`~skconcepts.base.ConceptExtractor` that owns the
training loop (``fit``, ``partial_fit``), the fitted NumPy state and inference.
A concrete SAE only says which dictionary it uses and, optionally, what side
information and extra loss terms it needs.

Training loop
-------------
For each epoch: the rows are cut into chunks that fit the device budget (one
chunk, moved once, when the data fits), the chunk order and a permutation of
the rows inside each chunk are drawn from a seeded CPU ``torch.Generator``,
and mini-batches are *gathered* from the tensors already on the device (no
``DataLoader``, no per-sample collation).

Data on disk (a NumPy memmap, or a view of one such as what
:func:`skconcepts._io.as_memmap` makes of a zarr / HDF5 / dask array) with
more rows than one streaming chunk is fitted with anonymous memory bounded by
a small multiple of the batch: device chunks have
``max(batch_size, min(DEVICE_BUDGET_BYTES // row_bytes,
STREAM_CHUNK_BATCHES * batch_size))`` rows (whole batches, copied once from
the file), and the initialisation sample has at most one chunk of rows,
drawn with replacement by ``torch.randint`` (duplicates dropped; no
permutation of all rows) and copied once. The shuffle is then chunk-local
(chunk order and rows inside a chunk), unlike the whole-data permutation of
an in-memory array that fits the device budget, so such a fit is not
bit-identical to the in-memory fit (the same quality; ``tests/test_scale``).
A memmap of at most one chunk is fitted exactly as the same array in memory.
In-memory arrays keep the fast path (one chunk when they fit the budget). The
variance of the initialisation sample is centred by row batches
(:data:`STAT_BATCH_ROWS`), never as a full-size copy. With
``early_stopping=True`` the validation rows of a streamed memmap are read
from the file by batches at every check (an in-memory array copies them to
the device once); what grows with ``n_samples`` is only index data: the
validation row numbers (8 bytes a row) and a boolean training mask.

One step is::

    out    = module(xb)                        # SAEOutput: pre, codes, x_hat, D
    losses = {"mse": ||x - x_hat||^2 / (B var), "sparsity": rule penalty,
              "auxk": AuxK dead-atom term, **self._extra_loss(out, side_b)}
    Adam step on sum(losses) (warm-up, constant, final linear decay; clipping)
    module.project_()                          # dictionary constraints

``mse`` is normalised by the total variance of the data (so it reads as
``1 - R^2``), which makes ``learning_rate``, ``max_grad_norm`` and the loss
coefficients independent of the units of the activations.

Plug-in interface (how to add an SAE, e.g. ``AlignedSAE``)
----------------------------------------------------------
Subclass :class:`_BaseSAE`, add the new constructor parameters to
``__init__`` and ``_parameter_constraints``, and override what you need:

``_prepare_fit_data(self, X, y, *, reset) -> (X, side)``
    Validate the input of ``fit``/``partial_fit``. ``side`` is a dict
    ``name -> ndarray`` of per-row side information (first axis
    ``n_samples``), e.g. ``{"modality": int array}``. Each array is moved to
    the device with its chunk and **sliced with the same indices as the rows
    of every batch**. Default: ``X`` validated, ``side = {}``.

``_batch_indices(self, n_rows, side, generator) -> iterable of LongTensor``
    The batch sampler of one epoch over one chunk of ``n_rows`` rows
    (``side`` holds that chunk's side tensors, on the device). Yield index
    tensors (CPU or device) into the chunk; the engine gathers
    ``X[idx]`` and ``side[name][idx]``. Default: a random permutation cut
    into ``batch_size`` pieces. A paired sampler yields, for instance,
    ``cat([i, partner[i]])``. Chunks are contiguous row ranges (the whole
    data when it fits the device budget); a sampler must draw its
    randomness from ``generator`` only.

``_extra_loss(self, out, side_batch, session) -> dict name -> scalar tensor``
    Extra loss terms computed from the batch's :class:`SAEOutput` ``out``
    (``out.codes``: dense differentiable codes ``(B, k)``; ``out.pre``:
    pre-activations; ``out.x``, ``out.x_hat``, ``out.dictionary``) and the
    batch's side tensors. They are added to the loss and averaged per epoch
    in ``history_``. On the TopK fast path only the kept codes carry a
    gradient (``out.pre`` is detached); set the class attribute
    ``_sparse_path = False`` to get fully differentiable pre-activations.

``_init_dictionary(self, X_init, b_pre, generator) -> module``
    The dictionary of a new fit (a module with ``weight() -> (k, d)`` and
    ``project_()``), built from a device sample ``X_init`` of the data.
    Default: random unit-norm rows (:class:`FreeDictionary`).
    ``_dictionary_from_fitted(self, device, dtype)`` rebuilds it from the
    NumPy state (to resume ``partial_fit``) and
    ``_export_dictionary(self, dictionary, dtype)`` writes the extra NumPy
    attributes (``components_`` is always written by the engine).

``_init_pre_bias(self, X_init) -> tensor (d,)``
    Initial ``b_pre`` (default: the mean of ``X_init``).

``_set_fit_metrics(self, X)``
    Called after training with the validated ``X``; the default sets
    ``reconstruction_r2_``, ``mean_l0_`` and ``dead_fraction_`` (one batched
    pass, :func:`_evaluate`). Override to add diagnostics (call ``super()``).

``fit``/``partial_fit`` signatures: a plug-in that needs ``y`` (e.g. a
modality label) may override them to change the docstring and signature,
decorated with ``_fit_context``, and call ``self._fit(X, y, partial=...)``.

The ``session`` (:class:`_Session`) passed to hooks and callbacks holds the
torch ``module``, the ``optimizer``, the ``generator``, ``step``, ``epoch``,
``history`` and ``data_var`` (the variance used to normalise the MSE).

Callbacks
---------
``callbacks`` is a list of objects with any of the methods
``on_train_begin(estimator, session)``,
``on_epoch_end(estimator, session, record) -> bool`` (a true return value
stops training) and ``on_train_end(estimator, session)``. ``record`` is the
epoch's entry of ``history_``. The learning rate of every step is
``session.base_lr`` times the schedule factor (:func:`_lr_factor`): a callback changes
the learning rate by setting ``session.base_lr`` (see
:class:`skconcepts.sae.LearningRateSchedule`); it may call
``estimator._export_state(session)`` to snapshot the model (see
:class:`skconcepts.sae.Checkpoint`). skorch callbacks have another protocol
and are refused with a ``TypeError``.
"""

import math
import sys
import time

import numpy as np
import torch

from .._backend import make_generator, to_numpy, to_tensor, torch_dtype
from .._compat import (
    Integral,
    Interval,
    Real,
    StrOptions,
    _fit_context,
    check_is_fitted,
)
from .._io import is_on_disk
from ..base import DEVICE_CONSTRAINT, ConceptExtractor, check_callbacks, unit_rows
from ._modules import (
    BatchTopKRule,
    FreeDictionary,
    JumpReLURule,
    ReLURule,
    SAEModule,
    TopKRule,
    sparse_codec,
)

#: Bytes of training data kept on the device at once. Larger inputs (e.g. a
#: memmap larger than memory) are streamed in chunks of this size.
DEVICE_BUDGET_BYTES = 2**30

#: Rows sampled to initialise a new fit (b_pre, data scale, k-means).
INIT_SAMPLES = 2**16

#: Batches per device chunk when the training data is an on-disk array (a
#: NumPy memmap, or what :func:`skconcepts._io.as_memmap` made of a zarr /
#: HDF5 / dask array): the chunk has
#: ``max(batch_size, min(DEVICE_BUDGET_BYTES // row_bytes,
#: STREAM_CHUNK_BATCHES * batch_size))`` rows (whole batches), so the
#: anonymous memory of the fit is bounded by a small multiple of the batch.
STREAM_CHUNK_BATCHES = 32

#: Rows per batch of the centring in the variance of the initialisation sample.
STAT_BATCH_ROWS = 4096

#: Warm-up steps of the learning rate when training by ``partial_fit``.
STREAM_WARMUP_STEPS = 50


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
        self.dp = None  # skconcepts.distributed context, set by _train
        # names of the loss terms computed on the global batch (data parallel)
        self.global_terms = set()
        self.total_steps = None
        self.warmup_steps = STREAM_WARMUP_STEPS
        self.base_lr = optimizer.param_groups[0]["lr"]
        self.history = []
        k = module.enc_weight.shape[0]
        self.steps_since_fired = torch.zeros(k, dtype=torch.long, device=device)


def _check_callbacks(callbacks):
    """The callbacks as a list (see :func:`skconcepts.base.check_callbacks`)."""
    return check_callbacks(callbacks)


#: Share of the steps of ``fit`` over which the learning rate decays
#: linearly to 0 at the end (warm-up, constant, short decay).
LR_DECAY_FRACTION = 0.2


def _lr_factor(step, warmup, total):
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


class _BaseSAE(ConceptExtractor):
    """Sparse autoencoder trained by the shared engine (see the module doc)."""

    _sparse_path = True

    _parameter_constraints: dict = {
        **ConceptExtractor._parameter_constraints,
        "n_concepts": [Interval(Integral, 1, None, closed="left")],
        "top_k": [Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"topk", "batchtopk", "jumprelu", "relu"})],
        "sparsity_coef": [Interval(Real, 0, None, closed="left")],
        "aux_k": [Interval(Integral, 1, None, closed="left"), None],
        "aux_coef": [Interval(Real, 0, None, closed="left")],
        "dead_steps": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_grad_norm": [Interval(Real, 0, None, closed="neither"), None],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "callbacks": [list, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "device": DEVICE_CONSTRAINT,
    }

    def __init__(
        self,
        n_concepts=64,
        top_k=8,
        *,
        activation="topk",
        sparsity_coef=1e-2,
        aux_k=None,
        aux_coef=1 / 32,
        dead_steps=50,
        max_epochs=60,
        batch_size=1024,
        learning_rate=4e-3,
        max_grad_norm=1.0,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        tol=1e-4,
        callbacks=None,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.n_concepts = n_concepts
        self.top_k = top_k
        self.activation = activation
        self.sparsity_coef = sparsity_coef
        self.aux_k = aux_k
        self.aux_coef = aux_coef
        self.dead_steps = dead_steps
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.max_grad_norm = max_grad_norm
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.callbacks = callbacks
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------ pickling
    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_session", None)
        return state

    # --------------------------------------------------------------- hooks
    def _prepare_fit_data(self, X, y, *, reset):
        return self._validate_X(X, reset=reset), {}

    def _batch_indices(self, n_rows, side, generator):
        perm = torch.randperm(n_rows, generator=generator)
        bs = self.batch_size
        return [perm[i : i + bs] for i in range(0, n_rows, bs)]

    def _extra_loss(self, out, side_batch, session):
        return {}

    def _extra_loss_names(self):
        """Names of the terms :meth:`_extra_loss` may return (``history_`` keys)."""
        return ()

    def _init_pre_bias(self, X_init):
        return X_init.mean(dim=0)

    def _init_dictionary(self, X_init, b_pre, generator):
        k, d = self.n_concepts, X_init.shape[1]
        atoms = torch.randn(k, d, generator=generator, dtype=torch.float64)
        return FreeDictionary(atoms.to(device=X_init.device, dtype=X_init.dtype))

    def _dictionary_from_fitted(self, device, dtype):
        atoms = torch.as_tensor(self.components_, dtype=dtype, device=device)
        return FreeDictionary(atoms)

    def _export_dictionary(self, dictionary, dtype):
        """Write NumPy attributes of the dictionary besides ``components_``."""

    # ----------------------------------------------------------- the rule
    def _check_sizes(self):
        if self.top_k > self.n_concepts:
            raise ValueError(
                f"top_k={self.top_k} must be <= n_concepts={self.n_concepts}."
            )

    def _make_rule(self, data_scale=1.0, threshold=None):
        act, k = self.activation, self.n_concepts
        if act == "topk":
            return TopKRule(self.top_k)
        if act == "batchtopk":
            return BatchTopKRule(self.top_k, threshold=threshold)
        if act == "relu":
            return ReLURule(self.sparsity_coef, scale=data_scale)
        log_thr = None if threshold is None else torch.log(threshold)
        return JumpReLURule(
            k,
            self.top_k,
            self.sparsity_coef,
            bandwidth=1e-3 * data_scale,
            log_threshold=log_thr,
        )

    # --------------------------------------------------------- inference
    def _device_state(self, device, dtype):
        """An inference :class:`SAEModule` built from the NumPy state."""

        def t(a):
            return torch.as_tensor(np.asarray(a), dtype=dtype, device=device)

        thr = None if self.threshold_ is None else t(self.threshold_)
        rule = self._make_rule(threshold=thr)
        D = t(self.components_)
        module = SAEModule(
            t(self.encoder_weights_),
            t(self.encoder_bias_),
            t(self.pre_bias_),
            rule,
            FreeDictionary(D, normalize=False),
        ).to(device=device, dtype=dtype)
        module.eval()
        scale = getattr(self, "_code_scale", None)
        scale = None if scale is None else t(scale)
        return {"module": module, "components": D, "scale": scale}

    def _encode(self, Xb, state):
        # the sparsity rule acts on the pre-activations, then the codes are
        # multiplied by the norms of the dictionary rows (the unit-norm
        # components_ convention): TopK selections and JumpReLU / BatchTopK
        # thresholds are those of the trained model
        codes = state["module"].encode(Xb)
        scale = state.get("scale")
        return codes if scale is None else codes * scale

    def _decode_offset(self):
        return self.pre_bias_

    # ------------------------------------------------------------ public
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the sparse autoencoder on ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations. A NumPy memmap larger than the device budget is
            streamed in chunks.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, partial=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Train for one pass over ``X`` and keep the optimiser state.

        Successive calls continue the same training session (Adam moments,
        step count, dead-atom counters), so a data set larger than memory
        can be fed chunk by chunk. The learning rate warms up over the
        first steps of the session and then stays at ``learning_rate``.
        The fitted NumPy state is exported after every call;
        ``reconstruction_r2_``, ``mean_l0_`` and ``dead_fraction_`` are
        measured on the last chunk, and each call adds one record to
        ``history_``. After ``fit``, ``partial_fit`` continues that session
        at the constant ``learning_rate``; after unpickling (the session is
        not pickled) it restarts Adam from the fitted weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A chunk of activations.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
            The estimator.
        """
        return self._fit(X, y, partial=True)

    # ----------------------------------------------------------- engine
    def _fit(self, X, y, *, partial):
        self._check_sizes()
        first = not partial or not hasattr(self, "components_")
        X, side = self._prepare_fit_data(X, y, reset=first)
        device = self._resolve_device()
        dtype = torch_dtype(X.dtype)
        session = getattr(self, "_session", None) if partial else None
        if session is not None and (session.device != device or session.dtype != dtype):
            session = None
        if session is None:
            if first:
                session = self._new_session(X, device, dtype)
            else:
                session = self._resume_session(X, device, dtype)
        self._session = session
        self._train(X, side, session, partial=partial)
        self._export_state(session)
        self._set_fit_metrics(X)
        return self

    def _streams(self, X):
        """Whether ``X`` is an on-disk array larger than one streaming chunk.

        Such an array is fitted with bounded memory: device chunks of
        :data:`STREAM_CHUNK_BATCHES` batches, an initialisation sample of at
        most one chunk, and streamed statistics. A memmap of at most one
        chunk is fitted exactly as the same array in memory.
        """
        if not is_on_disk(X):
            return False
        return X.shape[0] > self._stream_chunk_rows(X)

    def _stream_chunk_rows(self, X):
        bs = self.batch_size
        row_bytes = max(1, X.shape[1] * X.dtype.itemsize)
        rows = min(DEVICE_BUDGET_BYTES // row_bytes, STREAM_CHUNK_BATCHES * bs)
        return max(bs, rows // bs * bs)

    def _init_sample(self, X, generator, device, dtype):
        n = X.shape[0]
        if self._streams(X):
            # at most one chunk of rows, drawn with O(m) memory (no
            # permutation of all n rows; duplicates are dropped) and copied
            # once from the file
            m = min(INIT_SAMPLES, self._stream_chunk_rows(X))
            draw = torch.randint(n, (m,), generator=generator).numpy()
            return to_tensor(np.asarray(X[np.unique(draw)]), device, dtype)
        if n <= INIT_SAMPLES:
            rows = slice(None)
        else:
            perm = torch.randperm(n, generator=generator)[:INIT_SAMPLES]
            rows = np.sort(perm.numpy())
        return to_tensor(X[rows], device, dtype)

    def _data_var(self, X_init):
        """Total variance of the initialisation sample (normalises the MSE).

        ``mean_i ||x_i - mean||^2``, centred by row batches of
        :data:`STAT_BATCH_ROWS` into one vector of row sums: no centred
        copy of the sample (the per-row sums, hence the result, are the
        ones of the full-size computation).
        """
        n = X_init.shape[0]
        mean = X_init.mean(dim=0)
        row_sq = torch.empty(n, dtype=X_init.dtype, device=X_init.device)
        for start in range(0, n, STAT_BATCH_ROWS):
            cb = X_init[start : start + STAT_BATCH_ROWS] - mean
            row_sq[start : start + STAT_BATCH_ROWS] = (cb * cb).sum(1)
        return float(row_sq.mean())

    def _make_optimizer(self, module):
        params = [p for p in module.parameters() if p.requires_grad]
        try:  # one fused kernel for all parameters (CPU and CUDA, torch >= 2.4)
            return torch.optim.Adam(params, lr=self.learning_rate, fused=True)
        except (RuntimeError, TypeError, ValueError):  # pragma: no cover
            return torch.optim.Adam(params, lr=self.learning_rate, foreach=True)

    def _new_session(self, X, device, dtype):
        gen = make_generator(self.random_state)
        X_init = self._init_sample(X, gen, device, dtype)
        with torch.no_grad():
            b_pre = self._init_pre_bias(X_init).to(dtype)
            data_var = self._data_var(X_init)
            data_var = data_var if data_var > 0 else 1.0
            scale = math.sqrt(data_var)
            dictionary = self._init_dictionary(X_init, b_pre, gen)
            D = dictionary.weight().detach()
            sq = (D * D).sum(1, keepdim=True)
            enc_w = D / sq.clamp_min(torch.finfo(dtype).tiny)
            enc_b = torch.zeros(self.n_concepts, dtype=dtype, device=device)
            rule = self._make_rule(data_scale=scale)
            if isinstance(rule, JumpReLURule):
                pre = torch.addmm(enc_b, X_init[:4096] - b_pre, enc_w.t()).relu()
                q = 1.0 - min(1.0, self.top_k / self.n_concepts)
                thr = torch.quantile(pre.reshape(-1)[: 2**24].float(), q).to(dtype)
                thr = thr.clamp_min(1e-6 * scale)
                rule.log_threshold.data.fill_(float(torch.log(thr)))
        module = SAEModule(enc_w, enc_b, b_pre, rule, dictionary).to(
            device=device, dtype=dtype
        )
        return _Session(
            module, self._make_optimizer(module), gen, data_var, device, dtype
        )

    def _resume_session(self, X, device, dtype):
        """A session restarted from the fitted NumPy state (e.g. after pickling)."""
        gen = make_generator(self.random_state)
        state = self._device_state(device, dtype)
        inf = state["module"]
        rule = self._make_rule(
            data_scale=1.0,
            threshold=None if self.threshold_ is None else inf.rule.export(),
        )
        X_init = self._init_sample(X, gen, device, dtype)
        with torch.no_grad():
            data_var = self._data_var(X_init) or 1.0
        if isinstance(rule, ReLURule):
            rule.scale = math.sqrt(data_var)
        if isinstance(rule, JumpReLURule):
            rule.bandwidth = 1e-3 * math.sqrt(data_var)
        module = SAEModule(
            inf.enc_weight.data,
            inf.enc_bias.data,
            inf.b_pre.data,
            rule,
            self._dictionary_from_fitted(device, dtype),
        ).to(device=device, dtype=dtype)
        return _Session(
            module, self._make_optimizer(module), gen, data_var, device, dtype
        )

    # ------------------------------------------------------ data feeding
    def _chunk_rows(self, X, device):
        n = X.shape[0]
        in_place = (
            device.type == "cpu"
            and not isinstance(X, np.memmap)
            and X.flags.writeable
            and X.flags.c_contiguous
        )
        if self._streams(X):
            return self._stream_chunk_rows(X)
        if in_place or X.nbytes <= DEVICE_BUDGET_BYTES:
            return n
        row_bytes = max(1, X.nbytes // max(1, n))
        rows = max(1, DEVICE_BUDGET_BYTES // row_bytes)
        return max(self.batch_size, rows // self.batch_size * self.batch_size)

    def _iter_epoch(self, X, side, session, chunk_rows, train_mask, cache):
        """Yield ``(x_batch, side_batch)`` for one epoch."""
        n = X.shape[0]
        starts = list(range(0, n, chunk_rows))
        order = torch.randperm(len(starts), generator=session.generator).tolist()
        dev, dt = session.device, session.dtype
        for c in order:
            sl = slice(starts[c], min(starts[c] + chunk_rows, n))
            if cache.get("slice") == sl:
                Xd, sd, local = cache["X"], cache["side"], cache["local"]
            else:
                Xd = to_tensor(X[sl], dev, dt)
                sd = {
                    k: torch.as_tensor(np.asarray(v[sl]), device=dev)
                    for k, v in side.items()
                }
                local = None
                if train_mask is not None:
                    local = torch.as_tensor(np.flatnonzero(train_mask[sl]), device=dev)
                    if local.numel() == 0:
                        continue
                if len(starts) == 1:
                    cache.update(slice=sl, X=Xd, side=sd, local=local)
            if local is not None:
                sd_l = {k: v[local] for k, v in sd.items()}
                n_rows = local.numel()
            else:
                sd_l, n_rows = sd, Xd.shape[0]
            for idx in self._batch_indices(n_rows, sd_l, session.generator):
                idx = idx.to(dev)
                if session.dp is not None:  # this rank's share of the batch
                    idx = session.dp.shard(idx)
                rows = idx if local is None else local[idx]
                yield Xd[rows], {k: v[idx] for k, v in sd_l.items()}
            # release this chunk before the next one is read (one chunk held)
            Xd = sd = sd_l = local = rows = None

    # ------------------------------------------------------------ losses
    def _aux_k(self, n_features):
        if self.aux_k is not None:
            return min(self.aux_k, self.n_concepts)
        return min(self.n_concepts, max(self.top_k, n_features // 2))

    def _loss_terms(self, out, side_b, session):
        module = session.module
        var = session.data_var
        # means over this batch's rows (a share of the global batch under
        # data parallelism, possibly empty: the engine weights them); terms
        # in session.global_terms are the global batch's value on every rank
        B = max(1, out.x.shape[0])
        dp = session.dp
        resid = out.x - out.x_hat
        terms = {"mse": (resid * resid).sum() / (B * var)}
        pen = module.rule.penalty(out.pre, out._codes, out.dictionary)
        if pen is not None:
            terms["sparsity"] = pen
        if self.aux_coef > 0:
            dead = session.steps_since_fired >= self.dead_steps
            n_dead = int(dead.sum())
            if n_dead > 0:
                ka = min(self._aux_k(out.x.shape[1]), n_dead)
                masked = out.pre.detach().masked_fill(~dead, -torch.inf)
                sel, aidx = masked.topk(ka, dim=1)
                _, rec = sparse_codec(
                    out.xc.detach(),
                    module.enc_weight,
                    module.enc_bias,
                    out.dictionary,
                    aidx,
                    sel,
                )
                r = resid.detach()
                err = r - rec
                num, denom = (err * err).sum(), (r * r).sum()
                if dp is not None:  # the ratio of the global batch
                    num, denom = dp.global_sum(num), dp.global_sum(denom)
                    session.global_terms.add("auxk")
                denom = denom.clamp_min(torch.finfo(r.dtype).tiny)
                terms["auxk"] = self.aux_coef * num / denom
        terms.update(self._extra_loss(out, side_b, session))
        return terms

    # ------------------------------------------------------------- train
    def _train(self, X, side, session, *, partial):
        from ..distributed import current as _data_parallel

        # data-parallel training (skconcepts.distributed): sharded batches,
        # gradients summed over ranks, synchronised statistics
        session.dp = dp = _data_parallel()
        module, opt = session.module, session.optimizer
        device = session.device
        n = X.shape[0]
        chunk_rows = self._chunk_rows(X, device)
        train_mask, X_val = None, None
        if self.early_stopping and not partial:
            n_val = int(round(self.validation_fraction * n))
            if 0 < n_val < n:
                perm = torch.randperm(n, generator=session.generator)
                val_rows = np.sort(perm[:n_val].numpy())
                train_mask = np.ones(n, dtype=bool)
                train_mask[val_rows] = False
                if self._streams(X):  # read from the file at every check
                    X_val = val_rows
                else:
                    X_val = to_tensor(X[val_rows], device, session.dtype)
        n_train = n if train_mask is None else int(train_mask.sum())
        if partial:
            # streaming: constant learning rate after the warm-up (also when
            # partial_fit continues the session of a previous fit)
            epochs = 1
            session.total_steps = None
        else:
            epochs = self.max_epochs
            steps_per_epoch = max(1, math.ceil(n_train / self.batch_size))
            session.total_steps = epochs * steps_per_epoch
            session.warmup_steps = max(1, min(1000, session.total_steps // 20))
        callbacks = _check_callbacks(self.callbacks)
        for cb in callbacks:
            if hasattr(cb, "on_train_begin"):
                cb.on_train_begin(self, session)
        cache = {}
        best_val, best_state, no_improve = math.inf, None, 0
        k = self.n_concepts
        module.train()
        # every loss term has a history_ key from the first record on (0.0
        # while the term is inactive: no sparsity penalty for TopK, no dead
        # atom for AuxK, alignment weight 0)
        term_names = ("mse", "sparsity", "auxk", *self._extra_loss_names())
        for _ in range(epochs):
            t0 = time.perf_counter()
            sums = {name: 0.0 for name in term_names}
            sse = torch.zeros((), dtype=torch.float64, device=device)
            l0 = torch.zeros((), dtype=torch.float64, device=device)
            fired_epoch = torch.zeros(k, dtype=torch.bool, device=device)
            n_seen, n_steps = 0, 0
            for xb, sb in self._iter_epoch(
                X, side, session, chunk_rows, train_mask, cache
            ):
                lr = session.base_lr * _lr_factor(
                    session.step, session.warmup_steps, session.total_steps
                )
                for group in opt.param_groups:
                    group["lr"] = lr
                opt.zero_grad(set_to_none=True)
                # (under data parallelism a rank's share may be empty: it
                # still runs the step, which holds collective operations)
                out = module(xb, sparse_ok=self._sparse_path)
                terms = self._loss_terms(out, sb, session)
                if dp is None:
                    loss = sum(terms.values())
                else:  # local means weighted by the share, global terms not
                    w = dp.weight(xb.shape[0])
                    loss = sum(
                        v if name in session.global_terms else v * w
                        for name, v in terms.items()
                    )
                loss.backward()
                if dp is not None:
                    dp.all_reduce_grads(module)
                if self.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(
                        module.parameters(), self.max_grad_norm
                    )
                opt.step()
                module.project_()
                with torch.no_grad():
                    fired = out.fired()
                    if dp is not None:
                        fired = dp.any(fired)
                    fired_epoch |= fired
                    session.steps_since_fired += 1
                    session.steps_since_fired[fired] = 0
                    for name, v in terms.items():
                        sums[name] = (
                            sums.get(name, 0.0) + v.detach().double() * xb.shape[0]
                        )
                    sse += terms["mse"].detach().double() * xb.shape[0]
                    l0 += out.l0_sum()
                session.step += 1
                n_seen += xb.shape[0]
                n_steps += 1
            session.epoch += 1
            if dp is not None:
                n_seen, sse, l0, sums, fired_epoch = dp.reduce_epoch(
                    n_seen, sse, l0, sums, fired_epoch
                )
            denom = max(1, n_seen)
            record = {
                "epoch": session.epoch,
                "steps": n_steps,
                "lr": lr if n_steps else 0.0,
                "loss": float(sum(float(v) for v in sums.values())) / denom,
            }
            names = list(term_names) + sorted(set(sums) - set(term_names))
            record.update({name: float(sums[name]) / denom for name in names})
            record["train_r2"] = 1.0 - float(sse) / denom
            record["l0"] = float(l0) / denom
            record["dead_fraction"] = 1.0 - float(fired_epoch.sum()) / k
            record["val_r2"] = math.nan
            stop = False
            if X_val is not None:
                if isinstance(X_val, np.ndarray):
                    val_r2 = self._r2_rows(module, X, X_val, session)
                else:
                    val_r2 = self._r2_tensor(module, X_val, session)
                record["val_r2"] = val_r2
                if 1.0 - val_r2 < best_val - self.tol:
                    best_val, no_improve = 1.0 - val_r2, 0
                    best_state = {
                        k_: v.detach().clone() for k_, v in module.state_dict().items()
                    }
                else:
                    no_improve += 1
                    if no_improve >= self.n_iter_no_change:
                        stop = True
            record["time"] = time.perf_counter() - t0
            session.history.append(record)
            if self.verbose and (dp is None or dp.rank == 0):
                extra = "" if X_val is None else f", val R2 {record['val_r2']:.4f}"
                print(
                    f"[{type(self).__name__}] epoch {session.epoch}: loss "
                    f"{record['loss']:.5f}, R2 {record['train_r2']:.4f}{extra}, "
                    f"L0 {record['l0']:.2f}, "
                    f"dead {100 * record['dead_fraction']:.1f}%, "
                    f"{n_seen / max(record['time'], 1e-9):.0f} samples/s",
                    file=sys.stdout,
                    flush=True,
                )
            for cb in callbacks:
                if hasattr(cb, "on_epoch_end") and cb.on_epoch_end(
                    self, session, record
                ):
                    stop = True
            if stop:
                break
        if best_state is not None:
            module.load_state_dict(best_state)
        module.eval()
        for cb in callbacks:
            if hasattr(cb, "on_train_end"):
                cb.on_train_end(self, session)

    @torch.no_grad()
    def _r2_tensor(self, module, Xd, session):
        was_training = module.training
        module.eval()
        sse = 0.0
        mean = Xd.mean(dim=0)
        sst = float(((Xd - mean) ** 2).sum())
        for s in range(0, Xd.shape[0], self.batch_size):
            xb = Xd[s : s + self.batch_size]
            codes = module.encode(xb)
            xh = torch.addmm(module.b_pre, codes, module.dictionary.weight())
            sse += float(((xb - xh) ** 2).sum())
        module.train(was_training)
        return 1.0 - sse / sst if sst > 0 else float(sse == 0)

    @torch.no_grad()
    def _r2_rows(self, module, X, rows, session):
        """Validation R^2 on ``X[rows]`` read by batches (a streamed memmap).

        The total sum of squares comes from per-feature float64 sums and
        sums of squares, so no more than one batch of rows is held.
        """
        was_training = module.training
        module.eval()
        d = X.shape[1]
        dev = session.device
        s1 = torch.zeros(d, dtype=torch.float64, device=dev)
        s2 = torch.zeros(d, dtype=torch.float64, device=dev)
        sse = torch.zeros((), dtype=torch.float64, device=dev)
        for s in range(0, len(rows), self.batch_size):
            xb = to_tensor(X[rows[s : s + self.batch_size]], dev, session.dtype)
            codes = module.encode(xb)
            xh = torch.addmm(module.b_pre, codes, module.dictionary.weight())
            sse += ((xb - xh) ** 2).sum().double()
            x64 = xb.double()
            s1 += x64.sum(0)
            s2 += (x64 * x64).sum(0)
        module.train(was_training)
        m = max(1, len(rows))
        sst = float((s2 - s1 * s1 / m).clamp_min(0).sum())
        sse = float(sse)
        return 1.0 - sse / sst if sst > 0 else float(sse == 0)

    # ------------------------------------------------------------ export
    def _export_state(self, session):
        """Write the fitted NumPy state from a training session."""
        module = session.module
        dtype = np.float64 if session.dtype == torch.float64 else np.float32
        with torch.no_grad():
            D, norms = unit_rows(module.dictionary.weight())
            self.components_ = to_numpy(D, dtype)
            self._code_scale = to_numpy(norms, dtype)
            self.encoder_weights_ = to_numpy(module.enc_weight, dtype)
            self.encoder_bias_ = to_numpy(module.enc_bias, dtype)
            self.pre_bias_ = to_numpy(module.b_pre, dtype)
            thr = module.rule.export()
            self.threshold_ = None if thr is None else to_numpy(thr, dtype)
            if self.threshold_ is not None and np.isnan(self.threshold_).any():
                self.threshold_ = np.zeros_like(self.threshold_)
            self._export_dictionary(module.dictionary, dtype)
        self.history_ = list(session.history)
        self.n_iter_ = session.epoch
        self.n_steps_ = session.step

    def _set_fit_metrics(self, X):
        r2, l0, dead, sse = _evaluate(self, X)
        self.reconstruction_r2_ = r2
        self.reconstruction_err_ = math.sqrt(sse)
        self.mean_l0_ = l0
        self.dead_fraction_ = dead


def _evaluate(estimator, X):
    """One batched pass: reconstruction R^2, mean L0, dead fraction and the
    squared Frobenius error ``||X - X_hat||^2`` on X."""
    check_is_fitted(estimator)
    device = estimator._resolve_device()
    dtype = torch_dtype(X.dtype)
    state = estimator._state_with_offset(device, dtype)
    k = estimator.components_.shape[0]
    bs = estimator._batch_size_for(X.shape[1], X.dtype.itemsize)
    mean = torch.as_tensor(np.mean(X, axis=0, dtype=np.float64), device=device)
    sse = torch.zeros((), dtype=torch.float64, device=device)
    sst = torch.zeros((), dtype=torch.float64, device=device)
    l0 = torch.zeros((), dtype=torch.float64, device=device)
    fired = torch.zeros(k, dtype=torch.bool, device=device)
    with torch.no_grad():
        for s in range(0, X.shape[0], bs):
            xb = to_tensor(X[s : s + bs], device, dtype)
            codes = estimator._encode(xb, state)
            xhat = estimator._decode(codes, state)
            nz = codes != 0
            l0 += nz.sum()
            fired |= nz.any(dim=0)
            sse += ((xb.double() - xhat.double()) ** 2).sum()
            sst += ((xb.double() - mean) ** 2).sum()
    sse, sst = float(sse), float(sst)
    r2 = (1.0 if sse == 0 else 0.0) if sst == 0 else 1.0 - sse / sst
    n = max(1, X.shape[0])
    return r2, float(l0) / n, 1.0 - float(fired.sum()) / k, sse
