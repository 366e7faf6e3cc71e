"""The one training engine every sparse autoencoder of skconcepts plugs into.

:class:`_BaseSAE` is a :class:`~skconcepts.base.ConceptExtractor` that owns the
training loop (``fit``, ``partial_fit``), the fitted NumPy state and inference.
A concrete SAE only says which dictionary it uses and, optionally, what side
information and extra loss terms it needs. ``docs/design.md`` draws the whole
house; the pieces are:

- this module: parameters, plug-in hooks, the loop cut into small steps,
  export and fit metrics;
- :mod:`._session`: the training state (:class:`~._session._Session`) and how
  a fit starts (``new_session``, with ``calibrate_jumprelu``) or resumes;
- :mod:`._feed`: device chunks, epoch batches, the initialisation sample and
  its variance;
- :mod:`._callbacks`: the public callbacks and the built-in ones (early
  stopping, timer, history, printing);
- :mod:`._parallel`: the data-parallel state passed to the rules and losses;
- :mod:`._modules`: the torch pieces (codec, sparsity rules, dictionaries).

Training loop
-------------
The loop follows skorch's ``NeuralNet``: each piece is a method a subclass
may override::

    _fit(X, y, partial)            validate, get or make the session,
                                   _train, _export_state, _set_fit_metrics
    _train(X, side, session)       _plan (epochs, schedule, validation rows),
                                   notify on_train_begin, epochs, notify
                                   on_train_end
    _run_epoch(...)  -> record     notify on_epoch_begin, _train_step on
                                   every batch of the feed, _epoch_record,
                                   notify on_epoch_end (stop if true)
    _train_step(xb, side_b, s)     _set_lr, forward, _loss_terms,
                                   _total_loss, backward, _optimizer_step,
                                   _track_firing
    _optimizer_step(session)       gradient all-reduce (data parallel),
                                   clipping, Adam step, module.project_()
    _validation_r2(session)        R^2 of the held-out rows

``_notify(hook, session, *args)`` calls ``hook(estimator, session, *args)``
on the built-in callbacks (:func:`._callbacks.builtin_callbacks`: early
stopping, timer, history, printing, progress bar, in that order) and then on the user's
``callbacks``; for ``on_epoch_end`` it returns True when one of them asked
to stop (all are called).

For each epoch: the rows are cut into chunks that fit the device budget
(:data:`DEVICE_BUDGET_BYTES`, by default scikit-learn's ``working_memory``;
one chunk, moved once, when the data fits), the chunk order and a
permutation of the rows inside each chunk are drawn from a seeded CPU
``torch.Generator``, and mini-batches are *gathered* from the tensors
already on the device (no ``DataLoader``, no per-sample collation).

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
variance of the initialisation sample is centred by row blocks that fit
``working_memory``, never as a full-size copy. With ``early_stopping=True``
the validation rows of a streamed memmap are read from the file by batches
at every check (an in-memory array copies them to the device once); what
grows with ``n_samples`` is only index data: the validation row numbers (8
bytes a row) and a boolean training mask.

``batch_size`` is the training minibatch (and the batch of the passes made
during ``fit``: validation, fit metrics); ``transform``, ``score`` and
``inverse_transform`` take batches that fit a share of ``working_memory``
(they treat rows independently, so the batch does not change the codes).

One step is::

    out    = module(xb, dp=session.dp)         # SAEOutput: pre, codes, x_hat, D
    losses = {"mse": ||x - x_hat||^2 / (B var), "sparsity": rule penalty,
              "auxk": AuxK dead-atom term, **self._extra_loss(out, side_b)}
    Adam step on sum(losses) (warm-up, constant, final 20% decay; clipping)
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
    in ``history_``; list their names in ``_extra_loss_names`` (the keys of
    ``history_``). On the TopK fast path only the kept codes carry a
    gradient (``out.pre`` is detached); set the class attribute
    ``_sparse_path = False`` to get fully differentiable pre-activations.
    Under data parallelism ``session.dp`` is set: a term that is not a mean
    over rows computes global sums with ``session.dp.global_sum`` and adds
    its name to ``session.global_terms``.

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

``_set_fit_metrics(self, X, context)``
    Called after training with the validated ``X`` and ``context = (device,
    state)``, the inference state of the session's module (no rebuild from
    the NumPy state); the default sets ``reconstruction_r2_``,
    ``reconstruction_err_``, ``mean_l0_`` and ``dead_fraction_`` (one batched
    pass, :func:`_evaluate`). Override to add diagnostics (call ``super()``,
    and use ``self._map_batches(X, fn, context=context)`` for the pass).

``fit``/``partial_fit`` signatures: a plug-in that needs ``y`` (e.g. a
modality label) may override them to change the docstring and signature,
decorated with ``_fit_context``, and call ``self._fit(X, y, partial=...)``.

The ``session`` (:class:`._session._Session`) passed to hooks and callbacks
holds the torch ``module``, the ``optimizer``, the ``generator``, ``step``,
``epoch``, ``history``, ``data_var`` (the variance used to normalise the
MSE) and ``dp`` (the data-parallel state or None).

Callbacks
---------
``callbacks`` is a list of objects with any of the methods
``on_train_begin(estimator, session)``,
``on_epoch_end(estimator, session, record) -> bool`` (a true return value
stops training) and ``on_train_end(estimator, session)`` (and, like the
built-ins, ``on_epoch_begin(estimator, session)`` and
``on_batch_end(estimator, session)`` after every optimiser step). ``record`` is the
epoch's entry of ``history_`` (complete: the built-ins ran first). The
learning rate of every step is ``session.base_lr`` times the warm-up +
cosine factor: a callback changes the learning rate by setting
``session.base_lr`` (see :class:`skconcepts.sae.LearningRateSchedule`); it
may call ``estimator._export_state(session)`` to snapshot the model (see
:class:`skconcepts.sae.Checkpoint`). skorch callbacks have another protocol
and are refused with a ``TypeError``.
"""

