"""Shared machinery of the NMF family: parameters, regularisation, transform,
and the online step of ``partial_fit``."""

import math

import numpy as np

from .._backend import (
    STREAM_MEMORY_SHARE,
    default_batch_size,
    to_numpy,
    to_tensor,
    torch_dtype,
)
from .._compat import Integral, Interval, Real, StrOptions
from .._faults import (
    check_divergence,
    check_finite_state,
    deferred_interrupt,
    warn_far_from_converged,
    warn_interrupted,
)
from ..base import (
    DEVICE_CONSTRAINT,
    ConceptExtractor,
    call_hook,
    check_callbacks,
    unit_rows,
)
from ._solvers import Rows, gram_reg, is_memmap, nnls_codes


class _BaseNMF(ConceptExtractor):
    """Base of the NMF family (NMF, Semi-NMF and Convex-NMF concepts).

    Holds the parameters they share, scikit-learn's scaling of the
    regularisation, and the row-independent non-negative least-squares
    ``transform`` used by all three (:func:`~._solvers.nnls_codes`), and the
    online step of their ``partial_fit`` (:meth:`_partial_fit`).
    """

    _parameter_constraints: dict = {
        "n_concepts": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "alpha_W": [Interval(Real, 0, None, closed="left")],
        "alpha_H": [Interval(Real, 0, None, closed="left"), StrOptions({"same"})],
        "l1_ratio": [Interval(Real, 0, 1, closed="both")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "forget_factor": [Interval(Real, 0, 1, closed="both")],
        "callbacks": [list, None],
        "device": DEVICE_CONSTRAINT,
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # ----------------------------------------------------------- helpers
    def _regularization(self, n_samples, n_features):
        """``(l1_U, l2_U, l1_W, l2_W)`` scaled as scikit-learn's ``NMF``.

        ``alpha_W`` weighs the codes (scikit-learn's ``W``) and is multiplied
        by ``n_features``; ``alpha_H`` weighs the concepts (scikit-learn's
        ``H``) and is multiplied by ``n_samples``; ``l1_ratio`` splits each
        between the L1 and the (halved, squared) L2 penalty.
        """
        alpha_U = float(self.alpha_W)
        alpha_W = alpha_U if self.alpha_H == "same" else float(self.alpha_H)
        r = float(self.l1_ratio)
        return (
            n_features * alpha_U * r,
            n_features * alpha_U * (1.0 - r),
            n_samples * alpha_W * r,
            n_samples * alpha_W * (1.0 - r),
        )

    def _rows(self, X, X_in, device):
        """Row access for ``fit``: streamed with ``batch_size`` or for a memmap."""
        bs = self.batch_size
        if bs is None and (is_memmap(X_in) or is_memmap(X)):
            # batches of 1/64 of working_memory (16 MiB at the default), read
            # into one reusable buffer
            bs = default_batch_size(
                X.shape[1], itemsize=X.dtype.itemsize, share=STREAM_MEMORY_SHARE
            )
        return Rows(X, device, torch_dtype(X.dtype), bs)

    def _set_concepts(self, W, X_dtype):
        """Store the solver's concepts ``W`` under the scale convention.

        ``components_`` gets the unit-norm rows ``W / ||W_t||`` and the row
        norms are kept (``_code_scale``): ``transform`` solves the codes with
        the solver's ``W`` (the same penalised problem as ``fit``) and
        multiplies them by the norms, so ``U @ components_`` is unchanged. A
        zero row (dead atom) stays zero, with norm 1.
        """
        Wn, norms = unit_rows(W)
        self.components_ = to_numpy(Wn, X_dtype)
        self._code_scale = to_numpy(norms, X_dtype)

    def _raw_components(self):
        """The solver's concepts ``components_ * norms`` (NumPy, a new array)."""
        scale = getattr(self, "_code_scale", None)
        W = np.array(self.components_)
        return W if scale is None else W * np.asarray(scale)[:, None]

    def _set_fit_result(self, rows, Ut, W, n_iter, X_dtype):
        self._set_concepts(W, X_dtype)
        self.n_iter_ = int(n_iter)
        self._set_quality(*rows.residual_stats(Ut, W))

    def _set_quality(self, sse, sst):
        """``reconstruction_err_`` (Frobenius) and ``reconstruction_r2_``."""
        self.reconstruction_err_ = float(math.sqrt(max(sse, 0.0)))
        if sst > 0:
            self.reconstruction_r2_ = float(1.0 - sse / sst)
        else:
            self.reconstruction_r2_ = 1.0 if sse == 0 else 0.0

    # --------------------------------------------------------- callbacks
    def _fit_hooks(self, X_dtype):
        """``(callbacks, on_iter)``: the callback protocol of the SAEs for a fit.

        ``on_iter(n_iter, err, rel_err, W)`` appends the iteration's record to
        the session's history, stops a diverged fit
        (:func:`skconcepts._faults.check_divergence`: a non-finite error or a
        training R^2 below the floor raises ``DivergenceError``), calls
        ``on_epoch_end`` of every callback and returns True when one asked to
        stop. ``interrupted=True`` (Ctrl-C, from the solver's loop) marks the
        record ``"interrupted"`` and calls no callback.
        """
        # the progress bar (skconcepts._progress policy) runs as a built-in,
        # before the user's callbacks
        callbacks = [_IterationBar()] + check_callbacks(self.callbacks)
        session = _NMFSession(X_dtype)
        call_hook(callbacks, "on_train_begin", self, session)

        def on_iter(n_iter, err, rel_err, sst, W, interrupted=False):
            session.epoch = n_iter
            session.W = W
            r2 = 1.0 - err**2 / sst if sst > 0 else float(err == 0)
            record = {
                "epoch": n_iter,
                "reconstruction_err": err,
                "relative_error": rel_err,
                "train_r2": r2,
            }
            if interrupted:
                session.interrupted = True
                if session.history and session.history[-1]["epoch"] == n_iter:
                    session.history[-1]["interrupted"] = True  # already recorded
                else:
                    session.history.append({**record, "interrupted": True})
                return True
            check_divergence(self, record, loss_key="reconstruction_err")
            session.history.append(record)
            return call_hook(callbacks, "on_epoch_end", self, session, record)

        return callbacks, session, on_iter

    def _end_hooks(self, callbacks, session):
        """``on_train_end``, then the end of a fit: ``interrupted_`` (and its
        warning), no non-finite state, ``ConvergenceWarning`` far from
        convergence."""
        call_hook(callbacks, "on_train_end", self, session)
        check_finite_state(self, ("components_", "_code_scale", "candidate_weights_"))
        self.interrupted_ = bool(session.interrupted)
        if self.interrupted_:
            warn_interrupted(self, session.epoch)
        else:
            warn_far_from_converged(self, self.reconstruction_r2_)

    def _export_state(self, session):
        """Write ``components_`` from a running fit (for :class:`Checkpoint`)."""
        if session.W is not None:
            self._set_concepts(session.W, session.dtype)
            self._export_extra(session)
            self.n_iter_ = int(session.epoch)

    def _export_extra(self, session):
        """Estimator-specific state of a running fit (Convex-NMF's weights)."""

    def _set_fit_stats(self, UtU, UtX, n, X_dtype):
        """Keep ``fit``'s statistics so that ``partial_fit`` continues from it."""
        self._stat_UtU = to_numpy(UtU, X_dtype)
        self._stat_UtX = to_numpy(UtX, X_dtype)
        self._stat_n = float(n)
        self.n_steps_ = 0

    # ------------------------------------------------------------ online
    def _online_init(self, rows, gen):  # pragma: no cover - abstract
        """Concept update initialised from the first chunk (first ``partial_fit``)."""
        raise NotImplementedError

    def _online_restore(self, device, dtype):  # pragma: no cover - abstract
        """Concept update rebuilt from the fitted state (later calls)."""
        raise NotImplementedError

    def _online_store(self, update, X_dtype):
        """Keep the fitted state of the concept update (``components_``, ...)."""
        self._set_concepts(update.W, X_dtype)

    def _online_reseed(self, update, dead, rows, Ut):
        update.reseed(dead, rows, Ut)

    def _partial_fit(self, X):
        """One online step on the chunk ``X`` (shared by the three estimators).

        In the manner of scikit-learn's ``MiniBatchNMF``: the chunk's codes
        are solved with the concepts fixed (the ``transform`` solver), the
        statistics ``A = sum U^T U`` and ``B = sum U^T X`` are decayed by
        ``forget_factor`` and updated with the chunk's, and the concept update
        (HALS for NMF, least squares for Semi-NMF, the multiplicative rule for
        Convex-NMF) takes one step on ``(A, B)``; atoms left dead are
        re-seeded on the chunk. The first call (no ``components_`` yet)
        initialises the concepts from the chunk; after ``fit`` the statistics
        of the full data are the starting point.
        """
        import torch

        from .._backend import make_generator

        first = not hasattr(self, "components_")
        X = self._validate_X(X, reset=first)
        device = self._resolve_device()
        dtype = torch_dtype(X.dtype)
        n, d = X.shape
        k = self.n_concepts
        rows = Rows(X, device, dtype, self._batch_size_for(d, X.dtype.itemsize))
        # Ctrl-C during the step: it runs to its end (the call is one step)
        with deferred_interrupt() as flag, torch.no_grad():
            if first:
                update = self._online_init(rows, make_generator(self.random_state))
                A = torch.zeros((k, k), dtype=dtype, device=device)
                B = torch.zeros((k, d), dtype=dtype, device=device)
                n_eff, rho = 0.0, 0.0
            else:
                update = self._online_restore(device, dtype)
                if hasattr(self, "_stat_UtU"):
                    # copies: the updates below work in place
                    A = to_tensor(np.array(self._stat_UtU), device, dtype)
                    B = to_tensor(np.array(self._stat_UtX), device, dtype)
                    n_eff, rho = self._stat_n, float(self.forget_factor)
                else:  # a Checkpoint of a running fit: concepts, no statistics
                    A = torch.zeros((k, k), dtype=dtype, device=device)
                    B = torch.zeros((k, d), dtype=dtype, device=device)
                    n_eff, rho = 0.0, 0.0
            W = update.W
            l1_U, l2_U, _, _ = self._regularization(n, d)
            G = gram_reg(W, l2_U)
            Ginv = torch.linalg.pinv(G)
            Ut = torch.empty((k, n), dtype=dtype, device=device)
            for sl, xb in rows.batches():
                Ut[:, sl] = nnls_codes(xb, W, G, Ginv, l1_U, self.max_iter, self.tol)
            A.mul_(rho).addmm_(Ut, Ut.T)
            B.mul_(rho)
            xsq = 0.0
            for sl, xb in rows.batches():
                B.addmm_(Ut[:, sl], xb)
                xsq += float(torch.linalg.vector_norm(xb).double() ** 2)
            n_eff = rho * n_eff + n
            _, _, update.l1, update.l2 = self._regularization(n_eff, d)
            update.step(A, B)
            dead = update.dead(A)
            if bool(dead.any()):
                self._online_reseed(update, dead, rows, Ut)
            sse, sst = rows.residual_stats(Ut, update.W)
            err = math.sqrt(max(sse, 0.0))
        self._online_store(update, X.dtype)
        self._stat_UtU = to_numpy(A, X.dtype)
        self._stat_UtX = to_numpy(B, X.dtype)
        self._stat_n = float(n_eff)
        self.n_steps_ = (0 if first else getattr(self, "n_steps_", 0)) + 1
        self.n_iter_ = (0 if first else getattr(self, "n_iter_", 0)) + 1
        self._set_quality(sse, sst)
        self.interrupted_ = bool(flag.requested)
        if self.interrupted_:
            warn_interrupted(self, self.n_iter_, "partial_fit")
        if self.verbose:
            rel = err / math.sqrt(max(xsq, 1e-300))
            print(
                f"partial_fit step {self.n_steps_:4d}: {n} rows, relative error "
                f"{rel:.6f} on the chunk"
            )
        return self

    # --------------------------------------------------------- transform
    def _device_state(self, device, dtype):
        import torch

        W = torch.as_tensor(self.components_, dtype=dtype, device=device)
        scale = getattr(self, "_code_scale", None)
        if scale is None:
            scale = np.ones(W.shape[0])
        s = torch.as_tensor(np.asarray(scale), dtype=dtype, device=device)
        W_raw = W * s[:, None]
        _, l2_U, _, _ = self._regularization(1, self.n_features_in_)
        G = gram_reg(W_raw, l2_U)
        return {
            "components": W,
            "raw": W_raw,
            "scale": s,
            "gram": G,
            "gram_pinv": torch.linalg.pinv(G),
        }

    def _encode(self, Xb, state):
        l1_U, _, _, _ = self._regularization(1, self.n_features_in_)
        U = nnls_codes(
            Xb,
            state["raw"],
            state["gram"],
            state["gram_pinv"],
            l1=l1_U,
            max_iter=self.max_iter,
            tol=self.tol,
        ).T
        return U * state["scale"]


class _IterationBar:
    """A progress bar over the iterations of ``fit`` (``skconcepts._progress``
    policy: drawn with ``verbose`` on a terminal, or when asked)."""

    def on_train_begin(self, estimator, session):
        from .._progress import progress

        self.bar = progress(
            total=getattr(estimator, "max_iter", None),
            desc=type(estimator).__name__,
            unit="iter",
            verbose=estimator.verbose,
        )

    def on_epoch_end(self, estimator, session, record):
        if getattr(self.bar, "disable", False):
            return False  # hidden: no formatting at every iteration
        self.bar.set_postfix(rel_err=f"{record['relative_error']:.4g}", refresh=False)
        self.bar.update(1)
        return False

    def on_train_end(self, estimator, session):
        self.bar.close()


class _NMFSession:
    """What the callbacks of an NMF fit see: ``epoch`` (iterations done),
    ``history`` (the records so far) and ``W`` (the solver's concepts)."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.epoch = 0
        self.history = []
        self.W = None
        self.update = None
        self.interrupted = False
