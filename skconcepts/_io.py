"""Data larger than memory: chunked readers, memmap views and chunk-wise fitting.

Every estimator of skconcepts reads a NumPy memmap in row batches (see
:mod:`skconcepts._backend`). This module makes the other on-disk containers
work the same way and drives ``partial_fit`` over a stream of chunks:

* :func:`iter_chunks` reads row chunks from a NumPy array or memmap, a zarr
  array, an HDF5 dataset (h5py), a dask array, any 2-D array-like with
  ``shape`` and ``__getitem__``, or a sequence / iterable of chunks;
* :func:`fit_chunks` feeds those chunks to an estimator's ``partial_fit``,
  so memory is bounded by the chunk size;
* :func:`as_memmap` gives a chunked on-disk array a NumPy memmap face: a
  zero-copy view of a contiguous, uncompressed HDF5 dataset, else a copy
  made chunk by chunk into a temporary file (disk, not RAM). The validation
  of every :class:`~skconcepts.base.ConceptExtractor` calls it, so ``fit``,
  ``transform`` and ``score`` accept zarr / HDF5 / dask arrays without ever
  holding them whole in memory.
"""

import os
import tempfile

import numpy as np
from sklearn.utils import check_random_state

from ._backend import STREAM_MEMORY_SHARE, gen_batches_idx, working_memory_bytes

__all__ = ["as_memmap", "fit_chunks", "iter_chunks"]

#: Bytes per chunk when ``chunk_size`` is not given; None:
#: ``STREAM_MEMORY_SHARE`` of scikit-learn's ``working_memory`` (16 MiB at
#: the default 1024 MiB), read at call time.
DEFAULT_CHUNK_BYTES = None

#: Environment variable naming the folder of the temporary memmaps made by
#: :func:`as_memmap` (default: :func:`tempfile.gettempdir`).
TEMP_FOLDER_ENV = "SKCONCEPTS_TEMP_FOLDER"


def _storage_rows(source):
    """Rows of one storage chunk of a zarr / HDF5 / dask array (or None)."""
    chunks = getattr(source, "chunks", None)
    if chunks is None:
        return None
    first = chunks[0]
    if isinstance(first, tuple):  # dask: a tuple of block sizes per axis
        first = max(first) if first else None
    try:
        return int(first) if first else None
    except (TypeError, ValueError):
        return None


def is_chunked_array(X):
    """Whether ``X`` is an on-disk or lazy 2-D array that ``np.asarray`` loads whole.

    True for zarr arrays, h5py datasets, dask arrays and any object that is
    not a NumPy array but has ``shape``, ``dtype``, ``__getitem__`` and a
    ``chunks`` attribute that is not None (an in-memory xarray is not).
    NumPy arrays (memmaps included), lists and data frames are not chunked
    arrays.
    """
    if isinstance(X, np.ndarray) or not hasattr(X, "__getitem__"):
        return False
    shape = getattr(X, "shape", None)
    if shape is None or getattr(X, "dtype", None) is None:
        return False
    if hasattr(X, "iloc") or hasattr(X, "columns"):  # pandas / polars frames
        return False
    module = type(X).__module__.split(".")[0]
    return module in ("zarr", "h5py", "dask") or getattr(X, "chunks", None) is not None


def memmap_face(X):
    """``X`` itself, or a memmap of it when it is a chunked on-disk array.

    What every estimator's input validation calls first: a zarr / HDF5 /
    dask array (:func:`is_chunked_array`) goes through :func:`as_memmap`
    instead of being loaded whole by ``np.asarray``; anything else is
    returned as is.
    """
    return as_memmap(X) if is_chunked_array(X) else X


def is_on_disk(X):
    """Whether the NumPy array ``X`` views memory mapped from a file.

    True for a :class:`numpy.memmap` and for any array whose ``base`` chain
    reaches one (or an :class:`mmap.mmap`), e.g. the plain ``ndarray`` view
    that scikit-learn's validation returns for a memmap, or a slice of the
    result of :func:`as_memmap`. Estimators use it to pick their bounded
    memory (streaming) path.
    """
    import mmap

    a = X
    for _ in range(64):  # base chains are short; guard against cycles
        if a is None:
            return False
        if isinstance(a, (np.memmap, mmap.mmap)):
            return True
        a = getattr(a, "base", None)
    return False


