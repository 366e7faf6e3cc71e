"""Universal sparse autoencoder: one concept space for several models.

:class:`UniversalSAE` (Thasarathan et al. 2025) is a plug-in of the SAE
engine (:mod:`._engine`). The paired activations of ``m`` models are the
column blocks of one matrix (``feature_groups`` gives their widths); every
model has its own encoder (the columns of its block in ``enc_weight`` and
one row of ``enc_bias``) and its own decoder (the columns of its block in
the dictionary), around one shared sparse code. Each optimiser step encodes
the batch from one model (drawn at random from the session's generator, or
in turn) and decodes *every* model from those codes. The hooks it overrides:
the session (its module, :class:`_UniversalModule`), ``_train_step`` (picks
the source, then runs the engine's step), ``_loss_terms`` (the
per-model-normalised cross reconstruction), the validation R^2, the
inference state and the fit metrics (the ``m x m`` cross-reconstruction R^2
and the per-model firing of each concept); the training loop is the
engine's.
"""

import math

import numpy as np
import torch

from .._backend import make_generator, to_numpy, torch_dtype
from .._compat import (
    Interval,
    Real,
    StrOptions,
    check_is_fitted,
    validate_data,
)
from .._io import memmap_face
from .._stats import R2Accumulator
from ._engine import _BaseSAE
from ._modules import (
    FreeDictionary,
    JumpReLURule,
    SAEModule,
    sparse_codec,
)
from ._session import _Session, calibrate_jumprelu

#: A concept whose code variance is below this share of the total is dead.
DEAD_ENERGY = 1e-9


def _bounds(groups):
    """``[(start, stop), ...]`` of the column blocks of widths ``groups``."""
    ends = np.cumsum(groups).tolist()
    return [(int(e - g), int(e)) for g, e in zip(groups, ends, strict=True)]


class _UniversalModule(SAEModule):
    """Per-model encoders and decoders around one shared sparse code.

    ``enc_weight`` ``(k, d)`` holds the encoders side by side (model ``i``
    reads only the columns of its block), ``enc_bias`` is ``(m, k)`` (one
    row per model), ``b_pre`` ``(d,)`` the per-model pre-decoder biases side
    by side and the dictionary ``(k, d)`` the decoders side by side, so that
    one product decodes every model. ``source`` is the model whose block a
    training forward pass encodes (set by the estimator before each step).
    """

    def __init__(self, enc_weight, enc_bias, b_pre, rule, dictionary, bounds):
        super().__init__(enc_weight, enc_bias, b_pre, rule, dictionary)
        self.bounds = tuple(tuple(b) for b in bounds)
        self.source = 0

    def source_encoder(self, x, source):
        """``(xc, W, b)``: the centred block of ``source`` and its encoder."""
        a, b = self.bounds[source]
        return (
            x[:, a:b] - self.b_pre[a:b],
            self.enc_weight[:, a:b],
            self.enc_bias[source],
        )

    def training_encoder(self, x):
        """The block of ``self.source`` (``SAEModule.forward`` then decodes
        every model: ``out.xc`` is the centred block of the source, ``out.x``
        and ``out.x_hat`` span all the models)."""
        return self.source_encoder(x, self.source)

    @torch.no_grad()
    def encode(self, x, source=0):
        """Inference codes of ``x`` read from the block of model ``source``."""
        xc, W, bias = self.source_encoder(x, source)
        return self.rule.infer_codes(torch.addmm(bias, xc, W.t()))


