"""NMF variants for signed activations: Semi-NMF and Convex-NMF."""

import warnings

import numpy as np

from .._backend import make_generator, to_numpy, to_tensor
from .._compat import Integral, Interval, StrOptions, _fit_context
from .._kmeans import assign, kmeans
from ._base import _BaseNMF
from ._solvers import (
    ConvexMU,
    SignedLS,
    fit_alternating,
    gram_reg,
    init_codes,
    n_inner_codes,
    nnls_codes,
)


class _SignedNMF(_BaseNMF):
    """Shared fit of the signed variants: k-means init, HALS codes, a concept update."""

    _parameter_constraints: dict = {
        **_BaseNMF._parameter_constraints,
        "init": [StrOptions({"kmeans", "random"}), None],
    }

    # rows drawn for the k-means initialisation
    _n_init_rows = 4096

    def _candidates(self, rows, gen, m):
        """``m`` distinct rows drawn at random, as ``(indices, rows)`` (sorted)."""
        import torch

        if m >= rows.n:
            idx = torch.arange(rows.n)
        else:
            idx = torch.sort(torch.randperm(rows.n, generator=gen)[:m]).values
        return idx.to(rows.device), rows.take(idx)

    def _seed(self, C, gen):
        """Initial concepts and candidate labels (k-means, or random rows).

        ``"kmeans"``: the package's one k-means (:func:`skconcepts._kmeans.kmeans`,
        k-means++ seeding then Lloyd to convergence). With more concepts than
        rows, the extra concepts start on rows drawn at random.
        """
        import torch

        k, m = self.n_concepts, C.shape[0]
        if self.init in (None, "kmeans"):
            centroids, labels = kmeans(C, k, gen, return_labels=True)
            if k > m:
                extra = torch.randint(m, (k - m,), generator=gen).to(C.device)
                centroids = torch.cat([centroids, C[extra]])
            return centroids, labels
        pick = (
            torch.randint(m, (k,), generator=gen)
            if k > m
            else torch.randperm(m, generator=gen)[:k]
        )
        centroids = C[pick.to(C.device)].clone()
        return centroids, assign(C, centroids)[0]

    def _make_update(self, rows, gen, l1_W, l2_W):  # pragma: no cover - abstract
        raise NotImplementedError

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the concepts of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations (any sign). A NumPy memmap is streamed from disk.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._store_extra(self._fit(X))
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Update the concepts with one chunk of data (online, streaming).

        The same online scheme as :meth:`NMFConcepts.partial_fit`: the chunk's
        codes ``U >= 0`` are solved with the concepts fixed (as in
        :meth:`transform`), the statistics ``A = sum U^T U`` and
        ``B = sum U^T X`` are decayed by ``forget_factor`` and updated, and
        the concepts are updated from ``(A, B)`` alone. The first call
        initialises the concepts from the chunk (as ``fit`` does from ``X``);
        after ``fit`` the calls continue from the fitted concepts and
        statistics.

        Each call sets ``n_steps_`` (calls since the last ``fit``), ``n_iter_``
        (concept updates so far: ``fit``'s passes plus the calls since) and
        ``reconstruction_err_`` (the error on this chunk), and prints one
        line when ``verbose >= 1``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A chunk of activations (any sign; a memmap is streamed).
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
            The updated estimator.
        """
        return self._partial_fit(X)

    def _online_init(self, rows, gen):
        return self._make_update(rows, gen, 0.0, 0.0)

    def _online_store(self, update, X_dtype):
        super()._online_store(update, X_dtype)
        self._store_extra(update)

    def _store_extra(self, update):
        """Keep estimator-specific fitted state from the concept update."""

    def _export_extra(self, session):
        if session.update is not None:
            self._store_extra(session.update)

    def _fit(self, X):
        import torch

        X_in = X
        X = self._validate_X(X, reset=True)
        device = self._resolve_device()
        n, d = X.shape
        l1_U, l2_U, l1_W, l2_W = self._regularization(n, d)
        rows = self._rows(X, X_in, device)
        gen = make_generator(self.random_state)
        callbacks, session, on_iter = self._fit_hooks(X.dtype)
        with torch.no_grad():
            xsq, _, sst = rows.stats(centred=True)
            update = self._make_update(rows, gen, l1_W, l2_W)
            session.update = update
            Ut = init_codes(rows, update.W, l1_U, l2_U)
            n_iter, UtU, UtX = fit_alternating(
                rows,
                Ut,
                update,
                xsq=xsq,
                code_solver="hals",
                # the signed variants keep 1 + d // (2k) code sweeps: on
                # centred digits (k=16) Semi-NMF reaches its long-run error
                # x 1.01 in 236 iterations with 4 sweeps, 287 with 3, 378 with 2
                n_inner=n_inner_codes(d, self.n_concepts, cheap=True),
                l1_U=l1_U,
                l2_U=l2_U,
                max_iter=self.max_iter,
                tol=self.tol,
                stop="error",
                verbose=self.verbose,
                on_iter=on_iter,
                sst=sst,
            )
            self._set_fit_result(rows, Ut, update.W, n_iter, X.dtype)
            # sufficient statistics, so that partial_fit continues from this fit
            self._set_fit_stats(UtU, UtX, n, X.dtype)
        self._end_hooks(callbacks, session)
        return update


_SIGNED_PARAMS_DOC = """
    n_concepts : int, default=10
        Number of concepts ``k``.

    init : {"kmeans", "random"} or None, default=None
        ``"kmeans"`` (None): k-means (k-means++ seeding, then Lloyd until
        the inertia stops decreasing, at most 30 iterations) on a random
        subsample of rows, as Ding, Li & Jordan initialise.
        ``"random"``: ``n_concepts`` random rows.

    max_iter : int, default=200
        Maximum number of passes over the data in ``fit``; also the maximum
        number of HALS sweeps per row in ``transform``.

    tol : float, default=1e-4
        ``fit`` stops when the relative error decreased by less than ``tol``
        times the first error over 10 iterations. ``transform``: a row stops
        when its largest code change is below ``tol`` times its largest code.

    alpha_W : float, default=0.0
        Regularisation of the codes ``U``, multiplied by ``n_features`` (as
        scikit-learn's ``NMF``).

    alpha_H : float or "same", default="same"
        Regularisation of the concepts, multiplied by ``n_samples``.

    l1_ratio : float, default=0.0
        Mix of L1 (1.0) and L2 (0.0) regularisation.

    batch_size : int or None, default=None
        Rows of ``X`` per batch of every pass (``fit``, ``partial_fit``,
        ``transform``, ``inverse_transform``, ``score``); the result does
        not depend on it. None: ``fit`` keeps ``X`` whole on the device,
        except for an on-disk array, read in batches of 1/64 of
        scikit-learn's ``working_memory`` (16 MiB at the default 1024 MiB);
        the other passes take batches of 1/4 of it.

    forget_factor : float, default=0.7
        Weight of the past statistics at each :meth:`partial_fit` call (as in
        :class:`NMFConcepts`).

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
        Torch device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.

    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation. The global torch RNG is not used.

    verbose : int, default=0
        Print the relative error every 10 iterations when positive (and, in
        :meth:`partial_fit`, one line per call with the chunk's error).
"""


class SemiNMFConcepts(_SignedNMF):
    """Semi-NMF concepts: non-negative codes, signed concepts.

    For signed activations (residual streams, CLIP embeddings):
    ``X ~ U W`` with codes ``U >= 0`` and concepts ``W = components_`` of any
    sign, minimising ``0.5 ||X - U W||_F^2`` (plus the optional penalties).
    Codes are updated by HALS sweeps (the solver shared with
    :class:`NMFConcepts`), concepts by exact (ridge) least squares
    ``W = (U^T U + l2 I)^{-1} U^T X`` (coordinate descent with
    soft-thresholding when ``l1_ratio > 0``), both from one pass over ``X``.

    Parameters
    ----------
    {params}

    Attributes
    ----------
    components_ : ndarray of shape (n_concepts, n_features)
        The concepts (signed), with unit L2 norm: the codes carry the
        magnitude (``X ~ U @ components_`` as fitted; a dead atom's row is
        zero, and so are its codes).

    n_iter_ : int
        Number of concept updates: the passes over the data done by ``fit``,
        plus one per :meth:`partial_fit` call since (so after
        :meth:`partial_fit` only, the number of calls, ``n_steps_``).

    reconstruction_err_ : float
        Frobenius norm ``||X - U W||_F`` of the fit; after :meth:`partial_fit`,
        the same norm on the chunk just seen.

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
    NMFConcepts : Non-negative data and concepts.
    ConvexNMFConcepts : Concepts that are non-negative combinations of data.

    References
    ----------
    .. [1] Ding, C., Li, T. & Jordan, M. I. (2010). Convex and semi-nonnegative
       matrix factorizations. IEEE TPAMI, 32(1), 45-55.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts import SemiNMFConcepts
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(200, 3) @ rng.randn(3, 10)
    >>> semi = SemiNMFConcepts(n_concepts=3, device="cpu", random_state=0).fit(X)
    >>> U = semi.transform(X)
    >>> bool(U.min() >= 0), bool(semi.score(X) > 0.99)
    (True, True)
    """

    def __init__(
        self,
        n_concepts=10,
        *,
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

    def _make_update(self, rows, gen, l1_W, l2_W):
        _, C = self._candidates(rows, gen, self._n_init_rows)
        centroids, _ = self._seed(C, gen)
        return SignedLS(centroids.contiguous(), l1_W, l2_W)

    def _online_restore(self, device, dtype):
        W = to_tensor(self._raw_components(), device, dtype)
        return SignedLS(W)


class ConvexNMFConcepts(_SignedNMF):
    """Convex-NMF concepts: each concept is a non-negative combination of data points.

    ``X ~ U W`` with codes ``U >= 0`` and concepts ``W = G C``, where ``C``
    are candidate rows of ``X`` and the mixing weights ``G >= 0``: every
    concept lies in the cone of the data, which keeps concepts interpretable
    (each one is explained by the samples it combines) for signed data.
    Codes are updated by HALS sweeps (shared with :class:`NMFConcepts`); the
    weights by Ding, Li & Jordan's multiplicative rule, computed from
    ``U^T U`` and ``U^T X`` only, so ``X`` is streamed once per iteration.

    For large ``n_samples`` the candidates are a random subsample of
    ``n_candidates`` rows (all rows when ``n_samples <= n_candidates``):
    the concepts are then combinations of those rows only. The vocabulary is
    the one of :class:`~skconcepts.sae.ArchetypalSAE`: ``candidates_`` are
    the candidate points, ``candidate_weights_`` the non-negative weights
    that combine them into concepts. With
    :meth:`partial_fit` the candidates are drawn from the first chunk only
    (a warning says so when it has fewer than ``n_candidates`` rows) and
    stay fixed; later chunks update the weights. The candidate rows are kept
    (``candidates_``) so that :meth:`partial_fit` can continue after ``fit``.

    Parameters
    ----------
    {params}
    n_candidates : int, default=1000
        Number of candidate rows the concepts are combined from (capped at
        ``n_samples``). Called ``max_candidates`` before skconcepts 0.1
        (renamed to share :class:`~skconcepts.sae.ArchetypalSAE`'s name).

    Attributes
    ----------
    components_ : ndarray of shape (n_concepts, n_features)
        The concepts, ``candidate_weights_ @ candidates_``, with unit L2 norm
        (the scale convention of every extractor: the codes carry the
        magnitude; a dead atom's row is zero).

    candidates_ : ndarray of shape (n_candidates, n_features)
        The candidate rows ``C = X[candidate_indices_]``.

    candidate_weights_ : ndarray of shape (n_concepts, n_candidates)
        The non-negative mixing weights ``G`` (each row divided by the norm of
        its concept, so that ``components_ = candidate_weights_ @
        candidates_``). Called ``convex_weights_`` before.

    candidate_indices_ : ndarray of shape (n_candidates,)
        Indices of the candidate rows in the training data (in the first
        chunk when the estimator was started by :meth:`partial_fit`).

    n_iter_ : int
        Number of concept updates: the passes over the data done by ``fit``,
        plus one per :meth:`partial_fit` call since (so after
        :meth:`partial_fit` only, the number of calls, ``n_steps_``).

    reconstruction_err_ : float
        Frobenius norm ``||X - U W||_F`` of the fit; after :meth:`partial_fit`,
        the same norm on the chunk just seen.

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
    SemiNMFConcepts : Signed concepts without the convexity constraint.
    NMFConcepts : Non-negative data and concepts.

    References
    ----------
    .. [1] Ding, C., Li, T. & Jordan, M. I. (2010). Convex and semi-nonnegative
       matrix factorizations. IEEE TPAMI, 32(1), 45-55.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts import ConvexNMFConcepts
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(100, 10)
    >>> cvx = ConvexNMFConcepts(n_concepts=4, device="cpu", random_state=0).fit(X)
    >>> W = cvx.candidate_weights_ @ X[cvx.candidate_indices_]
    >>> bool(np.allclose(W, cvx.components_, atol=1e-8))
    True
    >>> bool(cvx.candidate_weights_.min() >= 0)
    True
    >>> np.linalg.norm(cvx.components_, axis=1).round(6).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """

    _parameter_constraints: dict = {
        **_SignedNMF._parameter_constraints,
        "n_candidates": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        n_concepts=10,
        *,
        init=None,
        max_iter=200,
        tol=1e-4,
        alpha_W=0.0,
        alpha_H="same",
        l1_ratio=0.0,
        n_candidates=1000,
        batch_size=None,
        forget_factor=0.7,
        callbacks=None,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.n_concepts = n_concepts
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.alpha_W = alpha_W
        self.alpha_H = alpha_H
        self.l1_ratio = l1_ratio
        self.n_candidates = n_candidates
        self.batch_size = batch_size
        self.forget_factor = forget_factor
        self.callbacks = callbacks
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _make_update(self, rows, gen, l1_W, l2_W):
        import torch

        idx, C = self._candidates(rows, gen, self.n_candidates)
        _, labels = self._seed(C, gen)
        k, m = self.n_concepts, C.shape[0]
        onehot = torch.zeros((k, m), dtype=C.dtype, device=C.device)
        onehot[labels, torch.arange(m, device=C.device)] = 1
        counts = onehot.sum(1, keepdim=True)
        # Ding et al.: start from the cluster means, with a small positive
        # floor on every weight so that the multiplicative rule can move mass.
        Gm = torch.where(counts > 0, 0.9 * onehot / counts.clamp(min=1), 0.9 / m)
        Gm += 0.1 / m
        return ConvexMU(Gm, C, idx, l1_W, l2_W)

    def _store_extra(self, update):
        # the weights under the scale convention: components_ (unit-norm rows)
        # = candidate_weights_ @ candidates_; the solver's are times the norms
        scale = np.asarray(self._code_scale, dtype=np.float64)[:, None]
        Gm = to_numpy(update.Gm).astype(np.float64) / scale
        self.candidate_weights_ = Gm.astype(self.components_.dtype)
        self.candidate_indices_ = to_numpy(update.cand_idx).astype(int)
        # the candidate rows themselves (also what partial_fit continues from)
        self.candidates_ = to_numpy(update.C, self.components_.dtype)

    def _online_init(self, rows, gen):
        m = max(self.n_candidates, self.n_concepts)
        if rows.n < m:
            warnings.warn(
                f"ConvexNMFConcepts.partial_fit draws its candidate rows from the "
                f"first chunk only, which has {rows.n} rows (fewer than "
                f"max(n_candidates={self.n_candidates}, n_concepts="
                f"{self.n_concepts})): every concept will be a combination of "
                f"these {rows.n} rows. Pass a larger first chunk, or lower "
                f"n_candidates.",
                UserWarning,
                stacklevel=5,
            )
        return super()._online_init(rows, gen)

    def _online_restore(self, device, dtype):
        import torch

        if not hasattr(self, "candidates_"):
            raise ValueError(
                "This ConvexNMFConcepts was fitted by an older skconcepts that did "
                "not keep its candidate rows, so partial_fit cannot continue it; "
                "fit it again (or start a new stream with a fresh estimator)."
            )
        scale = np.asarray(self._code_scale, dtype=np.float64)[:, None]
        Gm = to_tensor(self.candidate_weights_ * scale, device, dtype)
        C = to_tensor(np.array(self.candidates_), device, dtype)
        idx = torch.as_tensor(self.candidate_indices_, device=device)
        return ConvexMU(Gm, C, idx)

    def _online_reseed(self, update, dead, rows, Ut):
        # the chunk's codes are not those of the candidates: solve theirs
        import torch

        l1_U, l2_U, _, _ = self._regularization(1, rows.d)
        G = gram_reg(update.W, l2_U)
        Uc = nnls_codes(
            update.C, update.W, G, torch.linalg.pinv(G), l1_U, self.max_iter, self.tol
        )
        update.reseed(dead, rows, Ut, cand_codes=Uc)


SemiNMFConcepts.__doc__ = SemiNMFConcepts.__doc__.replace(
    "{params}", _SIGNED_PARAMS_DOC.strip("\n").lstrip()
)
ConvexNMFConcepts.__doc__ = ConvexNMFConcepts.__doc__.replace(
    "{params}", _SIGNED_PARAMS_DOC.strip("\n").lstrip()
)