def _default_chunk_rows(source, n_features, itemsize):
    budget = DEFAULT_CHUNK_BYTES or working_memory_bytes(STREAM_MEMORY_SHARE)
    rows = max(1, budget // max(1, n_features * itemsize))
    storage = _storage_rows(source)
    if storage:
        # whole storage chunks: each one is decompressed once
        rows = max(storage, rows // storage * storage)
    return int(rows)


def _as_float(chunk, dtype):
    chunk = np.asarray(chunk)
    if dtype is not None:
        return chunk.astype(dtype, copy=False)
    return chunk


def iter_chunks(source, chunk_size=None, *, dtype=None):
    """Yield the rows of ``source`` as NumPy arrays, one chunk at a time.

    Parameters
    ----------
    source : array-like or iterable of array-like
        A 2-D NumPy array or memmap, a zarr array, an h5py dataset, a dask
        array, any 2-D object with ``shape`` and ``__getitem__`` (row
        slices), or a sequence / iterable (list, generator) of 2-D chunks.
    chunk_size : int or None, default=None
        Rows per chunk for an array source. None: about 16 MB per chunk,
        rounded to whole storage chunks for zarr / HDF5 / dask. For a
        sequence of chunks, a chunk longer than ``chunk_size`` is split;
        chunks are never merged.
    dtype : numpy dtype or None, default=None
        Convert every chunk to this dtype (e.g. ``np.float32``).

    Yields
    ------
    chunk : ndarray of shape (n_rows, n_features)
        Consecutive rows of ``source``. Only one chunk is held at a time.

    See Also
    --------
    fit_chunks : Fit an estimator chunk by chunk with ``partial_fit``.
    as_memmap : A NumPy memmap view (or on-disk copy) of a chunked array.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts import iter_chunks
    >>> X = np.arange(20.0).reshape(10, 2)
    >>> [c.shape for c in iter_chunks(X, chunk_size=4)]
    [(4, 2), (4, 2), (2, 2)]
    >>> [c.shape for c in iter_chunks([X[:3], X[3:]], chunk_size=5)]
    [(3, 2), (5, 2), (2, 2)]
    """
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be a positive int; got {chunk_size!r}.")
    shape = getattr(source, "shape", None)
    if shape is not None and hasattr(source, "__getitem__"):
        if len(shape) != 2:
            raise ValueError(
                f"Expected a 2-D array (n_samples, n_features); got shape {shape}."
            )
        n, d = int(shape[0]), int(shape[1])
        itemsize = np.dtype(dtype or getattr(source, "dtype", np.float64)).itemsize
        rows = chunk_size or _default_chunk_rows(source, d, itemsize)
        for start in range(0, n, rows):
            yield _as_float(source[start : min(start + rows, n)], dtype)
        return
    if isinstance(source, (str, bytes)) or not hasattr(source, "__iter__"):
        raise TypeError(
            "source must be a 2-D array (NumPy, memmap, zarr, h5py, dask) or an "
            f"iterable of 2-D chunks; got {type(source).__name__}."
        )
    for chunk in source:
        chunk = _as_float(chunk, dtype)
        if chunk.ndim != 2:
            raise ValueError(
                f"Every chunk must be 2-D (n_rows, n_features); got shape "
                f"{chunk.shape}."
            )
        if chunk_size is None or chunk.shape[0] <= chunk_size:
            yield chunk
            continue
        for start in range(0, chunk.shape[0], chunk_size):
            yield chunk[start : start + chunk_size]


def fit_chunks(
    estimator,
    source,
    y=None,
    *,
    chunk_size=None,
    n_epochs=1,
    shuffle=False,
    random_state=None,
    verbose=0,
    **partial_fit_params,
):
    """Fit ``estimator`` on data larger than memory, one chunk at a time.

    Calls ``estimator.partial_fit(chunk[, y_chunk])`` for every chunk of
    ``source``, ``n_epochs`` times, so that at most one chunk of rows is in
    memory. Works with every estimator that has ``partial_fit``
    (:class:`~skconcepts.NMFConcepts` and the other NMF variants,
    :class:`~skconcepts.TopKSAE`, :class:`~skconcepts.ArchetypalSAE`, and
    scikit-learn's ``IncrementalPCA``, ``MiniBatchNMF``, ``MiniBatchKMeans``,
    ...). The result is exactly the one of the same ``partial_fit`` calls on
    in-memory chunks.

    Parameters
    ----------
    estimator : estimator with ``partial_fit``
        Fitted in place (continue a fit by calling again).
    source : array-like or iterable of array-like
        What :func:`iter_chunks` accepts: NumPy array or memmap, zarr array,
        h5py dataset, dask array, or a sequence of 2-D chunks. A generator can
        be read once only, so it needs ``n_epochs=1`` and ``shuffle=False``.
    y : array-like of shape (n_samples,) or sequence of arrays, default=None
        Targets, sliced with the same rows as ``source`` (an array, for an
        array source) or given per chunk (a sequence, for a sequence of
        chunks).
    chunk_size : int or None, default=None
        Rows per chunk (see :func:`iter_chunks`).
    n_epochs : int, default=1
        Passes over the data.
    shuffle : bool, default=False
        Visit the chunks in a random order at every epoch (seeded by
        ``random_state``); rows inside a chunk keep their order.
    random_state : int, RandomState instance or None, default=None
        Seeds the chunk order when ``shuffle`` is True.
    verbose : int, default=0
        Draw a progress bar over the ``partial_fit`` calls (all epochs; the
        total is known for an array source or a sequence of chunks), under
        the package's policy: ``1`` on a terminal outside tests, ``2`` on
        any stream; ``SKCONCEPTS_PROGRESS=1`` / ``0`` overrides it.
    **partial_fit_params : dict
        Passed to every ``partial_fit`` call (e.g. ``classes=`` for a
        classifier).

    Returns
    -------
    estimator : estimator
        The fitted estimator.

    See Also
    --------
    iter_chunks : The chunk reader.
    as_memmap : Fit with ``fit`` (all passes) on a zarr / HDF5 array instead.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import IncrementalPCA
    >>> from skconcepts import fit_chunks
    >>> X = np.random.RandomState(0).rand(100, 5)
    >>> ipca = fit_chunks(IncrementalPCA(n_components=2), X, chunk_size=25)
    >>> int(ipca.n_samples_seen_)
    100
    """
    if not hasattr(estimator, "partial_fit"):
        raise TypeError(
            f"{type(estimator).__name__} has no partial_fit; fit_chunks needs an "
            "estimator that learns chunk by chunk. Give a memmap to fit instead "
            "(see skconcepts.as_memmap)."
        )
    n_epochs = int(n_epochs)
    if n_epochs < 1:
        raise ValueError(f"n_epochs must be >= 1; got {n_epochs}.")
    rng = check_random_state(random_state)
    shape = getattr(source, "shape", None)
    is_array = shape is not None and hasattr(source, "__getitem__")
    if is_array:
        if len(shape) != 2:
            raise ValueError(
                f"Expected a 2-D array (n_samples, n_features); got shape {shape}."
            )
        n = int(shape[0])
        if y is not None and len(y) != n:
            raise ValueError(
                f"y has {len(y)} rows but source has {n}; they must match."
            )
        itemsize = np.dtype(getattr(source, "dtype", np.float64)).itemsize
        rows = chunk_size or _default_chunk_rows(source, int(shape[1]), itemsize)
        slices = list(gen_batches_idx(n, int(rows)))
        with _chunk_bar(estimator, n_epochs * len(slices), verbose) as bar:
            for _ in range(n_epochs):
                order = rng.permutation(len(slices)) if shuffle else range(len(slices))
                for i in order:
                    sl = slices[i]
                    args = () if y is None else (np.asarray(y[sl]),)
                    estimator.partial_fit(
                        np.asarray(source[sl]), *args, **partial_fit_params
                    )
                    bar.update(1)
        return estimator
    if (n_epochs > 1 or shuffle) and not hasattr(source, "__len__"):
        raise ValueError(
            "A generator of chunks can be read once only: use n_epochs=1 and "
            "shuffle=False, or give a list of chunks."
        )
    chunks = source
    ys = y
    # known total: a sequence of chunks that are not split
    total = None
    if hasattr(chunks, "__len__") and chunk_size is None:
        total = n_epochs * len(chunks)
    with _chunk_bar(estimator, total, verbose) as bar:
        _fit_chunk_sequence(
            estimator,
            chunks,
            ys,
            chunk_size,
            n_epochs,
            shuffle,
            rng,
            bar,
            partial_fit_params,
        )
    return estimator


def _chunk_bar(estimator, total, verbose):
    """The progress bar of :func:`fit_chunks` (one step per ``partial_fit``)."""
    from ._progress import progress

    desc = f"fit_chunks: {type(estimator).__name__}"
    return progress(total=total, desc=desc, unit="chunk", verbose=verbose)


def _fit_chunk_sequence(
    estimator, chunks, ys, chunk_size, n_epochs, shuffle, rng, bar, params
):
    for _ in range(n_epochs):
        order = range(len(chunks)) if hasattr(chunks, "__len__") else None
        if shuffle:
            order = rng.permutation(len(chunks))
        if order is None:
            pairs = (
                zip(chunks, ys, strict=True)
                if ys is not None
                else ((c, None) for c in chunks)
            )
        else:
            pairs = ((chunks[i], None if ys is None else ys[i]) for i in order)
        for chunk, yc in pairs:
            for start, part in _split(chunk, chunk_size):
                args = ()
                if yc is not None:
                    args = (np.asarray(yc)[start : start + part.shape[0]],)
                estimator.partial_fit(part, *args, **params)
                bar.update(1)


def _split(chunk, chunk_size):
    chunk = np.asarray(chunk)
    if chunk_size is None or chunk.shape[0] <= chunk_size:
        yield 0, chunk
        return
    for start in range(0, chunk.shape[0], chunk_size):
        yield start, chunk[start : start + chunk_size]


def _hdf5_view(source):
    """A read-only memmap of a contiguous, uncompressed h5py dataset, or None."""
    try:
        if getattr(source, "chunks", None) is not None:
            return None
        if getattr(source, "compression", None) or getattr(source, "fletcher32", 0):
            return None
        offset = source.id.get_offset()
        filename = source.file.filename
    except (AttributeError, TypeError, ValueError, OSError):
        return None
    if offset is None or not os.path.isfile(filename):
        return None
    dtype = np.dtype(source.dtype)
    if not dtype.isnative:
        return None
    return np.memmap(
        filename, mode="r", dtype=dtype, shape=tuple(source.shape), offset=offset
    )


def as_memmap(source, *, dtype=None, chunk_size=None, temp_folder=None):
    """A NumPy memmap with the content of ``source``, built without loading it.

    * A NumPy memmap (or an array) is returned as is.
    * A contiguous, uncompressed HDF5 dataset (h5py, ``chunks=None``) is
      mapped in place: a read-only zero-copy memmap of the HDF5 file.
    * Any other chunked array (zarr, chunked or compressed HDF5, dask, any
      2-D array-like with ``shape`` and ``__getitem__``) is copied chunk by
      chunk into an unnamed temporary file in ``temp_folder`` and mapped:
      the copy lives on disk (page cache), not in the process's anonymous
      memory, and the file disappears when the memmap is garbage collected.

    :class:`~skconcepts.base.ConceptExtractor` calls this on chunked arrays
    given to ``fit`` / ``transform`` / ``score``; call it yourself to feed a
    zarr or HDF5 array to estimators that do not (``TaCoEraser``,
    scikit-learn's), or to convert once and fit many times.

    Parameters
    ----------
    source : array-like
        The 2-D array to map.
    dtype : numpy dtype or None, default=None
        dtype of the result. None keeps a float32 / float64 source's dtype and
        gives float64 for any other (as scikit-learn's validation would).
    chunk_size : int or None, default=None
        Rows copied at a time (see :func:`iter_chunks`).
    temp_folder : str or None, default=None
        Folder of the temporary file; default: the ``SKCONCEPTS_TEMP_FOLDER``
        environment variable, else the system's temporary folder. It needs
        free space for the whole array.

    Returns
    -------
    X : numpy.memmap or ndarray of shape (n_samples, n_features)
        The data, mapped from disk.

    See Also
    --------
    iter_chunks : The chunk reader used for the copy.
    fit_chunks : Stream chunks to ``partial_fit`` with no disk copy.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts import as_memmap
    >>> class Lazy:  # any 2-D array-like with shape, dtype and row slices
    ...     shape, dtype, chunks = (6, 2), np.dtype("float32"), (2, 2)
    ...     def __getitem__(self, sl):
    ...         return np.arange(12, dtype="float32").reshape(6, 2)[sl]
    >>> X = as_memmap(Lazy())
    >>> type(X).__name__, X.dtype, X[-1].tolist()
    ('memmap', dtype('float32'), [10.0, 11.0])
    """
    if isinstance(source, np.ndarray):
        return source if dtype is None else source.astype(dtype, copy=False)
    shape = getattr(source, "shape", None)
    if shape is None or not hasattr(source, "__getitem__") or len(shape) != 2:
        raise ValueError(
            "as_memmap needs a 2-D array-like with shape and __getitem__; got "
            f"{type(source).__name__}."
        )
    src_dtype = np.dtype(getattr(source, "dtype", np.float64))
    if dtype is None:
        dtype = src_dtype if src_dtype in (np.float32, np.float64) else np.float64
    dtype = np.dtype(dtype)
    if dtype == src_dtype and type(source).__module__.startswith("h5py"):
        view = _hdf5_view(source)
        if view is not None:
            return view
    n, d = int(shape[0]), int(shape[1])
    folder = temp_folder or os.environ.get(TEMP_FOLDER_ENV) or tempfile.gettempdir()
    if n * d == 0:
        return np.zeros((n, d), dtype=dtype)
    with tempfile.TemporaryFile(dir=folder, prefix="skconcepts-") as f:
        out = np.memmap(f, mode="w+", dtype=dtype, shape=(n, d))
    start = 0
    for chunk in iter_chunks(source, chunk_size, dtype=dtype):
        out[start : start + chunk.shape[0]] = chunk
        start += chunk.shape[0]
    return out
