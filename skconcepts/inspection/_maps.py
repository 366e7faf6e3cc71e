"""Concept maps: where in each input every concept is expressed (CRAFT).

For activations with positions (a feature map, patch tokens, frames), the
codes ``u`` of every position's activation vector form one map per concept
(:func:`concept_maps`), optionally upsampled to the input grid. Weighting a
class's important concepts by their importance gives CRAFT's figure
(:func:`importance_weighted_maps`).
"""

import numbers

import numpy as np
from sklearn.utils import Bunch

from ._positions import positions_to_rows, rows_to_positions

__all__ = ["concept_maps", "importance_weighted_maps", "upsample_maps"]

_ORDERS = {"nearest": 0, "bilinear": 1}


def _check_transform(extractor):
    if isinstance(extractor, type) or not callable(
        getattr(extractor, "transform", None)
    ):
        raise TypeError(
            "extractor must be a fitted concept extractor with a transform "
            "method (e.g. a fitted NMFConcepts, TopKSAE or sklearn NMF); got "
            f"{extractor!r}."
        )


def _codes(extractor, rows):
    """``extractor.transform(rows)`` as a 2-D array with one row per row."""
    _check_transform(extractor)
    U = np.asarray(extractor.transform(rows))
    if U.ndim != 2 or U.shape[0] != rows.shape[0]:
        raise ValueError(
            f"extractor.transform returned shape {U.shape} for {rows.shape[0]} "
            "rows; a concept extractor must return (n_rows, n_concepts)."
        )
    return U


def upsample_maps(maps, size, *, interpolation="bilinear"):
    """Resize maps ``(n, <grid>, k)`` to ``(n, <size>, k)``.

    Parameters
    ----------
    maps : array-like of shape (n_samples, <grid>, n_maps)
        Maps on a grid of one or more axes (e.g. :func:`concept_maps`).
    size : int or tuple of int
        The target grid, one size per grid axis (an int for a 1-D grid, or
        for the same size on every axis).
    interpolation : {"bilinear", "nearest"}, default="bilinear"
        Linear interpolation on each axis (bilinear in 2-D), or nearest
        neighbour. Pixel centres are aligned as in torch's
        ``interpolate(..., align_corners=False)`` (``scipy.ndimage.zoom``
        with ``grid_mode=True``) and the edges are extended, so the two agree
        to rounding.

    Returns
    -------
    upsampled : ndarray of shape (n_samples, <size>, n_maps), float64

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.inspection import upsample_maps
    >>> m = np.array([[[0.0], [1.0]]])  # one input, 2 positions, 1 map
    >>> upsample_maps(m, 4)[0, :, 0]
    array([0.  , 0.25, 0.75, 1.  ])
    """
    from scipy.ndimage import zoom

    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim < 3:
        raise ValueError(
            f"maps must have shape (n_samples, <grid>, n_maps); got {maps.shape}."
        )
    grid = maps.shape[1:-1]
    if isinstance(size, numbers.Integral):
        size = (int(size),) * len(grid)
    size = tuple(int(s) for s in size)
    if len(size) != len(grid) or any(s < 1 for s in size):
        raise ValueError(
            f"size must give one positive size per grid axis ({len(grid)} for "
            f"maps of shape {maps.shape}); got {size}."
        )
    if interpolation not in _ORDERS:
        raise ValueError(
            f"interpolation must be one of {sorted(_ORDERS)}; got {interpolation!r}."
        )
    if size == grid:
        return maps.copy()
    factors = (1.0,) + tuple(s / g for s, g in zip(size, grid, strict=True)) + (1.0,)
    return zoom(
        maps, factors, order=_ORDERS[interpolation], grid_mode=True, mode="nearest"
    )


