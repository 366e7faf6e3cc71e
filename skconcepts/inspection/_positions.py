"""Activations with positions as rows, and back.

A convolutional feature map ``(n, h, w, c)``, a ViT's patch tokens
``(n, p, c)`` or a spectrogram model's frames ``(n, t, c)`` hold one
activation vector per *position* of each input. Concept extractors work on
rows: :func:`positions_to_rows` stacks the positions of every input into a
``(n * positions, c)`` matrix (input-major, positions in C order) and
:func:`rows_to_positions` puts rows of any width (activations, codes) back
on the grid, checking that they match it.
"""

import numbers

import numpy as np

__all__ = ["positions_to_rows", "rows_to_positions"]


def _check_channel_axis(channel_axis, ndim):
    if not isinstance(channel_axis, numbers.Integral) or not (
        -ndim <= channel_axis < ndim
    ):
        raise ValueError(
            f"channel_axis must be an integer axis of the {ndim}-D activations "
            f"(-1 for channels last, 1 for torch's (n, c, h, w)); got "
            f"{channel_axis!r}."
        )
    return int(channel_axis) % ndim


def _positional_channel_axis(channel_axis, ndim):
    """:func:`_check_channel_axis` of positional activations: never axis 0."""
    axis = _check_channel_axis(channel_axis, ndim)
    if axis == 0:
        raise ValueError(
            "channel_axis cannot be the sample axis 0; use -1 (channels last) "
            "or 1 (channels first, torch's (n, c, h, w))."
        )
    return axis


def positions_to_rows(A, *, channel_axis=-1):
    """Stack the positions of positional activations into rows.

    Parameters
    ----------
    A : array-like of shape (n_samples, <grid>, n_channels)
        Activations with at least one position axis: ``(n, h, w, c)`` for a
        feature map, ``(n, p, c)`` for patch tokens or frames.
    channel_axis : int, default=-1
        The axis of the channels (features). Use ``1`` for torch's
        channels-first ``(n, c, h, w)``; it is moved last before stacking.

    Returns
    -------
    rows : ndarray of shape (n_samples * prod(grid), n_channels)
        One row per (input, position): the rows of input ``i`` are
        ``rows[i * prod(grid):(i + 1) * prod(grid)]``, its positions in C
        (row-major) order, so that position ``(r, s)`` of an ``h x w`` grid
        is row ``i * h * w + r * w + s``. A view of ``A`` when possible.
    shape : tuple of int
        ``(n_samples, <grid>)``: what :func:`rows_to_positions` needs to put
        rows back on the grid.

    See Also
    --------
    rows_to_positions : The inverse.
    concept_maps : Concept codes of every position, on the grid.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.inspection import positions_to_rows, rows_to_positions
    >>> A = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # (n, h, w, c)
    >>> rows, shape = positions_to_rows(A)
    >>> rows.shape, shape
    ((24, 5), (2, 3, 4))
    >>> bool(np.array_equal(rows[1 * 12 + 2 * 4 + 3], A[1, 2, 3]))
    True
    >>> bool(np.array_equal(rows_to_positions(rows, shape), A))
    True
    """
    A = np.asarray(A)
    if A.ndim < 3:
        raise ValueError(
            "A must have a sample axis, at least one position axis and a "
            f"channel axis, e.g. (n, h, w, c) or (n, p, c); got shape {A.shape}. "
            "Activations that are already one row per input need no conversion."
        )
    axis = _positional_channel_axis(channel_axis, A.ndim)
    A = np.moveaxis(A, axis, -1)
    shape = tuple(int(s) for s in A.shape[:-1])
    return A.reshape(-1, A.shape[-1]), shape


def rows_to_positions(R, shape, *, channel_axis=-1):
    """Put rows (activations or codes) back on the positions they came from.

    Parameters
    ----------
    R : array-like of shape (n_samples * prod(grid), n_columns)
        Rows in the order of :func:`positions_to_rows`: activations, or the
        concept codes of those rows (``extractor.transform(rows)``).
    shape : tuple of int
        ``(n_samples, <grid>)``, as returned by :func:`positions_to_rows`
        (without the channel axis).
    channel_axis : int, default=-1
        Where to put the columns of ``R`` in the result (``1`` gives torch's
        channels-first layout).

    Returns
    -------
    A : ndarray of shape (n_samples, <grid>, n_columns)
        ``R`` on the grid (columns at ``channel_axis``); a view when possible.

    Raises
    ------
    ValueError
        When the number of rows is not ``prod(shape)``.

    See Also
    --------
    positions_to_rows : The inverse.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.inspection import rows_to_positions
    >>> codes = np.arange(12.0).reshape(6, 2)  # 2 inputs x 3 positions, 2 concepts
    >>> rows_to_positions(codes, (2, 3))[1, :, 0]
    array([ 6.,  8., 10.])
    """
    R = np.asarray(R)
    if R.ndim != 2:
        raise ValueError(
            f"R must be a 2-D array of rows (n_rows, n_columns); got shape {R.shape}."
        )
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError as exc:
        raise ValueError(
            f"shape must be a tuple of ints (n_samples, <grid>); got {shape!r}."
        ) from exc
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ValueError(
            "shape must be (n_samples, <grid>) with at least one position axis "
            f"and positive sizes, as returned by positions_to_rows; got {shape}."
        )
    expected = int(np.prod(shape))
    if R.shape[0] != expected:
        raise ValueError(
            f"R has {R.shape[0]} rows but shape {shape} holds {expected} "
            "positions (n_samples * prod(grid)). Pass the shape returned by "
            "positions_to_rows for these rows (without the channel axis)."
        )
    out = R.reshape(shape + (R.shape[1],))
    axis = _positional_channel_axis(channel_axis, out.ndim)
    return np.moveaxis(out, -1, axis)
