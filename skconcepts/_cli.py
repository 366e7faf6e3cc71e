"""The ``skconcepts`` command line: ``demo``, ``fit``, ``transform``, ``evaluate``.

Run ``skconcepts --help`` (or ``python -m skconcepts --help``) for the usage,
and ``skconcepts COMMAND --help`` for one command. The page ``docs/cli.md``
documents it with examples.

Bad input (a missing file, an unknown method or parameter, a wrong dataset
key, labels of the wrong length, a file that is not an array, a parameter
value the estimator rejects) ends the command with exit status 2 and one line
on stderr; ``--debug`` prints the traceback too. Nothing is written on
failure: every output goes to a temporary name in its folder and is renamed
(``os.replace``) once complete.
"""

import argparse
import ast
import contextlib
import difflib
import inspect
import json
import os
import sys
import textwrap
import time
import traceback
from pathlib import Path

import numpy as np

from ._backend import TEMP_MEMORY_SHARE, working_memory_bytes
from ._cli_io import CLIError, atomic_outputs

__all__ = ["main"]

FORMATS = {
    ".npy": "npy",
    ".npz": "npz",
    ".zarr": "zarr",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".safetensors": "safetensors",
    ".pt": "pt",
    ".pth": "pt",
}
# bytes per streamed chunk; None: 1/16 of scikit-learn's working_memory
# (64 MiB of input at the default 1024 MiB)
_CHUNK_BYTES = None
_OPEN_FILES = []  # HDF5 files kept open while their datasets are in use


def _one_line(exc):
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# --------------------------------------------------------------- reading arrays
def _pick(keys, key, path, option, kind="array"):
    """The entry ``key`` among ``keys``, or the only one when ``key`` is None."""
    keys = list(keys)
    if key is not None:
        if key not in keys:
            listed = ", ".join(repr(k) for k in keys) or "none"
            raise CLIError(f"{path} has no {kind} {key!r} (it holds: {listed})")
        return key
    if len(keys) == 1:
        return keys[0]
    if not keys:
        raise CLIError(f"{path} holds no {kind}")
    listed = ", ".join(repr(k) for k in keys)
    raise CLIError(f"{path} holds several {kind}s ({listed}): choose one with {option}")


def _read_npz(path, key):
    with np.load(path, allow_pickle=False) as f:
        return f[_pick(f.files, key, path, "--dataset KEY")]


def _read_zarr(path, key):
    import zarr

    node = zarr.open(str(path), mode="r")
    if hasattr(node, "array_keys"):  # a group
        names = []

        def walk(group, prefix):
            for name in group.array_keys():
                names.append(prefix + name)
            for name in group.group_keys():
                walk(group[name], prefix + name + "/")

        walk(node, "")
        return node[_pick(names, key, path, "--dataset KEY")]
    if key is not None:
        raise CLIError(f"{path} is a single zarr array, it has no dataset {key!r}")
    return node


def _read_hdf5(path, key):
    import h5py

    f = h5py.File(path, "r")
    names = []
    f.visititems(
        lambda n, obj: names.append(n) if isinstance(obj, h5py.Dataset) else None
    )
    name = _pick(names, key, path, "--dataset KEY", kind="dataset")
    _OPEN_FILES.append(f)
    return f[name]


_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def _read_safetensors(path, key):
    # The format is an 8-byte header length, a JSON header, then the raw
    # little-endian tensors: a tensor of a NumPy dtype is memory-mapped in place.
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n <= 0 or n > os.path.getsize(path) - 8:
            raise ValueError("not a safetensors file (bad header length)")
        header = json.loads(f.read(n))
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    name = _pick(tensors, key, path, "--tensor KEY", kind="tensor")
    info = tensors[name]
    dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
    shape = tuple(info["shape"])
    if dtype is not None and int(np.prod(shape)) > 0:
        begin = info["data_offsets"][0]
        return np.memmap(
            path,
            dtype=np.dtype(dtype).newbyteorder("<"),
            mode="r",
            offset=8 + n + begin,
            shape=shape,
        )
    from safetensors import safe_open  # bfloat16 and other torch-only dtypes

    with safe_open(str(path), framework="pt") as f:
        return _tensor_to_numpy(f.get_tensor(name))


def _tensor_to_numpy(t):
    import torch

    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:  # no NumPy dtype
        t = t.float()
    return t.numpy()


