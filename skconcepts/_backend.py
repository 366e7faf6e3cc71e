"""Torch plumbing shared by every estimator.

Device resolution, NumPy <-> torch conversion (:func:`to_tensor`, the one
conversion of the package), seeding without touching the global torch RNG
(child seeds from :class:`numpy.random.SeedSequence`), memory budgets from
scikit-learn's ``working_memory`` and batch iteration over arrays and memmaps
that never copies a whole array that may not fit in memory.

Memory budgets
--------------
Every budget of the package that bounds a temporary (rows per transform
batch, device chunks of the SAE training data, distance blocks of k-means,
batches read from disk, float64 temporaries per block of rows) derives from
``sklearn.get_config()["working_memory"]`` (MiB, default 1024), read at call
time, so ``with sklearn.config_context(working_memory=256):`` bounds them
all. :func:`working_memory_bytes` is a share of that budget in bytes; the
shares are :data:`BATCH_MEMORY_SHARE` (1/4, an input batch of a batched
pass), :data:`TEMP_MEMORY_SHARE` (1/16, a float64 temporary per block of
rows) and :data:`STREAM_MEMORY_SHARE` (1/64, a batch read from disk).

Seeds
-----
One rule: a single random stream comes from ``random_state`` directly
(:func:`make_generator` for torch, :func:`seed_from` for an integer seed
given to NumPy / SciPy / scikit-learn); several streams of one fit (the
stages of an estimator, the replicates of a design, the splits of a
cross-validation) are the children of one
:class:`numpy.random.SeedSequence` (:func:`spawn_seeds`,
:func:`named_seeds`), never ``seed + i``, xor masks or several draws used
by index.
"""

import numbers

import numpy as np
import sklearn
from sklearn.utils import check_random_state


def _torch():
    # torch is imported lazily so that ``import skconcepts`` stays fast.
    import torch

    return torch


def resolve_device(device):
    """Turn the ``device`` parameter into a ``torch.device``.

    Parameters
    ----------
    device : str or None
        ``"auto"`` (or None) picks CUDA when it is available, else the CPU.
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` and ``"mps"`` are taken as asked.

    Returns
    -------
    device : torch.device

    Raises
    ------
    ValueError
        If the string does not name a device, or names one that is not
        available on this machine.
    """
    torch = _torch()
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str):
        raise ValueError(
            f"device must be a string such as 'auto', 'cpu', 'cuda', 'cuda:0' "
            f"or 'mps'; got {device!r}."
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(
            f"device={device!r} is not a valid device; use 'auto', 'cpu', "
            f"'cuda', 'cuda:N' or 'mps'."
        ) from exc
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available on "
                f"this machine; use device='cpu' or device='auto'."
            )
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise ValueError(
                f"device={device!r} was requested but this machine has only "
                f"{n} CUDA device(s)."
            )
        return dev
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(
                f"device={device!r} was requested but MPS is not available on "
                f"this machine; use device='cpu' or device='auto'."
            )
        return dev
    raise ValueError(
        f"device={device!r} is not supported; use 'auto', 'cpu', 'cuda', "
        f"'cuda:N' or 'mps'."
    )


def torch_dtype(np_dtype):
    """The torch dtype matching a NumPy float dtype (float32 or float64)."""
    torch = _torch()
    np_dtype = np.dtype(np_dtype)
    if np_dtype == np.float32:
        return torch.float32
    if np_dtype == np.float64:
        return torch.float64
    raise ValueError(f"Unsupported dtype {np_dtype}; expected float32 or float64.")


def make_generator(random_state):
    """A seeded CPU ``torch.Generator`` derived from ``random_state``.

    The global torch RNG is never touched. Random tensors are drawn on the CPU
    with this generator and then moved to the device, so that a given
    ``random_state`` gives the same numbers on every device.
    """
    torch = _torch()
    rng = check_random_state(random_state)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
    return gen


