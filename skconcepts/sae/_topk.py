"""The plain sparse autoencoder (TopK and the other sparsity rules)."""

import torch

from .._compat import StrOptions
from ._engine import INIT_SAMPLES, _BaseSAE
from ._modules import FreeDictionary, kmeans_torch


class TopKSAE(_BaseSAE):
    """Sparse autoencoder with a free, unit-norm dictionary (the baseline).

    Encodes ``z = sigma(E (a - b_pre) + b_enc)`` and decodes
    ``a_hat = z D + b_pre``, where ``sigma`` keeps the ``top_k`` largest
    pre-activations of each row (TopK, Gao et al. 2024) or applies another
    sparsity rule (``activation``). Trained with Adam (linear warm-up, cosine
    decay, gradient clipping) on mini-batches gathered from tensors already on
    the device, with the AuxK loss that revives dead atoms. See the user
    guide page ``docs/guide/sae.md`` for the maths.

    Parameters
    ----------
    n_concepts : int, default=64
        Number of atoms ``k`` of the dictionary.
    top_k : int, default=8
        Active codes per row for ``"topk"``; mean active codes per row for
        ``"batchtopk"``; target L0 of the ``"jumprelu"`` penalty (and its
        initial threshold). Unused by ``"relu"``. Must be <= ``n_concepts``.
    activation : {"topk", "batchtopk", "jumprelu", "relu"}, default="topk"
        Sparsity rule. ``"batchtopk"`` keeps the ``top_k * batch_size``
        largest pre-activations of a training batch (ties at the threshold
        broken in row-major order: earlier rows, then earlier atoms) and, at
        inference, every pre-activation above a learned threshold (so
        ``transform`` treats rows independently). ``"jumprelu"`` learns one
        threshold per atom with a straight-through estimator. ``"relu"`` is
        ReLU + L1.
    init : {"random", "kmeans"}, default="random"
        Initial dictionary: random Gaussian directions, or the (unit-norm)
        k-means centroids of the centred data (the data-anchored start of
        :class:`ArchetypalSAE`, seeded the same way, so that the two can be
        compared with the same start; see the stability section of
        ``docs/guide/sae.md``).
    sparsity_coef : float, default=1e-2
        Weight of the sparsity penalty of ``"relu"`` (L1 of the codes,
        weighted by atom norms, relative to the data scale) and
        ``"jumprelu"`` (mean L0 relative to ``top_k``).
    aux_k : int, default=None
        Number of dead atoms the AuxK loss uses to reconstruct the residual;
        None means ``max(top_k, n_features // 2)``.
    aux_coef : float, default=1/32
        Weight of the AuxK loss; 0 disables it.
    dead_steps : int, default=50
        An atom that has not fired for this many consecutive batches is dead
        (and enters the AuxK loss).
    max_epochs : int, default=60
        Passes over the data in ``fit``.
    batch_size : int, default=1024
        Rows per training mini-batch (also the batch of the passes made
        during ``fit``: validation and fit metrics). ``transform``,
        ``score`` and ``inverse_transform`` take batches that fit a quarter
        of scikit-learn's ``working_memory`` (rows are independent there).
    learning_rate : float, default=1.5e-2
        Peak learning rate of Adam: a linear warm-up over the first 5% of
        the steps of ``fit`` (at most 1000), constant, then a linear decay to
        0 over the last 20% (``partial_fit``: constant after the warm-up).
        Chosen for the time to a held-out R^2 of 0.9 (issue 14, see
        ``benchmarks/results/sae_ttq.md``; ``AlignedSAE`` keeps 4e-3, at
        which its alignment claims were measured).
    max_grad_norm : float or None, default=1.0
        Gradient clipping threshold (on the loss normalised by the data
        variance); None disables clipping.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows, stop when their
        reconstruction error has not improved by ``tol`` for
        ``n_iter_no_change`` epochs and keep the best epoch.
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
        Seeds initialisation and batch order (bit-identical on CPU). The
        global torch RNG is never used.
    verbose : int, default=0
        Print one line per epoch when > 0.

    Attributes
    ----------
    components_ : ndarray of shape (n_concepts, n_features)
        The dictionary ``D`` with unit-norm rows, the convention of every
        skconcepts extractor: the codes carry the magnitude. (The free
        dictionary is trained with unit-norm rows; the exported rows are
        normalised exactly and the codes multiplied by the norms, which are
        1 up to rounding.)
    encoder_weights_ : ndarray of shape (n_concepts, n_features)
        Encoder matrix ``E``.
    encoder_bias_ : ndarray of shape (n_concepts,)
        Encoder bias ``b_enc``.
    pre_bias_ : ndarray of shape (n_features,)
        Pre-decoder bias ``b_pre`` (subtracted before encoding, added after
        decoding).
    threshold_ : ndarray or None
        Inference threshold: a scalar for ``"batchtopk"``, one per atom for
        ``"jumprelu"``, None otherwise.
    history_ : list of dict
        One record per epoch (per call of :meth:`partial_fit`), all with the
        same keys from the first record on, so ``pandas.DataFrame(history_)``
        has one column per key: ``epoch`` (epochs done), ``steps`` (optimiser
        steps in the epoch), ``lr`` (learning rate of the last step),
        ``loss`` (the sum of the terms), the terms ``mse`` (``1 - R^2`` of
        the batches), ``sparsity`` (the penalty of ``"relu"`` / ``"jumprelu"``;
        0.0 for ``"topk"`` and ``"batchtopk"``, which have none) and ``auxk``
        (0.0 while no atom is dead or with ``aux_coef=0``), plus the terms of
        a subclass (AlignedSAE: ``energy`` or ``cosine``), then
        ``train_r2``, ``l0`` (mean active codes per row), ``dead_fraction``
        (atoms that did not fire during the epoch), ``val_r2`` (NaN without
        ``early_stopping``) and ``time`` (seconds). Terms are means over the
        epoch's rows.
    reconstruction_err_ : float
        Frobenius norm ``||X - X_hat||_F`` of the training data with the
        fitted model (scikit-learn's ``reconstruction_err_``; the NMF family
        has the same attribute).
    reconstruction_r2_ : float
        Reconstruction R^2 of the training data with the fitted model.
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
    ArchetypalSAE : the same engine with a dictionary anchored in the data.
    skconcepts.NMFConcepts : non-negative factorisation (CRAFT concepts).

    References
    ----------
    L. Gao et al., "Scaling and evaluating sparse autoencoders", 2024.
    B. Bussmann, P. Leask, N. Nanda, "BatchTopK Sparse Autoencoders", 2024.
    S. Rajamanoharan et al., "Jumping Ahead: Improving Reconstruction Fidelity
    with JumpReLU Sparse Autoencoders", 2024.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.sae import TopKSAE
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(200, 10).astype(np.float32)
    >>> sae = TopKSAE(n_concepts=16, top_k=3, max_epochs=5, random_state=0).fit(X)
    >>> U = sae.transform(X)
    >>> U.shape, U.dtype, int((U != 0).sum(axis=1).max())
    ((200, 16), dtype('float32'), 3)
    """

    #: Lloyd steps of ``init="kmeans"``: those of ArchetypalSAE's default
    #: ``kmeans_max_iter``, so that the two start alike.
    _kmeans_n_iter = 1

    _parameter_constraints: dict = {
        **_BaseSAE._parameter_constraints,
        "init": [StrOptions({"random", "kmeans"})],
    }

    def __init__(
        self,
        n_concepts=64,
        top_k=8,
        *,
        activation="topk",
        init="random",
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
        self.init = init

    def _init_dictionary(self, X_init, b_pre, generator):
        if self.init == "random":
            return super()._init_dictionary(X_init, b_pre, generator)
        # k-means centroids of the centred data, as ArchetypalSAE's candidates
        n_c = min(self.n_concepts, X_init.shape[0])
        C = kmeans_torch(
            X_init[:INIT_SAMPLES] - b_pre,
            n_c,
            generator,
            n_iter=self._kmeans_n_iter,
        )
        if n_c < self.n_concepts:  # fewer rows than atoms: random directions
            extra = torch.randn(
                self.n_concepts - n_c,
                C.shape[1],
                generator=generator,
                dtype=torch.float64,
            ).to(device=C.device, dtype=C.dtype)
            C = torch.cat([C, extra])
        return FreeDictionary(C)
