"""Matryoshka sparse autoencoder: nested dictionaries (Bussmann et al. 2025).

:class:`MatryoshkaSAE` is a plug-in of the SAE engine (:mod:`._engine`): the
codes are selected over the whole dictionary as in any SAE (BatchTopK by
default), and the loss adds, to the engine's reconstruction term of the whole
dictionary, the reconstruction terms of its prefixes (the first ``m_1 <
m_2 < ... < n_concepts`` atoms), so that every prefix is a dictionary of its
own. The training loop is the engine's; only :meth:`_extra_loss` and the fit
metrics are new.
"""

import numpy as np
import torch
import torch.nn.functional as F

from .._backend import torch_dtype
from .._compat import Integral, StrOptions, check_is_fitted
from .._stats import R2Accumulator
from ._engine import _BaseSAE

#: The default prefixes: the first ``n_concepts // f`` atoms for these ``f``.
DEFAULT_PREFIX_FRACTIONS = (16, 8, 4, 2)


def default_prefix_sizes(n_concepts):
    """The default nested prefixes ``n/16, n/8, n/4, n/2, n`` (at least 1 atom,
    duplicates dropped), as a list of increasing ints ending with ``n``."""
    sizes = {max(1, n_concepts // f) for f in DEFAULT_PREFIX_FRACTIONS}
    sizes.add(n_concepts)
    return sorted(sizes)


def check_prefix_sizes(prefix_sizes, n_concepts):
    """Validated prefix sizes: increasing ints in ``[1, n_concepts]``.

    ``n_concepts`` (the whole dictionary) is appended when the last size is
    smaller. Raises ``ValueError`` naming the problem otherwise. The input is
    never modified.
    """
    if prefix_sizes is None:
        return default_prefix_sizes(n_concepts)
    arr = np.asarray(prefix_sizes)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            "prefix_sizes must be a non-empty 1-D list of ints (the numbers of "
            f"atoms of the nested dictionaries); got {prefix_sizes!r}."
        )
    sizes = []
    for v in arr.tolist():
        if isinstance(v, bool) or not isinstance(v, (Integral, float)):
            raise ValueError(f"prefix_sizes must hold ints; got {v!r}.")
        if float(v) != int(v):
            raise ValueError(f"prefix_sizes must hold ints; got {v!r}.")
        sizes.append(int(v))
    if sizes[0] < 1:
        raise ValueError(
            f"prefix_sizes must be >= 1 (a prefix has at least one atom); got {sizes}."
        )
    if any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)):
        raise ValueError(
            f"prefix_sizes must be strictly increasing (nested dictionaries); "
            f"got {sizes}. Sort them and drop duplicates."
        )
    if sizes[-1] > n_concepts:
        raise ValueError(
            f"prefix_sizes={sizes}: a prefix of {sizes[-1]} atoms is larger than "
            f"the dictionary (n_concepts={n_concepts}); use sizes <= n_concepts "
            f"or a larger n_concepts."
        )
    if sizes[-1] < n_concepts:
        sizes.append(n_concepts)
    return sizes