def seed_from(random_state):
    """An integer seed drawn from ``random_state`` (int, RandomState or None)."""
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def spawn_seeds(random_state, n):
    """``n`` independent child seeds (ints) of ``random_state``.

    One integer drawn from ``random_state`` (an int, a ``RandomState`` or
    None behave as everywhere in scikit-learn: an int always gives the same
    draw) is the entropy of a :class:`numpy.random.SeedSequence`, whose
    ``spawn(n)`` children give one non-negative 31-bit integer each (a valid
    ``random_state`` for NumPy, scikit-learn and torch). The way to give the
    stages of a fit their own random streams, instead of ``seed + i``, xor
    masks or several draws used by index.
    """
    entropy = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    children = np.random.SeedSequence(entropy).spawn(int(n))
    return [int(c.generate_state(1, dtype=np.uint32)[0] >> 1) for c in children]


def named_seeds(random_state, names):
    """:func:`spawn_seeds` as a dict ``{name: seed}``, children in ``names``' order.

    Adding a name at the end keeps the seeds of the names before it.
    """
    names = tuple(names)
    return dict(zip(names, spawn_seeds(random_state, len(names)), strict=True))


def working_memory_bytes(share=1.0):
    """``share`` of scikit-learn's ``working_memory``, in bytes.

    ``sklearn.get_config()["working_memory"]`` is in MiB (default 1024).

    The shares the package uses are the module's ``*_MEMORY_SHARE``
    constants; read at call time, so ``sklearn.config_context`` bounds them.
    """
    return int(sklearn.get_config()["working_memory"] * 2**20 * share)


def to_tensor(X, device, dtype=None):
    """Move a NumPy array (or a slice of a memmap) to ``device``.

    Non-writeable or non-contiguous inputs are copied (only the part given
    here, which is one batch when called from :func:`iter_batches`), so torch
    never warns and the caller's array is never modified.
    """
    torch = _torch()
    X = np.asarray(X)
    if not X.flags.writeable or not X.flags.c_contiguous or isinstance(X, np.memmap):
        X = np.array(X, order="C", copy=True)
    t = torch.from_numpy(X)
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    return t.to(device)


def to_numpy(t, dtype=None):
    """A tensor back to a NumPy array on the CPU, in ``dtype`` if given."""
    out = t.detach().cpu().numpy()
    if dtype is not None and out.dtype != dtype:
        out = out.astype(dtype, copy=False)
    return out


def gen_batches_idx(n_samples, batch_size):
    """Slices of ``range(n_samples)`` of length ``batch_size`` (last may be shorter).

    ``batch_size=None`` gives one slice over everything.
    """
    if batch_size is None or batch_size >= n_samples:
        yield slice(0, n_samples)
        return
    for start in range(0, n_samples, batch_size):
        yield slice(start, min(start + batch_size, n_samples))


def iter_batches(X, batch_size, device, dtype=None):
    """Yield ``(slice, tensor)`` pairs over the rows of ``X`` on ``device``.

    Only one batch of rows is materialised at a time, so a memmap larger than
    memory is never copied whole.
    """
    for sl in gen_batches_idx(X.shape[0], batch_size):
        yield sl, to_tensor(X[sl], device, dtype)


#: Share of ``working_memory`` one input batch of a batched pass may use: the
#: codes, the reconstruction and the temporaries of the batch take the rest
#: (256 MiB batches at scikit-learn's default of 1024 MiB).
BATCH_MEMORY_SHARE = 0.25

#: Share of ``working_memory`` of one float64 temporary made per block of
#: rows (residuals, norms, sums, overflow checks): 64 MiB at the default.
TEMP_MEMORY_SHARE = 1 / 16

#: Share of ``working_memory`` of one batch read from disk (a memmap, a zarr
#: / HDF5 chunk): 16 MiB at the default. Small, because the reader keeps a
#: host copy beside the batch and the page cache holds the file's pages.
STREAM_MEMORY_SHARE = 1 / 64


def default_batch_size(n_features, budget_bytes=None, itemsize=8, *, share=None):
    """Rows per batch so that a batch of ``n_features`` columns fits a budget.

    ``budget_bytes=None``: ``share`` (default :data:`BATCH_MEMORY_SHARE`) of
    scikit-learn's ``working_memory`` (256 MiB at the default 1024 MiB).
    """
    if budget_bytes is None:
        budget_bytes = working_memory_bytes(
            BATCH_MEMORY_SHARE if share is None else share
        )
    return max(1, int(budget_bytes // max(1, n_features * itemsize)))