def _read_pt(path, key):
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
        obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, torch.Tensor):
        if key is not None:
            raise CLIError(f"{path} holds a single tensor, it has no tensor {key!r}")
        return _tensor_to_numpy(obj)
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        return _tensor_to_numpy(
            tensors[_pick(tensors, key, path, "--tensor KEY", kind="tensor")]
        )
    raise ValueError(f"it holds a {type(obj).__name__}, not a tensor")


def _read_npy(path, key):
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise ValueError("it does not start with the .npy magic bytes")
    return np.load(path, mmap_mode="r", allow_pickle=False)


_READERS = {
    "npy": _read_npy,
    "npz": _read_npz,
    "zarr": _read_zarr,
    "hdf5": _read_hdf5,
    "safetensors": _read_safetensors,
    "pt": _read_pt,
}


def load_array(path, *, key=None, what="activations"):
    """Open an array file without loading it whole where the format allows.

    ``.npy`` and ``.safetensors`` are memory-mapped, ``.pt`` files are read
    with ``torch.load(weights_only=True, mmap=True)``, zarr and HDF5 arrays
    are returned as they are (the estimators read them chunk by chunk);
    ``.npz`` members are read into memory (a zip member cannot be mapped).

    Returns
    -------
    array : array-like with ``shape``, ``dtype`` and slicing
    fmt : str
    """
    path = Path(path)
    if not path.exists():
        raise CLIError(f"{what} file not found: {path}")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise CLIError(
            f"{path}: unknown {what} format {path.suffix!r} (known: {known})"
        )
    if key is not None and fmt == "npy":
        raise CLIError(f"{path} is a .npy file with one array: drop --dataset/--tensor")
    try:
        array = _READERS[fmt](path, key)
    except CLIError:
        raise
    except Exception as exc:  # any reader failure means: not an array file
        raise CLIError(
            f"cannot read {path} as a {fmt} array: {_one_line(exc)}"
        ) from exc
    if not hasattr(array, "shape") or not hasattr(array, "dtype"):
        raise CLIError(f"{path} does not hold an array")
    if array.dtype.kind not in "biuf":
        raise CLIError(f"{path} holds a {array.dtype} array, not numbers")
    return array, fmt


def load_activations(path, key=None):
    X, fmt = load_array(path, key=key)
    if len(X.shape) != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise CLIError(
            f"activations must be a non-empty 2-D array (n_samples, n_features); "
            f"{path} holds one of shape {tuple(X.shape)} (reshape it, e.g. flatten "
            f"the token axis into the sample axis)"
        )
    return X, fmt