class MatryoshkaSAE(_BaseSAE):
    """Matryoshka sparse autoencoder: every prefix of the dictionary is an SAE.

    The codes ``z = sigma(E (a - b_pre) + b_enc)`` are selected over the whole
    dictionary (BatchTopK by default), and the loss sums the reconstruction
    error of every nested prefix of the dictionary (Bussmann et al. 2025;
    Nabeshima 2024)::

        L = sum_m ||a - (z[:m] D[:m] + b_pre)||^2 / (B var) + aux_coef * AuxK

    over the prefix sizes ``m_1 < m_2 < ... < m_M = n_concepts``. The first
    atoms must reconstruct the data on their own, so they learn the general,
    frequent concepts (a parent concept keeps its own atom instead of being
    *absorbed* into the atoms of its children), and the later atoms refine
    them. ``transform`` returns the codes of the whole dictionary;
    :meth:`transform_prefix` the codes of the first ``m`` atoms, which
    reconstruct the data on their own (``prefix_r2_``). See the user guide
    page ``docs/guide/sae.md`` (section "Matryoshka SAE") for the maths.

    Parameters
    ----------
    n_concepts : int, default=64
        Number of atoms ``k`` of the whole dictionary.
    top_k : int, default=8
        Mean active codes per row for ``"batchtopk"``; active codes per row for
        ``"topk"``; target L0 of ``"jumprelu"``. Unused by ``"relu"``. Must be
        <= ``n_concepts``.
    prefix_sizes : array-like of int or None, default=None
        Numbers of atoms of the nested dictionaries, strictly increasing, each
        in ``[1, n_concepts]``; ``n_concepts`` is appended when the last is
        smaller. None: ``n/16, n/8, n/4, n/2, n`` (at least 1 atom each,
        duplicates dropped), e.g. ``[4, 8, 16, 32, 64]`` for 64 atoms.
    activation : {"batchtopk", "topk", "jumprelu", "relu"}, default="batchtopk"
        Sparsity rule, selected over the whole dictionary (the prefixes use
        the codes of their atoms). ``"batchtopk"`` (the published method)
        keeps the ``top_k * batch_size`` largest pre-activations of a training
        batch and, at inference, every pre-activation above a learned
        threshold (so ``transform`` treats rows independently).
    sparsity_coef : float, default=1e-2
        Weight of the sparsity penalty of ``"relu"`` and ``"jumprelu"``.
    aux_k : int, default=None
        Number of dead atoms the AuxK loss uses to reconstruct the residual of
        the whole dictionary; None means ``max(top_k, n_features // 2)``.
    aux_coef : float, default=1/32
        Weight of the AuxK loss; 0 disables it.
    dead_steps : int, default=50
        An atom that has not fired for this many consecutive batches is dead
        (and enters the AuxK loss).
    max_epochs : int, default=60
        Passes over the data in ``fit``.
    batch_size : int, default=1024
        Rows per training mini-batch (also the batch of the passes made
        during ``fit``). ``transform``, ``score`` and ``inverse_transform``
        take batches that fit a quarter of scikit-learn's ``working_memory``.
    learning_rate : float, default=1.5e-2
        Peak learning rate of Adam.
    max_grad_norm : float or None, default=1.0
        Gradient clipping threshold; None disables clipping.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows, stop when the
        reconstruction error of the whole dictionary has not improved by
        ``tol`` for ``n_iter_no_change`` epochs and keep the best epoch.
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
        Seeds initialisation and batch order (bit-identical on CPU).
    verbose : int, default=0
        Print one line per epoch when > 0.

    Attributes
    ----------
    prefix_sizes_ : ndarray of shape (n_prefixes,)
        The nested prefix sizes used, increasing, the last ``n_concepts``.
    prefix_r2_ : ndarray of shape (n_prefixes,)
        Reconstruction R^2 of the training data by each prefix alone (the
        codes of its atoms, decoded by its atoms plus ``pre_bias_``); the last
        is ``reconstruction_r2_``.
    components_ : ndarray of shape (n_concepts, n_features)
        The dictionary ``D`` with unit-norm rows, in prefix order: the first
        ``prefix_sizes_[0]`` rows form the smallest dictionary.
    encoder_weights_ : ndarray of shape (n_concepts, n_features)
        Encoder matrix ``E``.
    encoder_bias_ : ndarray of shape (n_concepts,)
        Encoder bias ``b_enc``.
    pre_bias_ : ndarray of shape (n_features,)
        Pre-decoder bias ``b_pre``.
    threshold_ : ndarray or None
        Inference threshold: a scalar for ``"batchtopk"``, one per atom for
        ``"jumprelu"``, None otherwise.
    history_ : list of dict
        One record per epoch (per call of :meth:`partial_fit`), with the keys
        of every SAE of the engine (``epoch``, ``steps``, ``lr``, ``loss``,
        ``mse``, ``sparsity``, ``auxk``, ``train_r2``, ``l0``,
        ``dead_fraction``, ``val_r2``, ``time``; see :class:`TopKSAE`) plus
        one term per inner prefix, ``"mse_<m>"``: the normalised squared error
        (``1 - R^2`` of the batches) of the first ``m`` atoms. ``mse`` is the
        term of the whole dictionary and ``loss`` the sum of all the terms.
    reconstruction_err_ : float
        Frobenius norm ``||X - X_hat||_F`` of the training data (whole
        dictionary).
    reconstruction_r2_ : float
        Reconstruction R^2 of the training data (whole dictionary).
    mean_l0_ : float
        Mean number of non-zero codes per training row.
    dead_fraction_ : float
        Share of atoms that never fire on the training data.
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
    TopKSAE : the same engine with the loss of the whole dictionary only.

    Notes
    -----
    The loss is the *sum* over the prefixes, the paper's equation (the
    authors' code divides it by the number of prefixes, which under Adam only
    changes the weight of the AuxK term and where clipping starts). Each term
    is normalised by the data variance like the engine's ``mse``, so
    ``history_`` reads each as ``1 - R^2`` of its prefix. What it costs: at
    the same L0 the whole dictionary explains slightly less variance than a
    plain BatchTopK SAE (its atoms serve every prefix), see
    ``benchmarks/results/matryoshka.md``.

    References
    ----------
    B. Bussmann, N. Nabeshima, A. Karvonen, N. Nanda, "Learning Multi-Level
    Features with Matryoshka Sparse Autoencoders", ICML 2025.
    N. Nabeshima, "Matryoshka Sparse Autoencoders", AI Alignment Forum, 2024.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.sae import MatryoshkaSAE
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(200, 10).astype(np.float32)
    >>> sae = MatryoshkaSAE(n_concepts=16, top_k=3, max_epochs=5, random_state=0)
    >>> sae = sae.fit(X)
    >>> sae.prefix_sizes_.tolist()
    [1, 2, 4, 8, 16]
    >>> sae.transform(X).shape, sae.transform_prefix(X, 4).shape
    ((200, 16), (200, 4))
    """

    _parameter_constraints: dict = {
        **_BaseSAE._parameter_constraints,
        "prefix_sizes": ["array-like", None],
        "activation": [StrOptions({"topk", "batchtopk", "jumprelu", "relu"})],
    }

    def __init__(
        self,
        n_concepts=64,
        top_k=8,
        *,
        prefix_sizes=None,
        activation="batchtopk",
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
        self.prefix_sizes = prefix_sizes

    # ------------------------------------------------------------- hooks
    def _check_sizes(self):
        super()._check_sizes()
        self._prefixes = check_prefix_sizes(self.prefix_sizes, self.n_concepts)

    def _fit(self, X, y, *, partial):
        fitted = getattr(self, "prefix_sizes_", None)
        if partial and fitted is not None and hasattr(self, "components_"):
            sizes = check_prefix_sizes(self.prefix_sizes, self.n_concepts)
            if sizes != [int(m) for m in fitted]:
                raise ValueError(
                    f"prefix_sizes give {sizes}, but the model was fitted with "
                    f"{fitted.tolist()}; partial_fit continues that model. Set "
                    "prefix_sizes back, or call fit to train a new one."
                )
        return super()._fit(X, y, partial=partial)

    def _inner_prefixes(self):
        """The prefix sizes below the whole dictionary (the extra terms)."""
        sizes = getattr(self, "_prefixes", None)
        if sizes is None:
            sizes = check_prefix_sizes(self.prefix_sizes, self.n_concepts)
        return sizes[:-1]

    def _extra_loss_names(self):
        return tuple(f"mse_{m}" for m in self._inner_prefixes())

    def _extra_loss(self, out, side_batch, session):
        """The reconstruction terms of the inner prefixes.

        Each is a mean over the batch's rows (normalised by the data variance,
        as the engine's ``mse``), so under data parallelism the engine weighs
        it by the rank's share like ``mse``: no global sum is needed (the
        BatchTopK selection itself is global, in the rule).
        """
        inner = self._inner_prefixes()
        if not inner:
            return {}
        x, D = out.x, out.dictionary
        B = max(1, x.shape[0])
        var = session.data_var
        rec = session.module.b_pre.expand_as(x)
        terms = {}
        if out.idx is not None:  # TopK fast path: the kept codes only
            for m in inner:
                w = out.vals * (out.idx < m).to(out.vals.dtype)
                part = F.embedding_bag(out.idx, D, per_sample_weights=w, mode="sum")
                resid = x - rec - part
                terms[f"mse_{m}"] = (resid * resid).sum() / (B * var)
            return terms
        codes, start = out.codes, 0
        for m in inner:  # cumulative: one pass over the atoms of all prefixes
            rec = torch.addmm(rec, codes[:, start:m], D[start:m])
            start = m
            resid = x - rec
            terms[f"mse_{m}"] = (resid * resid).sum() / (B * var)
        return terms

    def _export_state(self, session):
        super()._export_state(session)
        self.prefix_sizes_ = np.asarray(self._prefixes, dtype=np.int64)

    def _set_fit_metrics(self, X, context=None):
        super()._set_fit_metrics(X, context)
        self.prefix_r2_ = self._prefix_r2(X, context)

    # ----------------------------------------------------------- helpers
    def _prefix_r2(self, X, context=None):
        """R^2 of ``X`` reconstructed by each prefix alone (one batched pass)."""
        sizes = [int(m) for m in self.prefix_sizes_]
        if context is None:
            context = self._inference_context(torch_dtype(X.dtype))
        device = context[0]
        mean = np.mean(X, axis=0, dtype=np.float64)
        accs = [R2Accumulator(device, mean=mean) for _ in sizes]

        def measure(xb, state, rows):
            codes = self._encode(xb, state)
            D = state["components"]
            rec, start = state["offset"].expand_as(xb), 0
            for m, acc in zip(sizes, accs, strict=True):
                rec = torch.addmm(rec, codes[:, start:m], D[start:m])
                start = m
                acc.update(xb, rec)

        self._map_batches(X, measure, context=context, batch_rows=self.batch_size)
        return np.array([acc.score() for acc in accs])

    def _check_prefix(self, size):
        if isinstance(size, bool) or not isinstance(size, Integral):
            raise TypeError(
                f"size must be an int (a number of atoms); got {type(size).__name__}."
            )
        k = self.components_.shape[0]
        if not 1 <= size <= k:
            raise ValueError(
                f"size={size} must be in [1, {k}] (the atoms "
                f"of the fitted dictionary; trained prefixes: "
                f"{self.prefix_sizes_.tolist()})."
            )
        return int(size)

    # ------------------------------------------------------------ public
    def transform_prefix(self, X, size):
        """Codes of the first ``size`` atoms (a nested dictionary).

        The codes are those of :meth:`transform` (selected over the whole
        dictionary, the authors' inference), restricted to the first ``size``
        atoms; with a trained prefix size (``prefix_sizes_``) they reconstruct
        ``X`` on their own: ``codes @ components_[:size] + pre_bias_``
        (``prefix_r2_`` is that R^2 on the training data).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations.
        size : int
            Number of leading atoms, in ``[1, n_concepts]``; a size of
            ``prefix_sizes_`` is a dictionary trained to reconstruct alone.

        Returns
        -------
        U : ndarray of shape (n_samples, size)
            Codes of the first ``size`` atoms, in the dtype of ``X``.
        """
        check_is_fitted(self)
        size = self._check_prefix(size)
        X = self._validate_X(X, reset=False)
        return self._map_batches(
            X, lambda xb, state, _: self._encode(xb, state)[:, :size], size
        )
