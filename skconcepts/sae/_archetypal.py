"""Archetypal sparse autoencoder (A-SAE / RA-SAE, Fel et al. 2025)."""

import math
import warnings

import numpy as np
import torch

from .._backend import make_generator, to_numpy
from .._compat import Integral, Interval, Real, StrOptions
from ._engine import INIT_SAMPLES, _BaseSAE
from ._modules import ArchetypalDictionary, kmeans_torch

#: ``relaxation="auto"``: this fraction of the RMS norm of the centred data.
AUTO_RELAXATION = 0.3


class ArchetypalSAE(_BaseSAE):
    """Sparse autoencoder whose atoms are anchored in the data (A-SAE, RA-SAE).

    The dictionary is ``D = (W C + Lambda) * exp(s)``: ``C`` holds
    ``n_candidates`` candidate points (k-means centroids of the data,
    computed on the device, taken in the frame of the decoder: the data minus
    the initial pre-decoder bias ``b_pre``, the data mean, since the model
    reconstructs ``a = z D + b_pre``), ``W`` is row-stochastic (each atom ``W C`` lies
    in the convex hull of the candidates), each row of ``Lambda`` has norm at
    most ``relaxation`` and ``s`` is a learned scalar. After every optimiser
    step ``W <- relu(W)`` with rows divided by their sum and
    ``Lambda_i <- Lambda_i min(1, relaxation / ||Lambda_i||)``.
    ``relaxation=0`` is the strict A-SAE. ``W`` starts as the identity on the
    first candidates; atoms beyond ``n_candidates`` start at random convex
    combinations of the candidates (never at zero).

    The encoder, sparsity rules, AuxK loss and training loop are those of
    :class:`TopKSAE` (one engine).

    Parameters
    ----------
    n_concepts : int, default=64
        Number of atoms ``k``.
    top_k : int, default=8
        Active codes per row (see :class:`TopKSAE`).
    relaxation : float or "auto", default="auto"
        Largest norm ``delta`` of each row of ``Lambda``, in the units of the
        data: ``||Lambda_i|| <= relaxation``. 0 gives the strict A-SAE.
        ``"auto"`` is 0.3 times the root mean squared norm of the centred
        training data (the typical distance of a sample to the mean), which
        does not depend on the scale of the activations.
    n_candidates : int, default=None
        Number of candidate points ``C``; None means ``n_concepts``. Fewer
        candidates than concepts is allowed. Capped at ``n_samples``.
    candidates : {"kmeans", "random"} or array-like of shape \
            (n_candidates, n_features), default="kmeans"
        k-means centroids of the data (the recommended choice; see
        ``kmeans_max_iter``), random data rows, or given points (in the data
        space; like the other choices they
        are stored minus the initial ``b_pre``).
    learn_scale : bool, default=True
        Learn the scalar ``s`` (atoms then lie in the conical hull).
    kmeans_random_state : int, RandomState instance or None, default=None
        Seed of the candidate selection; None uses ``random_state``. Two fits
        with different ``random_state`` but the same ``kmeans_random_state``
        start from the same dictionary.
    kmeans_max_iter : int, default=1
        Lloyd steps of the candidate k-means after its k-means++ seeding
        (it stops earlier when the inertia improves by less than 1e-6,
        relative). One step is fast; Lloyd to convergence (e.g. 30) halved
        the dead atoms in ``benchmarks/bench_stability.py --lloyd`` (5 seed
        pairs: dead 0.013 vs 0.027, stability +0.012 [-0.003, +0.027],
        within noise, recovery -0.0006), but each step costs a pass of
        ``min(n_samples, 65536) x n_candidates x n_features``: about 0.25 s
        at 16384 rows, 1024 candidates and 256 features on one CPU thread,
        minutes per 30 steps at 65536 x 16384 x 768.
    activation, sparsity_coef, aux_k, aux_coef, dead_steps, max_epochs, \
batch_size, learning_rate, max_grad_norm, early_stopping, \
validation_fraction, n_iter_no_change, tol, callbacks, device, \
random_state, verbose
        As in :class:`TopKSAE`.

    Attributes
    ----------
    components_ : ndarray of shape (n_concepts, n_features)
        The rows of the dictionary ``D = (W C + Lambda) exp(s)`` divided by
        their norms (unit L2 norm, the convention of every extractor):
        :meth:`transform` multiplies the codes by ``||D_i||`` *after* the
        sparsity rule, so TopK selections and JumpReLU / BatchTopK
        thresholds are those of the trained model and
        ``transform(X) @ components_`` is the trained reconstruction.
    candidates_ : ndarray of shape (n_candidates, n_features)
        The candidate points ``C`` (data points minus the initial ``b_pre``).
    candidate_weights_ : ndarray of shape (n_concepts, n_candidates)
        The row-stochastic ``W`` (called ``archetype_weights_`` before; the
        name is shared with :class:`~skconcepts.ConvexNMFConcepts`).
    relaxation_ : float
        The bound ``delta`` on ``||Lambda_i||`` used by the fit, in the units
        of the data: the resolved ``relaxation`` (its value for ``"auto"``).
        Called ``relaxation_radius_`` before.
    relaxation_matrix_ : ndarray of shape (n_concepts, n_features)
        ``Lambda`` (zeros for the strict A-SAE). Called ``relaxation_``
        before.
    scale_ : float
        ``exp(s)``.
    encoder_weights_, encoder_bias_, pre_bias_, threshold_, history_, \
reconstruction_err_, reconstruction_r2_, mean_l0_, dead_fraction_, n_iter_, \
n_steps_, n_features_in_, feature_names_in_
        As in :class:`TopKSAE`.

    See Also
    --------
    TopKSAE : the plain SAE with a free dictionary.
    skconcepts.metrics.dictionary_stability : matched cosine of two
        dictionaries.

    References
    ----------
    T. Fel et al., "Archetypal SAE: Adaptive and Stable Dictionary Learning
    for Concept Extraction in Large Vision Models", ICML 2025.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.sae import ArchetypalSAE
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(200, 10)
    >>> sae = ArchetypalSAE(n_concepts=8, top_k=2, max_epochs=5, random_state=0)
    >>> sae = sae.fit(X)
    >>> W = sae.candidate_weights_
    >>> bool((W >= 0).all()), np.allclose(W.sum(axis=1), 1.0)
    (True, True)
    >>> D = (W @ sae.candidates_ + sae.relaxation_matrix_) * sae.scale_
    >>> bool(np.allclose(D / np.linalg.norm(D, axis=1, keepdims=True),
    ...                  sae.components_, atol=1e-6))
    True
    """

    _parameter_constraints: dict = {
        **_BaseSAE._parameter_constraints,
        "relaxation": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "n_candidates": [Interval(Integral, 1, None, closed="left"), None],
        "candidates": [StrOptions({"kmeans", "random"}), "array-like"],
        "learn_scale": ["boolean"],
        "kmeans_random_state": ["random_state"],
        "kmeans_max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        n_concepts=64,
        top_k=8,
        *,
        relaxation="auto",
        n_candidates=None,
        candidates="kmeans",
        learn_scale=True,
        kmeans_random_state=None,
        kmeans_max_iter=1,
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
        self.relaxation = relaxation
        self.n_candidates = n_candidates
        self.candidates = candidates
        self.learn_scale = learn_scale
        self.kmeans_random_state = kmeans_random_state
        self.kmeans_max_iter = kmeans_max_iter

    def partial_fit(self, X, y=None):
        """Train for one pass over ``X`` and keep the optimiser state.

        As :meth:`TopKSAE.partial_fit`. The candidate points ``C`` are
        chosen once, from the first chunk (its k-means centroids or rows):
        a first chunk with fewer rows than ``n_candidates`` gives fewer
        candidates (a ``UserWarning`` says so), so make the first chunk a
        representative sample of at least ``n_candidates`` rows, or pass
        ``candidates`` explicitly.

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
        if not hasattr(self, "components_") and isinstance(self.candidates, str):
            wanted = self.n_candidates or self.n_concepts
            rows = getattr(X, "shape", (None,))[0]
            # (parameters are validated by the engine: skip odd types here)
            valid = all(isinstance(v, Integral) for v in (rows, wanted))
            if valid and 0 < rows < wanted:
                warnings.warn(
                    f"The first partial_fit chunk has {rows} rows, fewer than "
                    f"n_candidates={wanted}: the dictionary is anchored on "
                    f"{rows} candidate points for the whole stream. Start with a "
                    "chunk of at least n_candidates representative rows or pass "
                    "candidates=...",
                    UserWarning,
                )
        return super().partial_fit(X, y)

    # ------------------------------------------------------------ hooks
    def _candidate_points(self, X_init, b_pre, generator):
        """Candidate points ``C`` in the frame of the decoder (data - b_pre)."""
        dev, dt = X_init.device, X_init.dtype
        if not isinstance(self.candidates, str):
            C = np.asarray(self.candidates, dtype=np.float64)
            if C.ndim != 2 or C.shape[1] != X_init.shape[1]:
                raise ValueError(
                    f"candidates must have shape (n_candidates, {X_init.shape[1]}); "
                    f"got {C.shape}."
                )
            if not np.isfinite(C).all():
                raise ValueError("candidates contains NaN or infinity.")
            return torch.as_tensor(C, dtype=dt, device=dev) - b_pre
        n_c = self.n_candidates if self.n_candidates is not None else self.n_concepts
        n_c = min(n_c, X_init.shape[0])
        if self.kmeans_random_state is not None:
            generator = make_generator(self.kmeans_random_state)
        centred = X_init[:INIT_SAMPLES] - b_pre
        if self.candidates == "random":
            rows = torch.randperm(centred.shape[0], generator=generator)[:n_c]
            return centred[rows.to(dev)].clone()
        return kmeans_torch(centred, n_c, generator, n_iter=self.kmeans_max_iter)

    def _init_dictionary(self, X_init, b_pre, generator):
        C = self._candidate_points(X_init, b_pre, generator)
        k, n_c = self.n_concepts, C.shape[0]
        W = torch.zeros(k, n_c, dtype=torch.float64)
        m = min(k, n_c)
        W[torch.arange(m), torch.arange(m)] = 1.0
        if k > n_c:
            # extra atoms: random convex combinations of the candidates
            W[n_c:] = torch.rand(k - n_c, n_c, generator=generator, dtype=torch.float64)
        W = W.to(device=C.device, dtype=C.dtype)
        delta = self.relaxation
        if delta == "auto":  # the engine's data variance: no centred copy
            delta = AUTO_RELAXATION * math.sqrt(self._data_var(X_init))
        return ArchetypalDictionary(C, W, delta, learn_scale=self.learn_scale)

    def _dictionary_from_fitted(self, device, dtype):
        def t(a):
            return torch.as_tensor(np.asarray(a), dtype=dtype, device=device)

        return ArchetypalDictionary(
            t(self.candidates_),
            t(self.candidate_weights_),
            self.relaxation_,
            learn_scale=self.learn_scale,
            Lambda=t(self.relaxation_matrix_),
            log_scale=float(np.log(self.scale_)),
        )

    def _export_dictionary(self, dictionary, dtype):
        # copies: on the CPU to_numpy may share memory with the live
        # parameters, which a later partial_fit would change in place
        self.candidates_ = np.array(to_numpy(dictionary.candidates, dtype))
        self.candidate_weights_ = np.array(to_numpy(dictionary.W, dtype))
        self.relaxation_matrix_ = np.array(to_numpy(dictionary.Lambda, dtype))
        self.scale_ = float(dictionary.log_scale.exp())
        self.relaxation_ = float(dictionary.relaxation)
