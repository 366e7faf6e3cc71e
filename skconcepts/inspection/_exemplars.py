"""The inputs (or positions) that express each concept the most."""

import numbers

import numpy as np
from sklearn.utils import Bunch

from ._maps import _codes
from ._positions import positions_to_rows

__all__ = ["top_exemplars"]

_POSITIONS = ("max", "mean", "pairs")


def top_exemplars(extractor, X, n=10, *, positions=None, channel_axis=-1):
    """The ``n`` inputs with the largest code of each concept.

    Parameters
    ----------
    extractor : fitted concept extractor
        Any object with ``transform(rows) -> codes``.
    X : array-like of shape (n_samples, n_features) or (n_samples, <grid>, n_channels)
        Activations: one row per input, or positional activations (a
        feature map, patch tokens, frames; see :func:`positions_to_rows`).
    n : int, default=10
        Exemplars per concept (at most the number of candidates: inputs, or
        (input, position) pairs with ``positions="pairs"``).
    positions : {"max", "mean", "pairs"}, default=None
        For positional ``X`` only (None means ``"max"`` there):

        - ``"max"``: an input's score for a concept is its largest code over
          the positions (the input holds the concept *somewhere*; CRAFT's
          crops play this role);
        - ``"mean"``: the mean code over the positions (the code of the
          pooled activation for a linear extractor; favours inputs where the
          concept is everywhere);
        - ``"pairs"``: rank every (input, position) pair by its code; an
          input can appear several times, at different positions.

        Must be None for 2-D ``X``.
    channel_axis : int, default=-1
        Axis of the channels of positional ``X``.

    Returns
    -------
    result : sklearn.utils.Bunch
        ``indices`` (n_concepts, n) int: the inputs, best first (ties keep
        the input order); ``codes`` (n_concepts, n): their score for the
        concept (code, max or mean code); with ``positions="pairs"`` also
        ``positions`` (n_concepts, n, n_grid_axes) int: the grid
        coordinates of each pair (e.g. ``(row, column)``).

    See Also
    --------
    skconcepts.plotting.plot_concept_images : Image grids of the exemplars.
    skconcepts.plotting.plot_concept_texts : Ranked texts.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.inspection import top_exemplars
    >>> class Identity:
    ...     def transform(self, X):
    ...         return np.asarray(X)
    >>> X = np.array([[0.1, 2.0], [0.9, 0.0], [0.5, 1.0]])
    >>> res = top_exemplars(Identity(), X, n=2)
    >>> res.indices
    array([[1, 2],
           [0, 2]])
    >>> res.codes[0]
    array([0.9, 0.5])
    """
    X = np.asarray(X)
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}.")
    if X.ndim == 2:
        if positions is not None:
            raise ValueError(
                "positions is for positional activations (n_samples, <grid>, "
                f"n_channels); X is 2-D (one row per input), shape {X.shape}. "
                "Pass positions=None."
            )
        scores = _codes(extractor, X)  # (n_samples, k)
        grid = None
    elif X.ndim >= 3:
        mode = "max" if positions is None else positions
        if mode not in _POSITIONS:
            raise ValueError(
                f"positions must be one of {_POSITIONS} (or None); got {positions!r}."
            )
        rows, shape = positions_to_rows(X, channel_axis=channel_axis)
        U = _codes(extractor, rows)
        grid = shape[1:]
        if mode == "pairs":
            scores = U  # (n * prod(grid), k): every pair a candidate
        else:
            per_input = U.reshape(shape[0], -1, U.shape[1])
            scores = per_input.max(axis=1) if mode == "max" else per_input.mean(1)
            grid = None
    else:
        raise ValueError(
            "X must be (n_samples, n_features) or positional (n_samples, <grid>, "
            f"n_channels); got shape {X.shape}."
        )
    n = min(int(n), scores.shape[0])
    order = np.argsort(-scores, axis=0, kind="stable")[:n].T  # (k, n)
    values = np.take_along_axis(scores.T, order, axis=1)
    if grid is None:
        return Bunch(indices=order, codes=values)
    n_pos = int(np.prod(grid))
    coords = np.stack(np.unravel_index(order % n_pos, grid), axis=-1)
    return Bunch(indices=order // n_pos, codes=values, positions=coords)