def concept_maps(
    extractor, A, *, upsample_to=None, channel_axis=-1, interpolation="bilinear"
):
    """Each input's map of each concept's codes.

    The activation vector at every position of every input is encoded by the
    extractor (one row each, :func:`positions_to_rows`), and the codes are
    put back on the grid: ``maps[i, r, s, j]`` is the code of concept ``j``
    at position ``(r, s)`` of input ``i``.

    Parameters
    ----------
    extractor : fitted concept extractor
        Any object with ``transform(rows) -> codes`` (e.g. a fitted
        :class:`~skconcepts.NMFConcepts` fitted on the rows of positional
        activations).
    A : array-like of shape (n_samples, <grid>, n_channels)
        Positional activations: ``(n, h, w, c)``, ``(n, p, c)``, ``(n, t, c)``
        (see ``channel_axis`` for channels first).
    upsample_to : int or tuple of int, default=None
        Resize the maps to this grid (e.g. the input image's ``(H, W)``);
        None keeps the activations' grid. See :func:`upsample_maps`.
    channel_axis : int, default=-1
        Axis of the channels in ``A`` (``1`` for torch's ``(n, c, h, w)``).
    interpolation : {"bilinear", "nearest"}, default="bilinear"
        How maps are upsampled.

    Returns
    -------
    maps : ndarray of shape (n_samples, <grid>, n_concepts)
        The codes on the grid (on ``upsample_to`` when given; then float64).

    See Also
    --------
    importance_weighted_maps : A class's important concepts, weighted.
    skconcepts.plotting.plot_concept_maps : Maps overlaid on the images.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import NMF
    >>> from skconcepts.inspection import concept_maps, positions_to_rows
    >>> rng = np.random.RandomState(0)
    >>> A = rng.rand(5, 4, 4, 3)  # 5 feature maps of 4 x 4 positions, 3 channels
    >>> nmf = NMF(2, max_iter=500, random_state=0).fit(positions_to_rows(A)[0])
    >>> concept_maps(nmf, A).shape
    (5, 4, 4, 2)
    >>> concept_maps(nmf, A, upsample_to=(8, 8)).shape
    (5, 8, 8, 2)
    """
    rows, shape = positions_to_rows(A, channel_axis=channel_axis)
    maps = rows_to_positions(_codes(extractor, rows), shape)
    if upsample_to is not None:
        maps = upsample_maps(maps, upsample_to, interpolation=interpolation)
    return maps


def _importance_vector(importances, label, k):
    classes = None
    if hasattr(importances, "importances_"):  # a fitted importance estimator
        classes = getattr(importances, "classes_", None)
        importances = importances.importances_
    imp = np.asarray(importances, dtype=np.float64)
    if imp.ndim == 2:
        if classes is None:
            raise ValueError(
                "importances is 2-D (one row per class): pass the row of the "
                "class, importances[c], or the fitted importance estimator "
                "with label=<class>."
            )
        where = np.flatnonzero(np.asarray(classes) == label)
        if label is None or len(where) != 1:
            raise ValueError(
                f"label must be one of the estimator's classes_ {list(classes)} "
                f"to pick that class's importances; got {label!r}."
            )
        imp = imp[where[0]]
    elif label is not None and classes is None:
        raise ValueError(
            "label is only used with a fitted importance estimator that has "
            "per-class importances (classes_); pass label=None."
        )
    if imp.shape != (k,):
        raise ValueError(
            f"importances must hold one value per concept ({k} concepts in the "
            f"maps); got shape {imp.shape}."
        )
    if not np.all(np.isfinite(imp)):
        raise ValueError("importances contain NaN or infinity.")
    return imp


def importance_weighted_maps(maps, importances, *, label=None, top_n=None):
    """A class's important concepts' maps, weighted by their importance.

    CRAFT shows, for an input of a class, the maps of the concepts that
    matter most to that class. Each map ``maps[..., j]`` is multiplied by
    the importance ``phi_j`` of its concept, the concepts are ordered by
    decreasing importance and the ``top_n`` first are kept; their sum is an
    evidence map of the class.

    Parameters
    ----------
    maps : array-like of shape (n_samples, <grid>, n_concepts)
        Concept maps (:func:`concept_maps`).
    importances : array-like of shape (n_concepts,) or fitted estimator
        One importance per concept, or a fitted importance estimator (e.g.
        :class:`~skconcepts.SobolConceptImportance`) whose ``importances_``
        is read (the row of ``label`` when it is per class).
    label : object, default=None
        The class (one of the estimator's ``classes_``) whose importances
        weight the maps; needed for per-class importances.
    top_n : int, default=None
        Keep the ``top_n`` most important concepts (all by default).

    Returns
    -------
    result : sklearn.utils.Bunch
        ``maps`` (n_samples, <grid>, top_n): ``phi_j * maps[..., j]`` for the
        kept concepts, most important first; ``concepts`` (top_n,): their
        indices; ``importances`` (top_n,): their ``phi_j``; ``total``
        (n_samples, <grid>): the sum of the kept weighted maps.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.inspection import importance_weighted_maps
    >>> maps = np.ones((1, 2, 2, 3))
    >>> res = importance_weighted_maps(maps, [0.1, 0.7, 0.2], top_n=2)
    >>> res.concepts.tolist(), round(float(res.total[0, 0, 0]), 6)
    ([1, 2], 0.9)
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim < 3:
        raise ValueError(
            f"maps must have shape (n_samples, <grid>, n_concepts); got {maps.shape}."
        )
    k = maps.shape[-1]
    imp = _importance_vector(importances, label, k)
    if top_n is None:
        top_n = k
    if not isinstance(top_n, numbers.Integral) or not 1 <= top_n <= k:
        raise ValueError(f"top_n must be an integer in [1, {k}]; got {top_n!r}.")
    concepts = np.argsort(-imp, kind="stable")[: int(top_n)]
    weighted = maps[..., concepts] * imp[concepts]
    return Bunch(
        maps=weighted,
        concepts=concepts,
        importances=imp[concepts],
        total=weighted.sum(axis=-1),
    )
