"""Callbacks of the SAE training engine."""

import os

import joblib


class Checkpoint:
    """Save the estimator with ``joblib`` every ``every`` epochs.

    The fitted NumPy state is exported from the running session before each
    save, so a checkpoint loads (and transforms) like a fitted estimator.

    Parameters
    ----------
    path : str
        File name; ``{epoch}`` in it is replaced by the epoch number.
    every : int, default=1
        Save every ``every`` epochs (and never more often).

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

    def __init__(self, path, every=1):
        self.path = path
        self.every = every

    def on_train_begin(self, estimator, session):
        """Reset the list of saved files.

        Parameters
        ----------
        estimator : estimator instance
            The SAE being trained.
        session : object
            The engine's training session.
        """
        self.saved_ = []

    def on_epoch_end(self, estimator, session, record):
        """Export the fitted state and save the estimator every ``every`` epochs.

        Parameters
        ----------
        estimator : estimator instance
            The SAE being trained.
        session : object
            The engine's training session (``session.epoch`` counts epochs).
        record : dict
            The epoch's entry of ``history_``.

        Returns
        -------
        stop : bool
            Always False: a checkpoint never stops training.
        """
        if session.epoch % self.every:
            return False
        estimator._export_state(session)
        path = self.path.format(epoch=session.epoch)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        joblib.dump(estimator, path)
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
