"""Callbacks of the SAE training engine: the public ones and the built-ins.

Every callback has any of ``on_train_begin(estimator, session)``,
``on_epoch_begin(estimator, session)``,
``on_epoch_end(estimator, session, record) -> bool`` (a true return stops
training) and ``on_train_end(estimator, session)``. The engine's
``_notify(hook, session, *args)`` calls the hook of the **built-in**
callbacks first, in this order, then of the user's ``callbacks``:

0. :class:`_DivergenceCheck`: a non-finite loss or a training R^2 below
   :data:`skconcepts._faults.R2_FLOOR` raises
   :class:`~skconcepts._faults.DivergenceError` (naming the likely causes
   and fixes) before anything else reads the record;
1. :class:`_EarlyStopping`: the validation R^2 (``record["val_r2"]``), the
   best state, the stop after ``n_iter_no_change`` epochs without
   improvement, and the best state restored at the end (a no-op without
   ``early_stopping``);
2. :class:`_Timer`: ``record["time"]``, the seconds of the epoch;
3. :class:`_History`: appends the record to ``session.history``;
4. :class:`_PrintLog`: the line of ``verbose`` (rank 0 only);
5. :class:`_ProgressBar`: a tqdm bar over the optimiser steps of the call
   (``on_batch_end``, the engine's hook after every step; the epoch, loss
   and R^2 beside it), drawn by
   the policy of :mod:`skconcepts._progress` (with ``verbose`` set: on a
   terminal outside tests, always with ``verbose >= 2`` or
   ``SKCONCEPTS_PROGRESS=1``; rank 0 only). It adds to the ``verbose``
   lines, it does not replace them.

So a user's callback sees the finished record, already in the history.
"""

import copy
import math
import os
import sys
import tempfile
import time

import joblib

from .._faults import check_divergence
from .._progress import progress