def _parse_label(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def load_labels(path, n_samples, key=None):
    """Labels from an array file or a text file (``.txt``/``.csv``, one per line)."""
    path = Path(path)
    if path.suffix.lower() in (".txt", ".csv"):
        if not path.exists():
            raise CLIError(f"labels file not found: {path}")
        try:
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        except (UnicodeDecodeError, OSError) as exc:
            raise CLIError(f"cannot read labels from {path}: {_one_line(exc)}") from exc
        values = [_parse_label(ln) for ln in lines]
        y = np.asarray(values)
    else:
        y, _ = load_array(path, key=key, what="labels")
        y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise CLIError(f"labels must be 1-D; {path} holds shape {y.shape}")
    if y.shape[0] != n_samples:
        raise CLIError(
            f"{path} has {y.shape[0]} labels but the activations have "
            f"{n_samples} rows: give one label per row"
        )
    return y


# ---------------------------------------------------------------- writing files
@contextlib.contextmanager
def _estimator_errors(context):
    """Report a ValueError/TypeError raised by the package as a user error."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        raise CLIError(f"{context}: {_one_line(exc)}") from exc


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 1000 else f"<array {value.shape}>"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _write_json(path, data):
    with open(path, "w") as f:
        json.dump(_jsonable(data), f, indent=2)
        f.write("\n")


# ------------------------------------------------------------------- estimators
def _estimators():
    from .utils import all_estimators

    return dict(all_estimators())


def find_estimator(name):
    """The estimator class called ``name`` (case-insensitive)."""
    estimators = _estimators()
    by_lower = {n.lower(): n for n in estimators}
    if name.lower() not in by_lower:
        close = [n for n in by_lower if n.startswith(name.lower())]
        close = close or difflib.get_close_matches(name.lower(), list(by_lower), n=1)
        hint = f" (did you mean {by_lower[close[0]]}?)" if len(close) == 1 else ""
        raise CLIError(
            f"unknown method {name!r}{hint}; choose one of: " + ", ".join(estimators)
        )
    real = by_lower[name.lower()]
    return real, estimators[real]


def parse_params(items):
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``: Python literals, else strings."""
    params = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise CLIError(f"--param expects name=value, got {item!r}")
        try:
            params[name] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            params[name] = text.strip()
    return params


def _needs_labels(estimator):
    try:
        return bool(estimator.__sklearn_tags__().target_tags.required)
    except AttributeError:
        return False


def _is_extractor(model):
    from .base import ConceptExtractor

    return isinstance(model, ConceptExtractor)


def _is_eraser(model):
    from .erasure import TaCoEraser

    return isinstance(model, TaCoEraser)


def build_estimator(method, *, n_concepts=None, device=None, params=()):
    """Instantiate ``method`` with the command line's parameters, validated."""
    from ._compat import InvalidParameterError

    name, cls = find_estimator(method)
    if "head" in inspect.signature(cls).parameters:
        raise CLIError(
            f"{name} needs a head (the rest of the network: a Python callable, "
            f"torch module or fitted model) that a file of activations cannot "
            f"give; use the Python API: {name}(extractor, head, ...).fit(X, y)"
        )
    params = parse_params(params)
    valid = cls().get_params(deep=False)
    for option, key, value in (
        ("--n-concepts", "n_concepts", n_concepts),
        ("--device", "device", device),
    ):
        if value is not None:
            if key not in valid:
                raise CLIError(f"{name} has no parameter {key!r} for {option}")
            params[key] = value
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise CLIError(
            f"unknown parameter {unknown[0]!r} for {name}; its parameters are: "
            + ", ".join(valid)
        )
    estimator = cls(**params)
    try:
        estimator._validate_params()
    except InvalidParameterError as exc:
        raise CLIError(_one_line(exc)) from exc
    return name, estimator


def load_model(path, *, device=None):
    import joblib
    from sklearn.base import BaseEstimator
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    path = Path(path)
    if not path.exists():
        raise CLIError(f"model file not found: {path}")
    try:
        model = joblib.load(path)
    except Exception as exc:
        raise CLIError(f"cannot read a model from {path}: {_one_line(exc)}") from exc
    if not isinstance(model, BaseEstimator):
        raise CLIError(f"{path} holds a {type(model).__name__}, not an estimator")
    try:
        check_is_fitted(model)
    except NotFittedError as exc:
        raise CLIError(f"the model in {path} is not fitted") from exc
    if device is not None:
        if "device" not in model.get_params(deep=False):
            raise CLIError(f"{type(model).__name__} has no device parameter")
        model.set_params(device=device)
    return model


def _check_width(model, X, path):
    n_in = getattr(model, "n_features_in_", None)
    if n_in is not None and X.shape[1] != n_in:
        raise CLIError(
            f"{path} has {X.shape[1]} features per row but the model was fitted "
            f"on {n_in}"
        )


# ---------------------------------------------------------------- streamed passes
def _chunk_rows(X, chunk_size):
    if chunk_size is not None:
        return int(chunk_size)
    itemsize = max(int(np.dtype(X.dtype).itemsize), 8)
    budget = _CHUNK_BYTES or working_memory_bytes(TEMP_MEMORY_SHARE)
    return max(1, min(X.shape[0], budget // (X.shape[1] * itemsize)))


def _chunks(X, rows, bar):
    for start in range(0, X.shape[0], rows):
        stop = min(start + rows, X.shape[0])
        chunk = np.asarray(X[start:stop])
        if chunk.dtype.kind != "f":
            chunk = chunk.astype(
                np.float32 if chunk.dtype.itemsize <= 4 else np.float64
            )
        yield slice(start, stop), chunk
        bar.update(stop - start)


def _bar(args, total, desc):
    from ._progress import progress

    return progress(total=total, desc=desc, unit="rows", verbose=1, force=args.progress)


def code_statistics(model, X, *, chunk_size=None, args=None):
    """Reconstruction R^2, mean L0 and dead fraction of ``model`` on ``X``.

    One pass, chunk by chunk: equal to ``reconstruction_r2(X,
    model.inverse_transform(model.transform(X)))``, ``mean_l0`` and
    ``dead_fraction`` of :mod:`skconcepts.metrics` on the whole arrays,
    without holding them (the R^2 of :class:`skconcepts._stats.R2Accumulator`,
    which merges the per-feature means and sums of squares of the chunks).
    """
    import torch

    from ._stats import R2Accumulator

    rows = _chunk_rows(X, chunk_size)
    nnz, alive = 0, None
    acc = R2Accumulator("cpu")
    with _bar(args, X.shape[0], "metrics") as bar, torch.no_grad():
        for _, chunk in _chunks(X, rows, bar):
            U = model.transform(chunk)
            nnz += int(np.count_nonzero(U))
            fired = np.any(U != 0, axis=0)
            alive = fired if alive is None else alive | fired
            acc.update(
                torch.from_numpy(np.asarray(chunk, dtype=np.float64)),
                torch.from_numpy(np.asarray(model.inverse_transform(U), np.float64)),
            )
    return {
        "reconstruction_r2": acc.score(),
        "mean_l0": nnz / X.shape[0],
        "dead_fraction": float(1.0 - np.count_nonzero(alive) / alive.shape[0]),
    }


# -------------------------------------------------------------------- commands
def _check_exists(path, what):
    if path is not None and not Path(path).exists():
        raise CLIError(f"{what} file not found: {path}")


def cmd_fit(args):
    _check_exists(args.activations, "activations")  # before the slow imports
    _check_exists(args.labels, "labels")
    name, estimator = build_estimator(
        args.method, n_concepts=args.n_concepts, device=args.device, params=args.param
    )
    out = Path(args.out if args.out is not None else f"{name.lower()}.joblib")
    summary_path = Path(args.summary) if args.summary else out.with_suffix(".json")
    if summary_path == out:
        raise CLIError(f"the model and the summary would both be written to {out}")
    X, fmt = load_activations(args.activations, args.dataset)
    y = None
    if args.labels is not None:
        if not _needs_labels(estimator):
            raise CLIError(f"{name} is unsupervised: it does not use --labels")
        y = load_labels(args.labels, X.shape[0], key=args.labels_key)
    elif _needs_labels(estimator):
        what = "the protected attribute" if _is_eraser(estimator) else "a label"
        raise CLIError(f"{name} needs --labels FILE ({what} of each row)")
    with atomic_outputs(out, summary_path) as (tmp_model, tmp_summary):
        start = time.perf_counter()
        with _estimator_errors(f"{name}.fit"):
            estimator.fit(X) if y is None else estimator.fit(X, y)
        fit_time = time.perf_counter() - start
        summary = {
            "method": name,
            "params": estimator.get_params(deep=False),
            "activations": {
                "path": str(args.activations),
                "format": fmt,
                "key": args.dataset,
                "shape": list(X.shape),
                "dtype": str(X.dtype),
            },
            "labels": None if args.labels is None else str(args.labels),
            "fit_time_s": round(fit_time, 4),
            "model": str(out),
        }
        from . import __version__

        summary["skconcepts_version"] = __version__
        if _is_extractor(estimator):
            with _estimator_errors(f"{name}.transform"):
                stats = code_statistics(estimator, X, args=args)
            summary["r2"] = stats.pop("reconstruction_r2")
            summary.update(stats)
            summary["n_concepts"] = int(estimator.components_.shape[0])
        if _is_eraser(estimator):
            summary["removed_concepts"] = [int(c) for c in estimator.removed_concepts_]
        if hasattr(estimator, "n_iter_"):
            summary["n_iter"] = estimator.n_iter_
        import joblib

        joblib.dump(estimator, tmp_model)
        _write_json(tmp_summary, summary)
    print(_table([(k, summary[k]) for k in _SHOWN if k in summary], ("", name)))
    print(f"wrote {out} and {summary_path}")
    return 0


_SHOWN = (
    "fit_time_s",
    "r2",
    "mean_l0",
    "dead_fraction",
    "n_concepts",
    "n_iter",
    "removed_concepts",
)


def cmd_transform(args):
    model = load_model(args.model, device=args.device)
    if not hasattr(model, "transform"):
        raise CLIError(f"{type(model).__name__} has no transform")
    X, _ = load_activations(args.activations, args.dataset)
    _check_width(model, X, args.activations)
    out = Path(args.out)
    if out.suffix.lower() != ".npy":
        raise CLIError(f"--out must name a .npy file, got {out}")
    rows = _chunk_rows(X, args.chunk_size)
    with atomic_outputs(out) as (tmp,):
        codes = None
        with _bar(args, X.shape[0], "transform") as bar:
            for sl, chunk in _chunks(X, rows, bar):
                with _estimator_errors(f"{type(model).__name__}.transform"):
                    U = np.asarray(model.transform(chunk))
                if codes is None:
                    codes = np.lib.format.open_memmap(
                        tmp, mode="w+", dtype=U.dtype, shape=(X.shape[0], U.shape[1])
                    )
                codes[sl] = U
        codes.flush()
        shape = codes.shape
        del codes
    print(f"wrote {out}: codes of shape {shape}")
    return 0


def cmd_export(args):
    import shutil

    from .sae import save_pretrained
    from .sae._engine import _BaseSAE

    model = load_model(args.model)
    if not isinstance(model, _BaseSAE):
        raise CLIError(
            f"{type(model).__name__} is not a sparse autoencoder; export writes "
            "the SAEs of this package (TopKSAE, ArchetypalSAE, AlignedSAE)"
        )
    out = Path(args.dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CLIError(f"{out} exists and is not an empty folder")
    if not out.parent.is_dir():
        raise CLIError(f"output folder does not exist: {out.parent}")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with _estimator_errors("save_pretrained"):
            save_pretrained(model, tmp, format=args.format)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"wrote {out} ({args.format} format): {', '.join(sorted(os.listdir(out)))}")
    return 0


def cmd_evaluate(args):
    model = load_model(args.model, device=args.device)
    name = type(model).__name__
    X, _ = load_activations(args.activations, args.dataset)
    _check_width(model, X, args.activations)
    y = None
    if args.labels is not None:
        if not _is_eraser(model):
            raise CLIError(f"--labels is used with an eraser model; {name} ignores it")
        y = load_labels(args.labels, X.shape[0], key=args.labels_key)
    metrics = {}
    if _is_extractor(model):
        with _estimator_errors(f"{name}.transform"):
            metrics.update(
                code_statistics(model, X, chunk_size=args.chunk_size, args=args)
            )
    elif _is_eraser(model):
        if y is None:
            raise CLIError(
                f"{name} is evaluated on --labels FILE (protected attribute)"
            )
        from .metrics import leakage

        seed = model.random_state if isinstance(model.random_state, int) else 0
        with _estimator_errors(f"{name}.score"):
            Xa = np.asarray(X)
            before = leakage(Xa, y, random_state=seed)
            after = leakage(model.transform(Xa), y, random_state=seed)
            metrics["erasure_score"] = float(model.score(Xa, y))
        for probe in before:
            metrics[f"leakage_{probe}_before"] = float(before[probe])
            metrics[f"leakage_{probe}_after"] = float(after[probe])
        metrics["chance"] = 1.0 / len(np.unique(y))
        metrics["n_removed"] = len(model.removed_concepts_)
    else:
        raise CLIError(f"no metrics for a {name} model (concept extractors, erasers)")
    if args.json:
        print(json.dumps(_jsonable({"model": name, **metrics}), indent=2))
    else:
        print(_table(list(metrics.items()), ("metric", name)))
    return 0


def _table(rows, header):
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4f}"
        return str(v)

    cells = [tuple(map(str, header))] + [tuple(fmt(v) for v in r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_demo(args):
    from ._demo import run_demo

    return run_demo(args)


# ---------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """argparse with errors on one line (exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=30, width=88)


_DESCRIPTION = """\
Concept-based interpretability from the command line.

Find concepts in activations (NMF, sparse autoencoders), measure their
importance, erase them: the estimators of skconcepts, on activation files.

Run 'skconcepts COMMAND --help' for the parameters of a command.
"""

_FORMATS_HELP = """\
Activation files
----------------
.npy          memory-mapped, never loaded whole
.npz          --dataset KEY when it holds several arrays
.zarr         an array, or a group with --dataset KEY; read chunk by chunk
.h5, .hdf5    --dataset KEY when it holds several datasets; read chunk by chunk
.safetensors  --tensor KEY when it holds several tensors; memory-mapped
.pt, .pth     a tensor or a dict of tensors (--tensor KEY), loaded with
              torch.load(weights_only=True, mmap=True)
"""


def _common(parser):
    parser.add_argument(
        "--debug", action="store_true", help="Print the traceback of an error."
    )
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument(
        "--progress",
        action="store_true",
        default=None,
        help="Always draw progress bars (default: only when stderr "
        "is a terminal; also SKCONCEPTS_PROGRESS=1/0).",
    )
    bar.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="Never draw progress bars.",
    )


def _input(parser, labels=False):
    parser.add_argument(
        "activations",
        metavar="ACTIVATIONS",
        help="Activation file of shape (n_samples, n_features).",
    )
    parser.add_argument(
        "--dataset",
        "--tensor",
        dest="dataset",
        metavar="KEY",
        help="Array (dataset, tensor) to read in a file that holds several.",
    )
    if labels:
        parser.add_argument(
            "--labels",
            metavar="FILE",
            help="One label per row: an array file or a .txt/.csv "
            "file with one label per line.",
        )
        parser.add_argument(
            "--labels-key",
            metavar="KEY",
            help="Array to read in a labels file that holds several.",
        )


def _device(parser):
    parser.add_argument(
        "--device",
        metavar="D",
        help="Torch device: 'cpu', 'cuda', 'cuda:1', 'mps' or "
        "'auto'. Default: the estimator's.",
    )


def build_parser():
    parser = _Parser(
        prog="skconcepts", description=_DESCRIPTION, formatter_class=_Formatter
    )
    from . import __version__

    parser.add_argument(
        "--version", action="version", version=f"skconcepts {__version__}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    p = sub.add_parser(
        "demo",
        formatter_class=_Formatter,
        help="The main job on scikit-learn's digits.",
        description=textwrap.dedent("""\
        CRAFT on a digits network, start to end.

        A small MLP is trained on scikit-learn's 8x8 digits (a few seconds);
        its hidden ReLU activations are factored into concepts by
        NMFConcepts, SobolConceptImportance measures the total Sobol' index
        of every concept for every digit's logit (with bootstrap confidence
        intervals), and the command prints the top concepts of each class
        and writes to OUT:

        top_concepts.csv  the printed table
        importance.png    the Sobol' indices per class, with intervals
        concepts.png      the test images that express the top concepts most
        """),
        epilog="Example\n-------\n  skconcepts demo --out craft-digits\n",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        default="skconcepts-demo",
        help="Folder for the figures and the table, created if "
        "missing (default: skconcepts-demo).",
    )
    p.add_argument(
        "--n-concepts",
        type=int,
        default=10,
        metavar="N",
        help="Number of NMF concepts (default: 10).",
    )
    p.add_argument(
        "--top",
        type=int,
        default=3,
        metavar="K",
        help="Concepts per class in the table (default: 3).",
    )
    p.add_argument(
        "--random-state",
        type=int,
        default=0,
        metavar="SEED",
        help="Seed of the split, the network, NMF and Sobol' (default: 0).",
    )
    p.add_argument(
        "--no-figures",
        action="store_true",
        help="Print the table only (no matplotlib needed).",
    )
    _device(p)
    _common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "fit",
        formatter_class=_Formatter,
        help="Fit an estimator on an activation file.",
        description=textwrap.dedent("""\
        Fit an estimator of skconcepts on an activation file.

        METHOD is an estimator's name, in any case (NMFConcepts, nmfconcepts,
        TopKSAE, ArchetypalSAE, SemiNMFConcepts, ConvexNMFConcepts,
        AlignedSAE, TaCoEraser). Its parameters are set with --param
        name=value (values are Python literals, else strings), --n-concepts
        and --device. AlignedSAE (modality) and TaCoEraser (protected
        attribute) need --labels. SobolConceptImportance and
        ConceptAttribution need a head (a Python callable): use the Python
        API for them.

        Writes the fitted model with joblib (--out) and a JSON summary
        (--summary): the parameters, the activation file, the fit time and,
        for a concept extractor, the reconstruction R^2, the mean L0 and the
        dead fraction of the codes on the training activations.
        """)
        + "\n"
        + _FORMATS_HELP,
        epilog=textwrap.dedent("""\
        Examples
        --------
          skconcepts fit NMFConcepts acts.npy --n-concepts 20 --out nmf.joblib
          skconcepts fit topksae acts.h5 --dataset layer6 --n-concepts 512 \\
              --param top_k=32 --param max_epochs=5 --device cuda
          skconcepts fit TaCoEraser emb.safetensors --labels gender.npy \\
              --param n_remove=auto --out eraser.joblib
        """),
    )
    p.add_argument("method", metavar="METHOD", help="Estimator name.")
    _input(p, labels=True)
    p.add_argument(
        "--n-concepts",
        type=int,
        metavar="N",
        help="Number of concepts (the n_concepts parameter).",
    )
    p.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        default=[],
        help="An estimator parameter; repeat for several.",
    )
    _device(p)
    p.add_argument(
        "--out",
        metavar="MODEL",
        help="Model file (default: METHOD.joblib, lower case).",
    )
    p.add_argument(
        "--summary",
        metavar="JSON",
        help="Summary file (default: MODEL with a .json suffix).",
    )
    _common(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser(
        "transform",
        formatter_class=_Formatter,
        help="Concept codes of an activation file, to .npy.",
        description=textwrap.dedent("""\
        Transform an activation file with a fitted model.

        Concept codes for a concept extractor, erased activations for an
        eraser. The input is read and transformed chunk by chunk (about
        64 MiB of input each, or --chunk-size rows) and written into a
        memory-mapped .npy file, so neither the input nor the output is held
        in memory. Only load model files you trust (joblib runs pickle).
        """)
        + "\n"
        + _FORMATS_HELP,
        epilog="Example\n-------\n  skconcepts transform nmf.joblib acts.npy "
        "--out codes.npy\n",
    )
    p.add_argument("model", metavar="MODEL", help="Model file written by 'fit'.")
    _input(p)
    p.add_argument(
        "--out", metavar="CODES.npy", required=True, help="Output .npy file."
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        metavar="ROWS",
        help="Rows per chunk (default: about 64 MiB of input).",
    )
    _device(p)
    _common(p)
    p.set_defaults(func=cmd_transform)

    p = sub.add_parser(
        "evaluate",
        formatter_class=_Formatter,
        help="Metrics of a fitted model, as a table.",
        description=textwrap.dedent("""\
        Evaluate a fitted model on an activation file.

        Concept extractor: reconstruction R^2 (skconcepts.metrics.
        reconstruction_r2 of X and inverse_transform(transform(X))), mean L0
        and dead fraction of the codes (skconcepts.metrics.mean_l0,
        dead_fraction), computed chunk by chunk.

        Eraser (TaCoEraser), with --labels (protected attribute): held-out
        balanced accuracy of fresh linear and MLP probes before and after
        erasure (skconcepts.metrics.leakage), chance, and the eraser's score.
        """)
        + "\n"
        + _FORMATS_HELP,
        epilog="Example\n-------\n  skconcepts evaluate nmf.joblib test_acts.npy "
        "--json\n",
    )
    p.add_argument("model", metavar="MODEL", help="Model file written by 'fit'.")
    _input(p, labels=True)
    p.add_argument(
        "--json",
        action="store_true",
        help="Print the metrics as JSON instead of a table.",
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        metavar="ROWS",
        help="Rows per chunk (default: about 64 MiB of input).",
    )
    _device(p)
    _common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "export",
        formatter_class=_Formatter,
        help="Write a fitted SAE in another library's format.",
        description=textwrap.dedent("""\
        Export a fitted sparse autoencoder (TopKSAE, ArchetypalSAE,
        AlignedSAE, or one read by skconcepts.sae.load_pretrained) to a
        folder in SAELens format: cfg.json and sae_weights.safetensors
        (skconcepts.sae.save_pretrained). skconcepts.sae.load_pretrained
        reads it back with the same transform. DIR must not exist or be an
        empty folder; it is written under a temporary name and renamed at
        the end.
        """),
        epilog="Example\n-------\n  skconcepts export sae.joblib sae-saelens "
        "--format saelens\n",
    )
    p.add_argument("model", metavar="MODEL", help="Model file written by 'fit'.")
    p.add_argument("dir", metavar="DIR", help="Output folder.")
    p.add_argument(
        "--format",
        choices=["saelens"],
        default="saelens",
        help="Format of the files written.",
    )
    _common(p)
    p.set_defaults(func=cmd_export)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except CLIError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"skconcepts {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"skconcepts {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        while _OPEN_FILES:
            with contextlib.suppress(Exception):
                _OPEN_FILES.pop().close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