class UniversalSAE(_BaseSAE):
    """Universal sparse autoencoder: one concept space shared by several models.

    The activations of ``m`` models on the same inputs are given side by
    side, as the column blocks of one matrix ``X = [A_1 | ... | A_m]``
    (``feature_groups`` gives the widths ``d_1, ..., d_m``). Each model has
    its own encoder ``(E_i, b_i)`` and decoder ``D_i``, around one shared
    TopK code::

        z   = sigma(E_i (a_i - p_i) + b_i)       # encode from model i
        a_j ~ z D_j + p_j   for every model j    # decode every model

    Each training step encodes the batch from one model ``i`` (drawn at
    random, or in turn: ``source_sampling``) and reconstructs all of them,
    minimising ``sum_j ||A_j - Z_i D_j - p_j||^2 / (m B var_j)`` (each
    model's error relative to its own total variance ``var_j``, so that a
    wide or large-scale model does not dominate; the ``mse`` of
    ``history_`` reads as one minus the mean R^2 over the models), plus the
    engine's AuxK term (Thasarathan et al. 2025). Atom ``k`` is then one
    concept, index-aligned across the models: ``D_j[k]`` is its direction
    in model ``j``. Trained by the shared engine (Adam, warm-up and cosine
    decay, gradient clipping, ``partial_fit``, callbacks, early stopping,
    persistence, devices); see ``docs/guide/sae.md``.

    With ``feature_groups=None`` (one model) it is a plain :class:`TopKSAE`.

    Parameters
    ----------
    n_concepts : int, default=64
        Number of shared concepts ``k``.
    top_k : int, default=8
        Active codes per row for ``"topk"``; mean active codes per row for
        ``"batchtopk"``; target L0 of the ``"jumprelu"`` penalty (and its
        initial threshold). Unused by ``"relu"``. Must be <= ``n_concepts``.
    feature_groups : array-like of int or None, default=None
        Widths of the models' blocks of columns, in order; they must sum to
        ``n_features``. None: one model (all the columns).
    source_sampling : {"random", "cycle"}, default="random"
        The model each training step encodes from: drawn uniformly from the
        session's seeded generator (the paper's choice), or the models in
        turn (step ``t`` encodes from model ``t mod m``).
    scope_threshold : float, default=0.2
        Labels of ``concept_scope_``: a concept whose shares in one model
        (``concept_decoder_share_``, where it writes, and
        ``concept_source_share_``, who reads it) both exceed ``1 -
        scope_threshold`` is that model's own; one whose shares in every
        model are all at least ``scope_threshold / (m - 1)`` is universal;
        the others are partial.
    activation : {"topk", "batchtopk", "jumprelu", "relu"}, default="topk"
        Sparsity rule (see :class:`TopKSAE`); the same rule encodes from
        every model.
    sparsity_coef : float, default=1e-2
        Weight of the sparsity penalty of ``"relu"`` and ``"jumprelu"``.
    aux_k : int, default=None
        Number of dead atoms the AuxK loss uses to reconstruct the residual
        of all the models; None means ``max(top_k, d_i // 2)`` for source
        ``i``.
    aux_coef : float, default=1/32
        Weight of the AuxK loss; 0 disables it.
    dead_steps : int, default=50
        An atom that has not fired for this many consecutive batches is dead
        (and enters the AuxK loss).
    max_epochs : int, default=60
        Passes over the data in ``fit``.
    batch_size : int, default=1024
        Rows per training mini-batch (also the batch of the passes made
        during ``fit``).
    learning_rate : float, default=1.5e-2
        Peak learning rate of Adam.
    max_grad_norm : float or None, default=1.0
        Gradient clipping threshold; None disables clipping.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows and stop when their
        reconstruction error (encoded from every model in turn, all the
        models decoded) has not improved by ``tol`` for
        ``n_iter_no_change`` epochs; keep the best epoch.
    validation_fraction : float, default=0.1
        Held-out share of the rows when ``early_stopping``.
    n_iter_no_change : int, default=5
        Patience of early stopping, in epochs.
    tol : float, default=1e-4
        Minimum improvement of the validation error (``1 - R^2``).
    callbacks : list or None, default=None
        Objects with any of ``on_train_begin(est, session)``,
        ``on_epoch_end(est, session, record) -> bool`` (true stops) and
        ``on_train_end(est, session)``; see :class:`Checkpoint`.
    device : str, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, batch order and the source of each step. The
        global torch RNG is never used.
    verbose : int, default=0
        Print one line per epoch when > 0.

    Attributes
    ----------
    components_ : ndarray of shape (n_concepts, n_features)
        The decoders of all the models side by side, ``[D_1 | ... | D_m]``,
        each row (a concept across all the models) of unit L2 norm: the
        scale convention of every skconcepts extractor (the codes carry the
        magnitude), so ``X ~ transform(X) @ components_ + pre_bias_``. The
        norm of a row's block in model ``j`` is the share of the concept's
        direction that lies in model ``j`` (near 0 for a concept of another
        model).
    decoders_ : list of ndarray of shape (n_concepts, d_j)
        The concept directions in each model: the blocks of
        ``components_`` (views, on the same scale as the codes of
        ``transform``; not unit rows).
    feature_groups_ : ndarray of shape (n_models_,)
        The widths of the models' blocks.
    n_models_ : int
        Number of models ``m``.
    cross_r2_ : ndarray of shape (n_models_, n_models_)
        Cross-reconstruction R^2 on the training data: row ``i`` encodes
        from model ``i``, column ``j`` is the R^2 of model ``j``'s block
        decoded from those codes (the diagonal is each model's own
        reconstruction).
    source_energy_ : ndarray of shape (n_models_, n_concepts)
        Mean squared code of each concept when encoding from each model.
    source_variance_ : ndarray of shape (n_models_, n_concepts)
        Variance of each concept's code when encoding from each model.
    concept_source_share_ : ndarray of shape (n_models_, n_concepts)
        Who *reads* each concept: ``source_variance_`` divided by its sum
        over the models (NaN for a dead concept). The variance, not the
        energy or the firing count: the pre-decoder bias is shared by
        every source, so a model that cannot see another model's own
        concept learns to emit that concept's *mean* code (a constant,
        which carries no information about the input).
    firing_entropy_ : ndarray of shape (n_concepts,)
        The paper's normalised firing entropy: ``-sum_i p_i log p_i / log m``
        with ``p_i`` the share of the concept's firings (non-zero codes)
        produced from model ``i``; 1 for a concept that fires equally from
        every model, 0 for one that fires from one model only (NaN for a
        dead concept; 1 for every live concept when ``m = 1``).
    concept_decoder_share_ : ndarray of shape (n_models_, n_concepts)
        Where each concept *writes*: ``||D_j[k]||^2 / var_j`` (its decoder
        block's squared norm in model ``j``, in units of model ``j``'s total
        variance) divided by its sum over the models (NaN for a dead
        concept). Near ``1 / m`` everywhere for a universal concept, near 1
        in one model for a model-specific one.
    concept_scope_ : ndarray of shape (n_concepts,), dtype str
        ``"universal"`` (read from every model and written into every
        model), ``"model<i>"`` (read from and written into model ``i``
        only), ``"partial"`` (the rest, e.g. shared by some of the models,
        or an atom that every model's decoder writes but only one model's
        encoder reads: training can split a universal concept into two such
        atoms) or ``"dead"`` (codes that never vary: never fired, or a
        constant), from ``concept_decoder_share_``,
        ``concept_source_share_`` and ``scope_threshold``.
    encoder_weights_ : ndarray of shape (n_concepts, n_features)
        The encoders side by side, ``[E_1 | ... | E_m]``.
    encoder_bias_ : ndarray of shape (n_models_, n_concepts)
        One encoder bias per model.
    pre_bias_ : ndarray of shape (n_features,)
        The per-model pre-decoder biases side by side.
    threshold_ : ndarray or None
        Inference threshold of ``"batchtopk"`` / ``"jumprelu"``, else None.
    history_ : list of dict
        One record per epoch, the keys of :class:`TopKSAE`'s ``history_``;
        ``mse`` and ``train_r2`` are the mean over the models of each
        model's normalised error and R^2 (encoded from each step's source).
    reconstruction_err_ : float
        Frobenius norm ``||X - X_hat||_F`` of the training data, encoded
        from model 0 (the default of :meth:`transform`).
    reconstruction_r2_ : float
        Reconstruction R^2 of the training data (all the columns), encoded
        from model 0.
    mean_l0_ : float
        Mean number of non-zero codes per training row (from model 0).
    dead_fraction_ : float
        Share of atoms that never fire on the training data from model 0.
    n_iter_ : int
        Epochs run.
    n_steps_ : int
        Optimiser steps run.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during ``fit`` (only when ``X`` has string
        column names).

    See Also
    --------
    TopKSAE : the one-model SAE on the same engine.
    AlignedSAE : one dictionary for two modalities of one model.

    References
    ----------
    H. Thasarathan, J. Forsyth, T. Fel, M. Kowal, K. G. Derpanis,
    "Universal Sparse Autoencoders: Interpretable Cross-Model Concept
    Alignment", ICML 2025.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.sae import UniversalSAE
    >>> rng = np.random.RandomState(0)
    >>> codes = rng.rand(300, 6) * (rng.rand(300, 6) < 0.3)
    >>> X = np.hstack([codes @ rng.randn(6, 8), codes @ rng.randn(6, 5)])
    >>> usae = UniversalSAE(8, 3, feature_groups=[8, 5], batch_size=50,
    ...                     max_epochs=20, random_state=0).fit(X)
    >>> usae.cross_r2_.shape, usae.transform(X, source=1).shape
    ((2, 2), (300, 8))
    """

    _parameter_constraints: dict = {
        **_BaseSAE._parameter_constraints,
        "feature_groups": ["array-like", None],
        "source_sampling": [StrOptions({"random", "cycle"})],
        "scope_threshold": [Interval(Real, 0, 0.5, closed="neither")],
    }

    def __init__(
        self,
        n_concepts=64,
        top_k=8,
        *,
        feature_groups=None,
        source_sampling="random",
        scope_threshold=0.2,
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
        super().__init__(
            n_concepts,
            top_k,
            activation=activation,
            sparsity_coef=sparsity_coef,
            aux_k=aux_k,
            aux_coef=aux_coef,
            dead_steps=dead_steps,
            max_epochs=max_epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_grad_norm=max_grad_norm,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            tol=tol,
            callbacks=callbacks,
            device=device,
            random_state=random_state,
            verbose=verbose,
        )
        self.feature_groups = feature_groups
        self.source_sampling = source_sampling
        self.scope_threshold = scope_threshold

    # ------------------------------------------------------------- public
    def transform(self, X, source=0):
        """Shared concept codes of ``X``, read from one model's block.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations of all the models side by side (only the block of
            ``source`` is read; the other columns may hold anything finite).
        source : int or "mean", default=0
            The model whose encoder makes the codes (``0 <= source <
            n_models_``). ``"mean"`` averages the codes of every model's
            encoder (up to ``m * top_k`` non-zeros per row; a concept
            specific to one model enters with ``1 / m`` of its code). The
            default, model 0, is a trained path (exactly the codes that
            reconstruct the other models during training).

        Returns
        -------
        U : ndarray of shape (n_samples, n_concepts)
            Concept codes, in the dtype of ``X``.
        """
        check_is_fitted(self)
        source = self._check_source(source)
        X = self._validate_X(X, reset=False)
        return self._map_batches(
            X,
            lambda xb, state, _: self._encode(xb, state, source=source),
            self.n_concepts,
        )

    @property
    def decoders_(self):
        """list of ndarray: the concept directions in each model.

        ``decoders_[j]`` has shape ``(n_concepts, d_j)``: the block of model
        ``j`` in ``components_``, so that model ``j``'s activations are
        approximately ``transform(X) @ decoders_[j] + pre_bias_[block j]``.
        """
        check_is_fitted(self)
        return [self.components_[:, a:b] for a, b in _bounds(self.feature_groups_)]

    # ------------------------------------------------------- validation
    def _check_groups(self, n_features):
        """The widths of the models' blocks (an int array summing to the width)."""
        if self.feature_groups is None:
            return np.array([n_features], dtype=np.int64)
        groups = np.asarray(self.feature_groups)
        if groups.ndim != 1 or groups.shape[0] == 0:
            raise ValueError(
                "feature_groups must be a non-empty 1-D list of block widths "
                f"(one per model); got an array of shape {groups.shape}."
            )
        if not np.issubdtype(groups.dtype, np.number) or not np.all(
            np.equal(np.mod(groups, 1), 0)
        ):
            raise ValueError(
                f"feature_groups must hold integers (block widths); got {groups!r}."
            )
        groups = groups.astype(np.int64)
        if np.any(groups < 1):
            raise ValueError(
                f"every width in feature_groups must be >= 1; got {groups.tolist()}."
            )
        if int(groups.sum()) != n_features:
            raise ValueError(
                f"feature_groups {groups.tolist()} sums to {int(groups.sum())}, but "
                f"X has {n_features} features; give the width of each model's "
                "block of columns, in order, so that they sum to n_features."
            )
        return groups

    def _check_source(self, source):
        m = len(self.feature_groups_)
        if isinstance(source, str):
            if source == "mean":
                return source
        elif isinstance(source, (int, np.integer)) and not isinstance(source, bool):
            if 0 <= int(source) < m:
                return int(source)
            raise ValueError(
                f"source={source} is out of range: this UniversalSAE was fitted on "
                f"{m} model{'s' if m != 1 else ''} (source in 0..{m - 1})."
            )
        raise ValueError(
            f"source must be an int in 0..{m - 1} (a model's index) or 'mean'; "
            f"got {source!r}."
        )

    # -------------------------------------------------------------- hooks
    def _prepare_fit_data(self, X, y, *, reset):
        X = validate_data(
            self, memmap_face(X), dtype=[np.float64, np.float32], reset=reset
        )
        groups = self._check_groups(X.shape[1])
        if reset:
            self.feature_groups_ = groups
            self.n_models_ = int(groups.shape[0])
        elif not np.array_equal(groups, self.feature_groups_):
            raise ValueError(
                f"feature_groups {groups.tolist()} differ from those of the fitted "
                f"model {self.feature_groups_.tolist()}; refit with fit()."
            )
        return X, {}

    def _new_session(self, X, device, dtype):
        return self._build_session(X, device, dtype, resume=False)

    def _resume_session(self, X, device, dtype):
        session = self._build_session(X, device, dtype, resume=True)
        session.epoch = int(getattr(self, "n_iter_", 0))
        session.history = list(getattr(self, "history_", None) or [])
        return session

    def _build_session(self, X, device, dtype, *, resume):
        """A session whose module is a :class:`_UniversalModule`.

        ``resume``: from the fitted NumPy state (``partial_fit`` after
        unpickling); else a new model initialised from a sample of ``X``:
        ``b_pre`` the sample mean, random unit-norm concepts, and each
        model's encoder its block of the decoder divided by the block's
        squared row norms. The session also holds ``feature_weight``
        (``1 / sqrt(m var_j)`` on the columns of model ``j``), which
        normalises each model's error by its own total variance.
        """
        gen = make_generator(self.random_state)
        bounds = _bounds(self.feature_groups_)
        m, k = len(bounds), self.n_concepts
        X_init = self._init_sample(X, gen, device, dtype)
        with torch.no_grad():
            total = self._data_var(X_init)
            total = total if total > 0 else 1.0
            scale = math.sqrt(total)
            weight = torch.empty(X_init.shape[1], dtype=dtype, device=device)
            for a, b in bounds:
                var = self._data_var(X_init[:, a:b])
                weight[a:b] = 1.0 / math.sqrt(m * (var if var > 0 else 1.0))
            if resume:
                state = self._device_state(device, dtype)["module"]
                enc_w, enc_b = state.enc_weight.data, state.enc_bias.data
                b_pre = state.b_pre.data
                thr = None if self.threshold_ is None else state.rule.export()
                rule = self._make_rule(data_scale=scale, threshold=thr)
                dictionary = self._dictionary_from_fitted(device, dtype)
            else:
                b_pre = self._init_pre_bias(X_init).to(dtype)
                dictionary = self._init_dictionary(X_init, b_pre, gen)
                D = dictionary.weight().detach()
                enc_w = torch.empty_like(D)
                tiny = torch.finfo(dtype).tiny
                for a, b in bounds:
                    blk = D[:, a:b]
                    enc_w[:, a:b] = blk / (blk * blk).sum(1, keepdim=True).clamp_min(
                        tiny
                    )
                enc_b = torch.zeros(m, k, dtype=dtype, device=device)
                rule = self._make_rule(data_scale=scale)
                if isinstance(rule, JumpReLURule):
                    a, b = bounds[0]
                    calibrate_jumprelu(
                        rule,
                        X_init[:, a:b],
                        enc_w[:, a:b],
                        enc_b[0],
                        b_pre[a:b],
                        self.top_k,
                        scale,
                    )
        module = _UniversalModule(enc_w, enc_b, b_pre, rule, dictionary, bounds)
        module = module.to(device=device, dtype=dtype)
        session = _Session(
            module, self._make_optimizer(module), gen, total, device, dtype
        )
        session.feature_weight = weight
        return session

    def _next_source(self, session):
        """The model the next step encodes from (from the session's generator)."""
        m = len(session.module.bounds)
        if m == 1:
            return 0
        if self.source_sampling == "cycle":
            return session.step % m
        return int(torch.randint(m, (1,), generator=session.generator))

    def _train_step(self, xb, side_b, session, stats):
        """Pick the source model, then the engine's step (forward from it)."""
        session.module.source = self._next_source(session)
        return super()._train_step(xb, side_b, session, stats)

    def _loss_terms(self, out, side_b, session):
        """``mse`` (every model, each over its own variance), sparsity, AuxK."""
        module, dp = session.module, session.dp
        w = session.feature_weight
        B = max(1, out.x.shape[0])
        resid = out.x - out.x_hat
        wres = resid * w
        terms = {"mse": (wres * wres).sum() / B}
        pen = module.rule.penalty(out.pre, out._codes, out.dictionary)
        if pen is not None:
            terms["sparsity"] = pen
        dead = session.steps_since_fired >= self.dead_steps
        n_dead = int(dead.sum())
        if self.aux_coef > 0 and n_dead > 0:
            # AuxK: the dead atoms' codes (from the same source) reconstruct
            # the residual of every model, weighted as the mse
            ka = min(self._aux_k(out.xc.shape[1]), n_dead)
            masked = out.pre.detach().masked_fill(~dead, -torch.inf)
            sel, aidx = masked.topk(ka, dim=1)
            _, W, bias = module.source_encoder(out.x, module.source)
            _, rec = sparse_codec(out.xc.detach(), W, bias, out.dictionary, aidx, sel)
            r = wres.detach()
            err = r - rec * w
            num, denom = (err * err).sum(), (r * r).sum()
            if dp is not None:  # the ratio of the global batch
                num, denom = dp.global_sum(num), dp.global_sum(denom)
                session.global_terms.add("auxk")
            terms["auxk"] = (
                self.aux_coef * num / denom.clamp_min(torch.finfo(r.dtype).tiny)
            )
        terms.update(self._extra_loss(out, side_b, session))
        return terms

    @torch.no_grad()
    def _module_r2(self, module, batches, acc):
        """Validation R^2: every row encoded from each model, all decoded."""
        was_training = module.training
        module.eval()
        D = module.dictionary.weight()
        for xb in batches:
            for source in range(len(module.bounds)):
                acc.update(xb, torch.addmm(module.b_pre, module.encode(xb, source), D))
        module.train(was_training)
        return acc.score()

    # --------------------------------------------------------- inference
    def _device_state(self, device, dtype):
        def t(a):
            return torch.as_tensor(np.asarray(a), dtype=dtype, device=device)

        thr = None if self.threshold_ is None else t(self.threshold_)
        D = t(self.components_)
        module = _UniversalModule(
            t(self.encoder_weights_),
            t(self.encoder_bias_),
            t(self.pre_bias_),
            self._make_rule(threshold=thr),
            FreeDictionary(D, normalize=False),
            _bounds(self.feature_groups_),
        ).to(device=device, dtype=dtype)
        module.eval()
        scale = getattr(self, "_code_scale", None)
        scale = None if scale is None else t(scale)
        return {"module": module, "components": D, "scale": scale}

    def _encode(self, Xb, state, source=0):
        module = state["module"]
        if source == "mean":
            codes = sum(module.encode(Xb, s) for s in range(len(module.bounds)))
            codes = codes / len(module.bounds)
        else:
            codes = module.encode(Xb, source)
        scale = state.get("scale")
        return codes if scale is None else codes * scale

    # ------------------------------------------------------- fit metrics
    def _set_fit_metrics(self, X, context=None):
        super()._set_fit_metrics(X, context)
        if context is None:
            context = self._inference_context(torch_dtype(X.dtype))
        device = context[0]
        bounds = _bounds(self.feature_groups_)
        m, k = len(bounds), self.n_concepts
        mean = np.mean(X, axis=0, dtype=np.float64)
        accs = [
            [R2Accumulator(device, mean=mean[a:b]) for a, b in bounds] for _ in bounds
        ]
        sums = torch.zeros(3, m, k, dtype=torch.float64, device=device)

        def measure(xb, state, rows):
            for i in range(m):
                z = self._encode(xb, state, source=i)
                x_hat = self._decode(z, state)
                for j, (a, b) in enumerate(bounds):
                    accs[i][j].update(xb[:, a:b], x_hat[:, a:b])
                z64 = z.double()
                sums[0, i] += z64.sum(0)
                sums[1, i] += (z64 * z64).sum(0)
                sums[2, i] += (z != 0).sum(0).double()

        self._map_batches(X, measure, context=context, batch_rows=self.batch_size)
        self.cross_r2_ = np.array([[acc.score() for acc in row] for row in accs])
        sums = to_numpy(sums)
        n = max(1, X.shape[0])
        mean_code, energy, fires = sums[0] / n, sums[1] / n, sums[2]
        variance = np.maximum(energy - mean_code * mean_code, 0.0)
        self.source_energy_ = energy.astype(X.dtype)
        self.source_variance_ = variance.astype(X.dtype)
        total = variance.sum(axis=0)
        dead = total <= DEAD_ENERGY * max(float(total.sum()), np.finfo(float).tiny)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(dead, np.nan, variance / np.where(dead, 1.0, total))
            p = fires / np.maximum(fires.sum(axis=0), 1.0)
            plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        if m > 1:
            entropy = -plogp.sum(axis=0) / math.log(m)
        else:
            entropy = np.ones(k)
        self.concept_source_share_ = share.astype(X.dtype)
        self.firing_entropy_ = np.where(dead, np.nan, entropy).astype(X.dtype)
        # where each concept writes: its decoder block's squared norm in each
        # model, in units of that model's total variance
        var = np.array([max(acc.sst / n, np.finfo(float).tiny) for acc in accs[0]])
        C = self.components_.astype(np.float64)
        written = np.stack([(C[:, a:b] ** 2).sum(1) for a, b in bounds]) / var[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            total_w = written.sum(axis=0)
            dshare = np.where(dead, np.nan, written / np.where(dead, 1.0, total_w))
        self.concept_decoder_share_ = dshare.astype(X.dtype)
        self.concept_scope_ = self._scope_labels(dshare, share, dead)

    def _scope_labels(self, written, read, dead):
        """``concept_scope_``: universal, model<i>, partial or dead."""
        m, k = written.shape
        t = self.scope_threshold
        labels = np.full(k, "partial", dtype=object)
        if m == 1:
            labels[:] = "universal"
        else:
            w = np.nan_to_num(written, nan=0.0)
            r = np.nan_to_num(read, nan=0.0)
            owner = w.argmax(axis=0)
            cols = np.arange(k)
            specific = (w[owner, cols] > 1.0 - t) & (r[owner, cols] > 1.0 - t)
            universal = (w.min(axis=0) >= t / (m - 1)) & (r.min(axis=0) >= t / (m - 1))
            labels[universal] = "universal"
            labels[specific] = np.array([f"model{i}" for i in owner[specific]])
        labels[dead] = "dead"
        return labels.astype(str)