def atomic_dump(obj, path):
    """``joblib.dump(obj, path)`` that never leaves ``path`` half-written.

    The object is written to a temporary file in the same folder, flushed to
    disk and moved over ``path`` with :func:`os.replace` (atomic on POSIX and
    Windows): a reader, or a process killed during the save, sees the former
    file or the new one, never a part. A killed save may leave a hidden
    ``.<name>.*.tmp`` file beside it, never a file named ``path``.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as f:
            joblib.dump(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise


def _remove_quietly(path):
    """Remove ``path`` if it exists (cleanup of a failed save)."""
    try:
        os.remove(path)
    except OSError:
        pass


class Checkpoint:
    """Save the estimator with ``joblib`` every ``every`` epochs or seconds.

    The fitted NumPy state is exported from the running session before each
    save, so a checkpoint loads (and transforms) like a fitted estimator.
    Saves are atomic (:func:`atomic_dump`: a temporary file in the same folder
    moved over the target with :func:`os.replace`), so a process killed
    during a save never leaves a half-written checkpoint. Works for the SAEs
    (an epoch is a pass over the data, or one ``partial_fit`` call) and the
    NMF family (an epoch is one iteration).

    The saved estimator has ``callbacks=None`` (it loads where the classes of
    the callbacks are not importable; set them again to keep checkpointing).
    Resume a killed fit from the last checkpoint with ``partial_fit``: it
    continues from the saved weights, one pass per call (see
    ``docs/guide/faults.md``)::

        sae = joblib.load(path)
        for _ in range(sae.max_epochs - sae.n_iter_):
            sae.partial_fit(X)

    Parameters
    ----------
    path : str
        File name; ``{epoch}`` in it is replaced by the epoch number (one
        file per save), else the same file is replaced at every save.
    every : int or None, default=1
        Save every ``every`` epochs; None: by time only.
    every_seconds : float or None, default=None
        Also save at the end of an epoch when at least ``every_seconds``
        seconds passed since the last save (or the start of training).

    Attributes
    ----------
    saved_ : list of str
        The files written.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from skconcepts.sae import Checkpoint, TopKSAE
    >>> X = np.random.RandomState(0).rand(64, 5)
    >>> path = os.path.join(tempfile.mkdtemp(), "sae-{epoch}.joblib")
    >>> ckpt = Checkpoint(path, every=2)
    >>> sae = TopKSAE(n_concepts=6, top_k=2, max_epochs=4, random_state=0,
    ...               callbacks=[ckpt]).fit(X)
    >>> [os.path.basename(p) for p in ckpt.saved_]
    ['sae-2.joblib', 'sae-4.joblib']
    """

    def __init__(self, path, every=1, every_seconds=None):
        self.path = path
        self.every = every
        self.every_seconds = every_seconds

    def on_train_begin(self, estimator, session):
        """Reset the list of saved files and the clock.

        Parameters
        ----------
        estimator : estimator instance
            The estimator being trained.
        session : object
            The engine's training session.
        """
        if self.every is None and self.every_seconds is None:
            raise ValueError("Checkpoint needs every or every_seconds (or both).")
        self.saved_ = []
        self._last = time.monotonic()

    def _due(self, session):
        if self.every is not None and session.epoch % self.every == 0:
            return True
        return (
            self.every_seconds is not None
            and time.monotonic() - self._last >= self.every_seconds
        )

    def on_epoch_end(self, estimator, session, record):
        """Export the fitted state and save the estimator when a save is due.

        Parameters
        ----------
        estimator : estimator instance
            The estimator being trained.
        session : object
            The engine's training session (``session.epoch`` counts epochs).
        record : dict
            The epoch's entry of ``history_``.

        Returns
        -------
        stop : bool
            Always False: a checkpoint never stops training.
        """
        if not self._due(session):
            return False
        estimator._export_state(session)
        path = self.path.format(epoch=session.epoch)
        # a shallow copy without the callbacks: the file is a model that loads
        # where the callbacks' classes (e.g. defined in a script) do not
        saved = copy.copy(estimator)
        saved.callbacks = None
        atomic_dump(saved, path)
        self._last = time.monotonic()
        self.saved_.append(path)
        return False


class LearningRateSchedule:
    """Change the engine's learning rate at the end of every epoch.

    The engine sets the learning rate of every step to ``base_lr`` times its
    warm-up + cosine factor; this callback replaces ``base_lr`` (which starts
    at ``learning_rate``) by ``schedule(epoch, base_lr)`` after each epoch,
    so step decays, plateau rules or restarts compose with the warm-up.

    Parameters
    ----------
    schedule : callable
        ``schedule(epoch, lr) -> new_lr`` with ``epoch`` the number of epochs
        done (1 after the first) and ``lr`` the current ``base_lr``. It may
        read the history through a closure or a callable object.

    Attributes
    ----------
    lrs_ : list of float
        ``base_lr`` after each epoch.

    Examples
    --------
    Halve the learning rate after every epoch:

    >>> import numpy as np
    >>> from skconcepts.sae import LearningRateSchedule, TopKSAE
    >>> X = np.random.RandomState(0).rand(64, 5)
    >>> halve = LearningRateSchedule(lambda epoch, lr: lr / 2)
    >>> sae = TopKSAE(n_concepts=6, top_k=2, max_epochs=3, learning_rate=0.01,
    ...               random_state=0, callbacks=[halve]).fit(X)
    >>> halve.lrs_
    [0.005, 0.0025, 0.00125]
    """

    def __init__(self, schedule):
        self.schedule = schedule

    def on_train_begin(self, estimator, session):
        """Reset the record of learning rates.

        Parameters
        ----------
        estimator : estimator instance
            The SAE being trained.
        session : object
            The engine's training session.
        """
        self.lrs_ = []

    def on_epoch_end(self, estimator, session, record):
        """Set ``session.base_lr`` to ``schedule(epoch, base_lr)``.

        Parameters
        ----------
        estimator : estimator instance
            The SAE being trained.
        session : object
            The engine's training session (``session.base_lr``,
            ``session.epoch``).
        record : dict
            The epoch's entry of ``history_``.

        Returns
        -------
        stop : bool
            Always False.
        """
        session.base_lr = float(self.schedule(session.epoch, session.base_lr))
        self.lrs_.append(session.base_lr)
        return False


# --------------------------------------------------------------------------
# built-in callbacks (always run, before the user's)


class _DivergenceCheck:
    """Stops a diverged fit: non-finite loss or training R^2 below the floor."""

    def on_epoch_end(self, estimator, session, record):
        check_divergence(estimator, record)
        return False


class _EarlyStopping:
    """Validation R^2 each epoch, patience, best state restored at the end."""

    def on_train_begin(self, estimator, session):
        self.best_val, self.best_state, self.no_improve = math.inf, None, 0

    def on_epoch_end(self, estimator, session, record):
        if session.validation is None:
            return False
        val_r2 = estimator._validation_r2(session)
        record["val_r2"] = val_r2
        if 1.0 - val_r2 < self.best_val - estimator.tol:
            self.best_val, self.no_improve = 1.0 - val_r2, 0
            self.best_state = {
                k: v.detach().clone() for k, v in session.module.state_dict().items()
            }
            return False
        self.no_improve += 1
        return self.no_improve >= estimator.n_iter_no_change

    def on_train_end(self, estimator, session):
        if self.best_state is not None:
            session.module.load_state_dict(self.best_state)
        self.best_state = None


class _Timer:
    """``record["time"]``: seconds from the start of the epoch."""

    def on_epoch_begin(self, estimator, session):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, estimator, session, record):
        record["time"] = time.perf_counter() - self.t0
        return False


class _History:
    """Appends each epoch's record to ``session.history`` (``history_``)."""

    def on_epoch_end(self, estimator, session, record):
        session.history.append(record)
        return False