import math

import numpy as np
import torch

from .._backend import (
    default_batch_size,
    to_numpy,
    to_tensor,
    torch_dtype,
    working_memory_bytes,
)
from .._compat import (
    Integral,
    Interval,
    Real,
    StrOptions,
    _fit_context,
    check_is_fitted,
)
from .._faults import (
    DivergenceError,
    check_finite_tensors,
    check_overflow,
    deferred_interrupt,
    warn_far_from_converged,
    warn_interrupted,
)
from .._stats import R2Accumulator
from ..base import (
    DEVICE_CONSTRAINT,
    ConceptExtractor,
    call_hook,
    check_callbacks,
    unit_rows,
)
from ._callbacks import builtin_callbacks
from ._feed import _Feed, data_var
from ._modules import (
    BatchTopKRule,
    FreeDictionary,
    JumpReLURule,
    ReLURule,
    SAEModule,
    TopKRule,
    sparse_codec,
)
from ._parallel import current as _data_parallel
from ._session import (
    STREAM_WARMUP_STEPS,  # noqa: F401 (re-exported: the engine's knobs)
    _Session,  # noqa: F401 (re-exported)
    lr_factor,
    make_optimizer,
    new_session,
    resume_session,
)

#: Bytes of training data kept on the device at once; None (the default):
#: scikit-learn's ``working_memory`` (``sklearn.get_config()``, 1024 MiB by
#: default), read when a fit starts. Larger inputs (e.g. a memmap larger than
#: memory) are streamed in chunks of this size.
DEVICE_BUDGET_BYTES = None

#: Rows sampled to initialise a new fit (b_pre, data scale, k-means).
INIT_SAMPLES = 2**16

#: Batches per device chunk when the training data is an on-disk array (a
#: NumPy memmap, or what :func:`skconcepts._io.as_memmap` made of a zarr /
#: HDF5 / dask array): the chunk has
#: ``max(batch_size, min(DEVICE_BUDGET_BYTES // row_bytes,
#: STREAM_CHUNK_BATCHES * batch_size))`` rows (whole batches), so the
#: anonymous memory of the fit is bounded by a small multiple of the batch.
STREAM_CHUNK_BATCHES = 32


def _device_budget():
    """:data:`DEVICE_BUDGET_BYTES`, or ``working_memory`` in bytes."""
    if DEVICE_BUDGET_BYTES is None:
        return working_memory_bytes()
    return int(DEVICE_BUDGET_BYTES)


def _check_callbacks(callbacks):
    """The callbacks as a list (see :func:`skconcepts.base.check_callbacks`)."""
    return check_callbacks(callbacks)


