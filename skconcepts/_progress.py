"""Progress bars (tqdm) for long loops, with one policy for when they show.

``progress(iterable_or_total, desc=..., verbose=..., force=...)`` wraps an
iterable (or, given an int, makes a bar to advance by hand with ``update``)
in a ``tqdm`` bar that draws on ``stderr``. Whether the bar is drawn is
decided once, when it is made, in this order:

1. ``force=True`` draws it, ``force=False`` never does (the command line
   passes its ``--progress`` / ``--no-progress`` flags here).
2. The environment variable ``SKCONCEPTS_PROGRESS``: ``1`` (or ``always``)
   draws every bar, ``0`` (or ``never``) none.
3. ``verbose``: ``0`` / ``False`` draws nothing; ``verbose >= 2`` draws the
   bar even when ``stderr`` is not a terminal (a log file, a notebook
   cell's captured output); ``verbose=1`` / ``True`` draws it only when
   ``stderr`` is a terminal and no test is running (pytest sets
   ``PYTEST_CURRENT_TEST``), so that logs and test output stay clean.

A bar that is not drawn is a disabled ``tqdm`` object: iterating over it
costs one Python generator step per item and ``update`` does nothing.
"""

import os
import sys

ENV_VAR = "SKCONCEPTS_PROGRESS"
_ON = {"1", "true", "yes", "on", "always"}
_OFF = {"0", "false", "no", "off", "never"}


def _stream_is_terminal(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced stream
        return False


def progress_enabled(verbose=0, *, force=None, file=None):
    """Whether a progress bar made now would be drawn (see the module doc).

    Parameters
    ----------
    verbose : int or bool, default=0
        Verbosity of the caller: 0 hides, 1 shows on a terminal outside
        tests, 2 or more shows on any stream.
    force : bool or None, default=None
        ``True`` or ``False`` decides alone; None leaves the decision to the
        environment variable ``SKCONCEPTS_PROGRESS`` and then ``verbose``.
    file : file-like, default=None
        The stream the bar draws on (``sys.stderr`` by default).

    Returns
    -------
    enabled : bool
    """
    if force is not None:
        return bool(force)
    env = os.environ.get(ENV_VAR, "").strip().lower()
    if env in _ON:
        return True
    if env in _OFF:
        return False
    verbose = int(verbose or 0)
    if verbose <= 0:
        return False
    if verbose >= 2:
        return True
    if "PYTEST_CURRENT_TEST" in os.environ:
        return False
    return _stream_is_terminal(sys.stderr if file is None else file)


def progress(
    iterable=None,
    *,
    total=None,
    desc=None,
    verbose=0,
    force=None,
    unit="it",
    leave=False,
    file=None,
):
    """A tqdm progress bar over ``iterable``, drawn according to the policy.

    Parameters
    ----------
    iterable : iterable or int, default=None
        What to iterate over. An int ``n`` (or None with ``total``) gives a
        bar of ``n`` steps to advance by hand with ``bar.update(k)``.
    total : int, default=None
        Number of steps, when ``len(iterable)`` is not available.
    desc : str, default=None
        Label drawn before the bar.
    verbose : int or bool, default=0
        See :func:`progress_enabled`.
    force : bool or None, default=None
        See :func:`progress_enabled`.
    unit : str, default="it"
        Name of one step.
    leave : bool, default=False
        Keep the finished bar on screen.
    file : file-like, default=None
        Stream to draw on (``sys.stderr`` by default).

    Returns
    -------
    bar : tqdm.tqdm
        Iterate over it (or call ``update``); use it as a context manager or
        call ``close()`` when advancing by hand.
    """
    from tqdm import tqdm

    if isinstance(iterable, int) and not isinstance(iterable, bool):
        iterable, total = None, iterable
    enabled = progress_enabled(verbose, force=force, file=file)
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        leave=leave,
        file=sys.stderr if file is None else file,
        disable=not enabled,
        dynamic_ncols=True,
    )