class _PrintLog:
    """One line per epoch when ``verbose`` (rank 0 of a data-parallel fit)."""

    def on_epoch_end(self, estimator, session, record):
        dp = session.dp
        if not estimator.verbose or (dp is not None and dp.rank != 0):
            return False
        extra = "" if session.validation is None else f", val R2 {record['val_r2']:.4f}"
        print(
            f"[{type(estimator).__name__}] epoch {session.epoch}: loss "
            f"{record['loss']:.5f}, R2 {record['train_r2']:.4f}{extra}, "
            f"L0 {record['l0']:.2f}, "
            f"dead {100 * record['dead_fraction']:.1f}%, "
            f"{session.epoch_rows / max(record['time'], 1e-9):.0f} samples/s",
            file=sys.stdout,
            flush=True,
        )
        return False


class _ProgressBar:
    """A progress bar over the optimiser steps, with the epoch, loss and R^2
    of the last finished epoch beside it (``skconcepts._progress`` policy).
    ``partial_fit`` (one pass, its steps unknown ahead) counts without a
    total."""

    def on_train_begin(self, estimator, session):
        dp = session.dp
        hidden = dp is not None and dp.rank != 0
        self.bar = progress(
            total=session.total_steps,
            desc=type(estimator).__name__,
            unit="step",
            verbose=0 if hidden else estimator.verbose,
        )

    def on_batch_end(self, estimator, session):
        self.bar.update(1)

    def on_epoch_end(self, estimator, session, record):
        self.bar.set_postfix(
            epoch=f"{record['epoch']}/{session.planned_epochs}",
            loss=f"{record['loss']:.4g}",
            r2=f"{record['train_r2']:.4f}",
        )
        return False

    def on_train_end(self, estimator, session):
        self.bar.close()


def builtin_callbacks():
    """New instances of the built-in callbacks, in the order they run."""
    return [
        _DivergenceCheck(),
        _EarlyStopping(),
        _Timer(),
        _History(),
        _PrintLog(),
        _ProgressBar(),
    ]