#: (kept name) the learning-rate factor of :mod:`._session`.
_lr_factor = lr_factor


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
        learning_rate=1.5e-2,
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

    @property
    def code_scale_(self):
        """ndarray of shape (n_concepts,): the decoder row norms the codes carry.

        ``transform`` multiplies the codes of the sparsity rule by them (the
        scale convention: ``components_`` has unit rows), so
        ``transform(X) / code_scale_`` are the codes of the unnormalised
        decoder (e.g. a loaded SAE's source codes). Read from the fitted
        state, so it follows every ``fit`` / ``partial_fit``.
        """
        return self._code_scale

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
        if type(self)._prepare_fit_data is not _BaseSAE._prepare_fit_data:
            # a plug-in's own validation: the overflow check of _validate_X
            check_overflow(X, type(self).__name__)
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
        try:
            self._train(X, side, session, partial=partial)
            # parameters only: a BatchTopK threshold buffer is NaN while unset
            check_finite_tensors(self, session.module.named_parameters())
        except DivergenceError:
            # never keep a diverged session: a later partial_fit restarts
            # from the fitted state of before (if any)
            self._session = None
            raise
        self._export_state(session)
        self.interrupted_ = bool(session.interrupted)
        self._set_fit_metrics(X, self._session_context(session))
        what = "partial_fit" if partial else "fit"
        if self.interrupted_:
            warn_interrupted(self, session.epoch, what)
        elif not partial:
            warn_far_from_converged(self, self.reconstruction_r2_, what=what)
        return self

    def _new_session(self, X, device, dtype):
        return new_session(self, X, device, dtype)

    def _resume_session(self, X, device, dtype):
        """A session restarted from the fitted NumPy state (e.g. after pickling).

        The epoch count and the history continue those of the fitted state (a
        :class:`~skconcepts.sae.Checkpoint` resumed by ``partial_fit`` ends
        with ``n_iter_`` the epochs of both runs); Adam and its warm-up
        restart.
        """
        session = resume_session(self, X, device, dtype)
        session.epoch = int(getattr(self, "n_iter_", 0))
        session.history = list(getattr(self, "history_", None) or [])
        return session

    def _make_optimizer(self, module):
        return make_optimizer(module, self.learning_rate)

    # ------------------------------------------------------ data feeding
    def _feed(self):
        """The data feed of a fit (:class:`._feed._Feed`), from the knobs."""
        return _Feed(
            self.batch_size, _device_budget(), STREAM_CHUNK_BATCHES, INIT_SAMPLES
        )

    def _streams(self, X):
        """Whether ``X`` is an on-disk array larger than one streaming chunk."""
        return self._feed().streams(X)

    def _stream_chunk_rows(self, X):
        return self._feed().stream_chunk_rows(X)

    def _chunk_rows(self, X, device):
        return self._feed().chunk_rows(X, device)

    def _init_sample(self, X, generator, device, dtype):
        return self._feed().init_sample(X, generator, device, dtype)

    def _data_var(self, X_init):
        """Total variance of the initialisation sample (normalises the MSE)."""
        return data_var(X_init)

    def _iter_epoch(self, X, side, session, chunk_rows, train_mask, cache):
        """Yield ``(x_batch, side_batch)`` for one epoch."""
        return self._feed().iter_epoch(
            X, side, session, chunk_rows, train_mask, cache, self._batch_indices
        )

    # ------------------------------------------------------------ losses
    def _aux_k(self, n_features):
        if self.aux_k is not None:
            return min(self.aux_k, self.n_concepts)
        return min(self.n_concepts, max(self.top_k, n_features // 2))

    def _loss_terms(self, out, side_b, session):
        """The loss terms of a batch: ``mse``, ``sparsity``, ``auxk``, extras."""
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

    def _total_loss(self, terms, n_rows, session):
        """The loss to differentiate: the sum of the terms.

        Under data parallelism the local means are weighted by the share of
        the global batch (global terms are not), so the all-reduced gradient
        is the gradient of the global batch's loss.
        """
        dp = session.dp
        if dp is None:
            return sum(terms.values())
        w = dp.weight(n_rows)
        return sum(
            v if name in session.global_terms else v * w for name, v in terms.items()
        )

    # ------------------------------------------------------------- train
    def _notify(self, hook, session, *args):
        """Call ``hook(self, session, *args)`` on the built-in callbacks, then on
        the user's; True when one of them returned a true value (a stop)."""
        return call_hook(session.callbacks, hook, self, session, *args)

    def _plan(self, X, session, *, partial):
        """Epochs, learning-rate schedule and validation rows of a training call.

        Returns ``(epochs, chunk_rows, train_mask)`` and sets
        ``session.validation`` (``(X, rows)`` for a streamed array, read at
        every check; ``(X, tensor)`` otherwise) when early stopping holds out
        rows.
        """
        n = X.shape[0]
        chunk_rows = self._chunk_rows(X, session.device)
        train_mask = None
        session.validation = None
        if self.early_stopping and not partial:
            n_val = int(round(self.validation_fraction * n))
            if 0 < n_val < n:
                perm = torch.randperm(n, generator=session.generator)
                val_rows = np.sort(perm[:n_val].numpy())
                train_mask = np.ones(n, dtype=bool)
                train_mask[val_rows] = False
                if self._streams(X):  # read from the file at every check
                    session.validation = (X, val_rows)
                else:
                    Xv = to_tensor(X[val_rows], session.device, session.dtype)
                    session.validation = (X, Xv)
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
        return epochs, chunk_rows, train_mask

    def _train(self, X, side, session, *, partial):
        """Train ``session.module`` on ``X``: one call of ``fit``/``partial_fit``."""
        # data-parallel training (skconcepts.distributed.data_parallel):
        # read once here, then passed explicitly (session.dp) to the feed,
        # the sparsity rules and the loss terms
        session.dp = _data_parallel()
        epochs, chunk_rows, train_mask = self._plan(X, session, partial=partial)
        session.planned_epochs = epochs
        session.callbacks = builtin_callbacks() + _check_callbacks(self.callbacks)
        session.interrupted = False
        self._notify("on_train_begin", session)
        cache = {}
        session.module.train()
        # Ctrl-C: the step in progress finishes, then training stops and the
        # estimator keeps what it learnt (skorch's behaviour; not under data
        # parallelism, where every rank must run the same steps)
        with deferred_interrupt(enabled=session.dp is None) as flag:
            session.interrupt = flag
            try:
                for _ in range(epochs):
                    record = self._run_epoch(
                        X, side, session, chunk_rows, train_mask, cache
                    )
                    stop = self._notify("on_epoch_end", session, record)
                    if flag.requested and not session.interrupted:
                        # Ctrl-C during the callbacks: this epoch was complete
                        session.interrupted = True
                        session.history[-1]["interrupted"] = True
                    if stop or session.interrupted:
                        break
            except KeyboardInterrupt:  # raised by a callback, or off the main thread
                if session.dp is not None:
                    raise
                session.interrupted = True
                if session.history:
                    session.history[-1]["interrupted"] = True
            finally:
                session.interrupt = None
            try:
                session.module.eval()
                self._notify("on_train_end", session)
            finally:
                session.validation = None
                session.callbacks = []

    def _term_names(self):
        """The loss terms of ``history_``, one key each from the first record on
        (0.0 while a term is inactive: no sparsity penalty for TopK, no dead
        atom for AuxK, alignment weight 0)."""
        return ("mse", "sparsity", "auxk", *self._extra_loss_names())

    def _run_epoch(self, X, side, session, chunk_rows, train_mask, cache):
        """One pass over the data; returns the epoch's (unfinished) record."""
        self._notify("on_epoch_begin", session)
        device, k = session.device, self.n_concepts
        stats = {
            "sums": {name: 0.0 for name in self._term_names()},
            "sse": torch.zeros((), dtype=torch.float64, device=device),
            "l0": torch.zeros((), dtype=torch.float64, device=device),
            "fired": torch.zeros(k, dtype=torch.bool, device=device),
            "n_seen": 0,
            "n_steps": 0,
            "lr": 0.0,
        }
        batches = self._iter_epoch(X, side, session, chunk_rows, train_mask, cache)
        try:
            for xb, sb in batches:
                # (under data parallelism a rank's share may be empty: it still
                # runs the step, which holds collective operations)
                out, terms = self._train_step(xb, sb, session, stats)
                self._accumulate(stats, out, terms, xb.shape[0])
                self._notify("on_batch_end", session)
                if session.interrupt is not None and session.interrupt.requested:
                    session.interrupted = True  # Ctrl-C: stop after this step
                    break
        except KeyboardInterrupt:  # not deferred (e.g. raised off the main thread)
            if session.dp is not None:
                raise
            session.interrupted = True
        session.epoch += 1
        record = self._epoch_record(session, stats)
        if session.interrupted:
            record["interrupted"] = True
        return record

    def _set_lr(self, session):
        """The learning rate of this step (warm-up + cosine times base_lr)."""
        lr = session.base_lr * lr_factor(
            session.step, session.warmup_steps, session.total_steps
        )
        for group in session.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _train_step(self, xb, side_b, session, stats):
        """One optimiser step on a batch; returns ``(out, terms)``."""
        stats["lr"] = self._set_lr(session)
        session.optimizer.zero_grad(set_to_none=True)
        out = session.module(xb, sparse_ok=self._sparse_path, dp=session.dp)
        terms = self._loss_terms(out, side_b, session)
        self._total_loss(terms, xb.shape[0], session).backward()
        self._optimizer_step(session)
        self._track_firing(out, session, stats)
        session.step += 1
        return out, terms

    def _optimizer_step(self, session):
        """All-reduce (data parallel), clip, Adam step, project the dictionary."""
        module = session.module
        if session.dp is not None:
            session.dp.all_reduce_grads(module)
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(module.parameters(), self.max_grad_norm)
        session.optimizer.step()
        module.project_()

    @torch.no_grad()
    def _track_firing(self, out, session, stats):
        """Dead-atom counters (AuxK) and the atoms that fired this epoch."""
        fired = out.fired()
        if session.dp is not None:
            fired = session.dp.any(fired)
        stats["fired"] |= fired
        session.steps_since_fired += 1
        session.steps_since_fired[fired] = 0

    @torch.no_grad()
    def _accumulate(self, stats, out, terms, n_rows):
        """Add a batch to the epoch's sums (terms, squared error, L0)."""
        sums = stats["sums"]
        for name, v in terms.items():
            sums[name] = sums.get(name, 0.0) + v.detach().double() * n_rows
        stats["sse"] += terms["mse"].detach().double() * n_rows
        stats["l0"] += out.l0_sum()
        stats["n_seen"] += n_rows
        stats["n_steps"] += 1

    def _epoch_record(self, session, stats):
        """The epoch's record of ``history_`` (``val_r2`` NaN and ``time``
        unset until the built-in callbacks fill them)."""
        n_seen, sse, l0 = stats["n_seen"], stats["sse"], stats["l0"]
        sums, fired = stats["sums"], stats["fired"]
        if session.dp is not None:
            n_seen, sse, l0, sums, fired = session.dp.reduce_epoch(
                n_seen, sse, l0, sums, fired
            )
        session.epoch_rows = n_seen
        denom = max(1, n_seen)
        term_names = self._term_names()
        record = {
            "epoch": session.epoch,
            "steps": stats["n_steps"],
            "lr": stats["lr"] if stats["n_steps"] else 0.0,
            "loss": float(sum(float(v) for v in sums.values())) / denom,
        }
        names = list(term_names) + sorted(set(sums) - set(term_names))
        record.update({name: float(sums[name]) / denom for name in names})
        record["train_r2"] = 1.0 - float(sse) / denom
        record["l0"] = float(l0) / denom
        record["dead_fraction"] = 1.0 - float(fired.sum()) / self.n_concepts
        record["val_r2"] = math.nan
        record["time"] = math.nan
        return record

    # -------------------------------------------------------- validation
    def _validation_r2(self, session):
        """R^2 of the held-out rows of early stopping (``session.validation``)."""
        X, val = session.validation
        if isinstance(val, np.ndarray):
            return self._r2_rows(session.module, X, val, session)
        return self._r2_tensor(session.module, val, session)

    @torch.no_grad()
    def _module_r2(self, module, batches, acc):
        was_training = module.training
        module.eval()
        for xb in batches:
            codes = module.encode(xb)
            acc.update(xb, torch.addmm(module.b_pre, codes, module.dictionary.weight()))
        module.train(was_training)
        return acc.score()

    def _r2_tensor(self, module, Xd, session):
        """R^2 of a device tensor (its exact mean), by training batches."""
        bs = self.batch_size
        acc = R2Accumulator(Xd.device, mean=Xd.double().mean(dim=0))
        batches = (Xd[s : s + bs] for s in range(0, Xd.shape[0], bs))
        return self._module_r2(module, batches, acc)

    def _r2_rows(self, module, X, rows, session):
        """Validation R^2 on ``X[rows]`` read by batches (a streamed memmap).

        The total sum of squares comes from per-feature float64 sums and
        sums of squares, so no more than one batch of rows is held.
        """
        bs, dev = self.batch_size, session.device
        acc = R2Accumulator(dev)
        batches = (
            to_tensor(X[rows[s : s + bs]], dev, session.dtype)
            for s in range(0, len(rows), bs)
        )
        return self._module_r2(module, batches, acc)

    # ------------------------------------------------------------ export
    def _export_state(self, session):
        """Write the fitted NumPy state from a training session."""
        module = session.module
        dtype = np.float64 if session.dtype == torch.float64 else np.float32
        with torch.no_grad():
            D, norms = unit_rows(module.dictionary.weight())
            self.components_ = to_numpy(D, dtype)
            self._code_scale = to_numpy(norms, dtype)
            # copies: on the CPU, to_numpy shares the parameters' memory, which
            # the next partial_fit updates in place (a diverged step would
            # poison the fitted state of before)
            self.encoder_weights_ = np.array(to_numpy(module.enc_weight, dtype))
            self.encoder_bias_ = np.array(to_numpy(module.enc_bias, dtype))
            self.pre_bias_ = np.array(to_numpy(module.b_pre, dtype))
            thr = module.rule.export()
            self.threshold_ = None if thr is None else to_numpy(thr, dtype)
            if self.threshold_ is not None and np.isnan(self.threshold_).any():
                self.threshold_ = np.zeros_like(self.threshold_)
            self._export_dictionary(module.dictionary, dtype)
        self.history_ = list(session.history)
        self.n_iter_ = session.epoch
        self.n_steps_ = session.step

    def _session_context(self, session):
        """``(device, state)`` for inference with the session's own module.

        The state :meth:`_device_state` would rebuild from the NumPy state
        just exported, without the rebuild: the module (in eval mode), the
        unit-norm dictionary, the code scale (its row norms) and the offset.
        """
        with torch.no_grad():
            module = session.module
            D, norms = unit_rows(module.dictionary.weight().detach())
            state = {
                "module": module,
                "components": D,
                "scale": norms,
                "offset": module.b_pre.detach(),
            }
        return session.device, state

    def _transform_batch_rows(self, n_features, itemsize):
        """Rows per batch of transform / score / inverse_transform.

        A share of ``working_memory`` (:func:`skconcepts._backend.default_batch_size`)
        for a row of the input, its pre-activations and its codes;
        ``batch_size`` is the training minibatch only.
        """
        return default_batch_size(n_features + 2 * self.n_concepts, itemsize=itemsize)

    def _set_fit_metrics(self, X, context=None):
        r2, l0, dead, sse = _evaluate(self, X, context)
        self.reconstruction_r2_ = r2
        self.reconstruction_err_ = math.sqrt(sse)
        self.mean_l0_ = l0
        self.dead_fraction_ = dead


def _evaluate(estimator, X, context=None):
    """One batched pass: reconstruction R^2, mean L0, dead fraction and the
    squared Frobenius error ``||X - X_hat||^2`` on X.

    ``context``: ``(device, state)`` of the training session (no rebuild of
    the module); None builds it from the fitted NumPy state. The batches are
    the training minibatch (``batch_size``): the pass is part of ``fit`` and
    keeps its memory bound.
    """
    check_is_fitted(estimator)
    if context is None:
        context = estimator._inference_context(torch_dtype(X.dtype))
    device = context[0]
    k = estimator.components_.shape[0]
    acc = R2Accumulator(device, mean=np.mean(X, axis=0, dtype=np.float64))
    l0 = torch.zeros((), dtype=torch.float64, device=device)
    fired = torch.zeros(k, dtype=torch.bool, device=device)

    def measure(xb, state, rows):
        nonlocal l0
        codes = estimator._encode(xb, state)
        acc.update(xb, estimator._decode(codes, state))
        nz = codes != 0
        l0 += nz.sum()
        fired.logical_or_(nz.any(dim=0))

    estimator._map_batches(X, measure, context=context, batch_rows=estimator.batch_size)
    n = max(1, X.shape[0])
    return acc.score(), float(l0) / n, 1.0 - float(fired.sum()) / k, float(acc.sse)
