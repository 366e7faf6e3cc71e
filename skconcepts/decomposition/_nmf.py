"""Non-negative matrix factorisation concepts (CRAFT, COCKATIEL)."""

from .._backend import make_generator, to_tensor
from .._compat import StrOptions, _fit_context
from ._base import _BaseNMF
from ._solvers import (
    NonnegHALS,
    NonnegMU,
    compiled_codes,
    fit_alternating,
    n_inner_codes,
    nmf_init,
)

_INITS = ("random", "nndsvd", "nndsvda", "nndsvdar")


class NMFConcepts(_BaseNMF):
    """Concepts from a non-negative matrix factorisation ``X ~ U W``.

    The concept extractor of CRAFT and COCKATIEL: non-negative activations
    ``X`` (``n_samples x n_features``, e.g. after a ReLU) are factored into
    non-negative codes ``U`` (``n_samples x n_concepts``) and non-negative
    concepts ``W = components_`` (``n_concepts x n_features``) by minimising
    the Frobenius objective of scikit-learn's :class:`~sklearn.decomposition.NMF`,
    with torch solvers that run on a GPU and stream memmaps from disk.

    Parameters
    ----------
    n_concepts : int, default=10
        Number of concepts ``k``.

    solver : {"hals", "mu"}, default="hals"
        ``"hals"``: hierarchical alternating least squares (cyclic coordinate
        descent by code column and concept row, the update of scikit-learn's
        ``solver="cd"``), with several cheap code sweeps per pass over the
        data. ``"mu"``: Lee & Seung's multiplicative updates.

    init : {"nndsvd", "nndsvda", "nndsvdar", "random"} or None, default=None
        Initialisation, as scikit-learn defines them. None gives
        ``"nndsvda"`` when ``n_concepts <= min(n_samples, n_features)``, else
        ``"random"``. The SVD behind the NNDSVD variants is a randomized SVD
        computed in torch on the device (streamed for memmaps).

    max_iter : int, default=200
        Maximum number of passes over the data in ``fit``; also the maximum
        number of HALS sweeps per row in ``transform``.

    tol : float, default=1e-4
        Stopping tolerance, checked every 5 iterations. HALS stops when the
        penalised objective decreased by less than ``4 * tol`` of itself per
        iteration since the previous check (it stalls), or on the rule of
        scikit-learn's ``solver="cd"`` (projected-gradient violation relative
        to the first iteration below ``tol``) once the objective also
        decreased by less than 6% over those 5 iterations. So the defaults
        stop near scikit-learn's answer: at its error or below, in less time
        (``benchmarks/results/nmf_ttq.md``). A larger ``tol`` stops earlier;
        ``tol=0`` runs to ``max_iter``. MU: relative decrease of the error
        over 10 iterations below ``tol`` times the first error
        (scikit-learn's ``"mu"``). ``transform``: a row stops when its
        largest code change is below ``tol`` times its largest code.

    alpha_W : float, default=0.0
        Regularisation of the codes ``U`` (scikit-learn's ``W``), multiplied
        by ``n_features`` as in scikit-learn. Mind the names: they are
        scikit-learn's (``X ~ W H``), so ``alpha_W`` acts on the codes and
        ``alpha_H`` on ``components_``.

    alpha_H : float or "same", default="same"
        Regularisation of the concepts ``components_`` (scikit-learn's ``H``),
        multiplied by ``n_samples``. ``"same"`` takes ``alpha_W``.

    l1_ratio : float, default=0.0
        Mix of L1 (1.0) and L2 (0.0) regularisation; the objective is
        ``0.5 ||X - UW||^2 + a_U r |U|_1 + 0.5 a_U (1 - r) ||U||^2 + (same for W)``.

    batch_size : int or None, default=None
        Rows of ``X`` per batch of every pass (``fit``, ``partial_fit``,
        ``transform``, ``inverse_transform``, ``score``), so memory stays
        bounded (the codes, ``n_samples x n_concepts``, are kept); the result
        does not depend on it. None: ``fit`` keeps ``X`` whole on the device,
        except for an on-disk array, read in batches of 1/64 of
        scikit-learn's ``working_memory`` (16 MiB at the default 1024 MiB);
        the other passes take batches of 1/4 of it.

    forget_factor : float, default=0.7
        Weight of the past statistics at each :meth:`partial_fit` call (as in
        scikit-learn's :class:`~sklearn.decomposition.MiniBatchNMF`).

    callbacks : list or None, default=None
        Objects with any of ``on_train_begin(est, session)``,
        ``on_epoch_end(est, session, record) -> bool`` (a true return stops
        the fit) and ``on_train_end(est, session)``: the protocol of the
        SAEs (:class:`skconcepts.sae.Checkpoint` works here too).
        ``on_epoch_end`` is called after every pass of ``fit`` with
        ``record = {"epoch", "reconstruction_err", "relative_error",
        "train_r2"}`` (computed from the solver's statistics);
        ``session.epoch`` counts the passes and ``session.history`` holds the
        records. (This replaces the ``fit(X, callback=f)`` argument of
        skconcepts 0.1.dev, removed.)

    device : str, default="auto"
        Torch device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``,
        ``"cuda:N"`` or ``"mps"``. Resolved at each call.

    random_state : int, RandomState instance or None, default=None
        Seeds the randomized SVD and the random inits. The global torch RNG
        is not used.

    verbose : int, default=0
        Print the relative error every 10 iterations when positive (and, in
        :meth:`partial_fit`, one line per call with the chunk's error).

    Attributes
    ----------
    components_ : ndarray of shape (n_concepts, n_features)
        The concepts ``W >= 0``, in the dtype of ``X``, with unit L2 norm
        (the scale convention of every skconcepts extractor): the codes
        carry the magnitude. scikit-learn's ``NMF`` leaves the scale in
        ``components_``; here the solver's rows are divided by their norms
        and :meth:`transform` multiplies the codes by them, so
        ``transform(X) @ components_`` is the same reconstruction. A dead
        atom (all-zero row) stays zero, and so do its codes.

    n_iter_ : int
        Number of concept updates: the passes over the data done by ``fit``,
        plus one per :meth:`partial_fit` call since (so after
        :meth:`partial_fit` only, the number of calls, ``n_steps_``).

    reconstruction_err_ : float
        Frobenius norm ``||X - U W||_F`` of the fit (``U`` the codes of the last
        iteration), as scikit-learn's ``reconstruction_err_``. After
        :meth:`partial_fit`, the same norm on the chunk just seen (its codes
        solved with the previous concepts, ``W`` the updated ones).

    reconstruction_r2_ : float
        ``1 - reconstruction_err_**2 / ||X - mean(X)||_F^2``: the R^2 of the
        same reconstruction (as the SAEs' ``reconstruction_r2_``).

    n_steps_ : int
        Number of :meth:`partial_fit` calls since the last ``fit`` (0 after
        ``fit``).

    n_features_in_ : int
        Number of features seen during ``fit``.

    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during ``fit``, when they are all strings.

    See Also
    --------
    SemiNMFConcepts : Non-negative codes, signed concepts, for signed data.
    ConvexNMFConcepts : Concepts that are non-negative combinations of data.
    sklearn.decomposition.NMF : The reference (CPU, in memory).

    Notes
    -----
    ``transform`` solves, for every row separately, the non-negative least
    squares problem with ``components_`` fixed (HALS sweeps from the clipped
    least-squares solution), so a sample's codes do not depend on the other
    samples. ``fit_transform`` is ``fit`` followed by ``transform``.

    Regularisation (``alpha_W``, ``alpha_H``) acts on the solver's factors,
    before the rows are normalised; ``transform`` solves the same penalised
    problem and rescales, so its codes are those of ``fit``.

    HALS re-seeds an atom whose code column or concept row becomes all zero
    (the concept is set to the residual of the worst-reconstructed sample);
    without it such an atom stays dead for good.

    References
    ----------
    .. [1] Cichocki, A. & Phan, A.-H. (2009). Fast local algorithms for large
       scale nonnegative matrix and tensor factorizations. IEICE Trans.
       Fundamentals, E92-A(3), 708-721.
    .. [2] Gillis, N. & Glineur, F. (2012). Accelerated multiplicative updates
       and hierarchical ALS algorithms for nonnegative matrix factorization.
       Neural Computation, 24(4), 1085-1105.
    .. [3] Boutsidis, C. & Gallopoulos, E. (2008). SVD based initialization: a
       head start for nonnegative matrix factorization. Pattern Recognition.
    .. [4] Fel, T. et al. (2023). CRAFT: Concept Recursive Activation
       FacTorization for explainability. CVPR.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts import NMFConcepts
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(100, 3) @ rng.rand(3, 20)
    >>> nmf = NMFConcepts(n_concepts=3, device="cpu", random_state=0).fit(X)
    >>> nmf.components_.shape
    (3, 20)
    >>> U = nmf.transform(X)
    >>> bool(U.min() >= 0), round(nmf.score(X), 3)
    (True, 1.0)
    """

    _positive_only = True

    # Maximum concept sweeps per iteration (HALS; they stop early when the
    # change falls below a tenth of the first one).
    _n_inner_concepts = 10
    # Power iterations of the randomized SVD behind the NNDSVD inits. NNDSVD
    # only needs a rough dominant subspace; scikit-learn's rule ("auto": 7 or
    # 4 iterations) costs as much as ~10 NMF iterations on the benchmark.
    _svd_n_iter = 2

    _parameter_constraints: dict = {
        **_BaseNMF._parameter_constraints,
        "solver": [StrOptions({"hals", "mu"})],
        "init": [StrOptions(set(_INITS)), None],
    }

    def __init__(
        self,
        n_concepts=10,
        *,
        solver="hals",
        init=None,
        max_iter=200,
        tol=1e-4,
        alpha_W=0.0,
        alpha_H="same",
        l1_ratio=0.0,
        batch_size=None,
        forget_factor=0.7,
        callbacks=None,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.n_concepts = n_concepts
        self.solver = solver
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.alpha_W = alpha_W
        self.alpha_H = alpha_H
        self.l1_ratio = l1_ratio
        self.batch_size = batch_size
        self.forget_factor = forget_factor
        self.callbacks = callbacks
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _resolve_init(self, n_samples, n_features):
        k = self.n_concepts
        if self.init is None:
            return "nndsvda" if k <= min(n_samples, n_features) else "random"
        if self.init != "random" and k > min(n_samples, n_features):
            raise ValueError(
                f"init={self.init!r} can only be used when n_concepts <= "
                f"min(n_samples, n_features) = {min(n_samples, n_features)}; got "
                f"n_concepts={k}. Use init='random' or fewer concepts."
            )
        return self.init

    def _concept_update(self, W, l1_W, l2_W):
        if self.solver == "hals":
            return NonnegHALS(W, l1_W, l2_W, n_inner=self._n_inner_concepts)
        return NonnegMU(W, l1_W, l2_W)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the concepts of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Non-negative activations. A NumPy memmap is streamed from disk in
            row batches.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : NMFConcepts
            The fitted estimator.
        """
        import torch

        X_in = X
        X = self._validate_X(X, reset=True)
        device = self._resolve_device()
        n, d = X.shape
        init = self._resolve_init(n, d)
        l1_U, l2_U, l1_W, l2_W = self._regularization(n, d)
        rows = self._rows(X, X_in, device)
        gen = make_generator(self.random_state)
        callbacks, session, on_iter = self._fit_hooks(X.dtype)
        with torch.no_grad():
            xsq, mean, sst = rows.stats(centred=True)
            Ut, W = nmf_init(
                rows, self.n_concepts, init, gen, mean, svd_n_iter=self._svd_n_iter
            )
            update = self._concept_update(W, l1_W, l2_W)
            n_iter, UtU, UtX = fit_alternating(
                rows,
                Ut,
                update,
                xsq=xsq,
                code_solver=self.solver,
                n_inner=n_inner_codes(
                    d, self.n_concepts, compiled_codes(rows, self.n_concepts)
                )
                if self.solver == "hals"
                else 1,
                l1_U=l1_U,
                l2_U=l2_U,
                max_iter=self.max_iter,
                tol=self.tol,
                stop="violation" if self.solver == "hals" else "error",
                verbose=self.verbose,
                on_iter=on_iter,
                sst=sst,
            )
            self._set_fit_result(rows, Ut, update.W, n_iter, X.dtype)
            # sufficient statistics, so that partial_fit continues from this fit
            self._set_fit_stats(UtU, UtX, n, X.dtype)
        self._end_hooks(callbacks, session)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Update the concepts with one chunk of data (online NMF).

        In the manner of scikit-learn's :class:`~sklearn.decomposition.MiniBatchNMF`:
        the chunk's codes are solved with the concepts fixed (as in
        :meth:`transform`), the statistics ``A = sum U^T U`` and
        ``B = sum U^T X`` are decayed by ``forget_factor`` and updated, and
        the concepts take HALS sweeps on ``(A, B)``. The first call
        initialises the concepts from the chunk; after ``fit`` the calls
        continue from the fitted concepts and statistics.

        Each call sets ``n_steps_`` (calls since the last ``fit``), ``n_iter_``
        (concept updates so far: ``fit``'s passes plus the calls since) and
        ``reconstruction_err_`` (the error on this chunk), and prints one
        line when ``verbose >= 1``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A chunk of non-negative activations (a memmap is streamed).
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : NMFConcepts
            The updated estimator.
        """
        return self._partial_fit(X)

    def _online_init(self, rows, gen):
        n, d = rows.n, rows.d
        _, mean = rows.stats()
        _, W = nmf_init(rows, self.n_concepts, self._resolve_init(n, d), gen, mean)
        return NonnegHALS(W, n_inner=self._n_inner_concepts)

    def _online_restore(self, device, dtype):
        W = to_tensor(self._raw_components(), device, dtype)
        return NonnegHALS(W, n_inner=self._n_inner_concepts)
