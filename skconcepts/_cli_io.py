"""What the command line and its ``demo`` share: the user-error type and the
atomic writing of output files (a leaf module, so that ``_demo`` does not
import the command line that runs it)."""

import contextlib
import os
from pathlib import Path

__all__ = ["CLIError", "atomic_outputs"]


class CLIError(Exception):
    """A user error: reported as one line on stderr, exit status 2."""


@contextlib.contextmanager
def atomic_outputs(*paths):
    """Yield temporary paths beside ``paths``; rename them there on success.

    On any failure the temporary files are removed and ``paths`` untouched.
    """
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.parent.is_dir():
            raise CLIError(f"output folder does not exist: {p.parent}")
        if p.is_dir():
            raise CLIError(f"output path is a folder: {p}")
    tmps = [p.with_name(f".{p.name}.{os.getpid()}.tmp") for p in paths]
    try:
        yield tmps
    except BaseException:
        for t in tmps:
            with contextlib.suppress(OSError):
                t.unlink()
        raise
    for t, p in zip(tmps, paths, strict=True):
        os.replace(t, p)
