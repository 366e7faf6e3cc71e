"""Tools for the tests and benchmarks (not part of the library's API).

:class:`AnonMemorySampler` measures the peak growth of the process's
anonymous memory during a block: the out-of-core tests
(``tests/test_scale.py``, ``tests/test_nmf.py``) and
``benchmarks/bench_outofcore.py`` bound it.
"""

__all__ = ["AnonMemorySampler"]


def _rss_anon():
    """Current anonymous resident memory of this process in bytes (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise OSError("RssAnon not found in /proc/self/status (Linux only).")


def _anon_exact():
    """Anonymous resident memory in bytes from a walk of the page tables.

    ``/proc/self/smaps_rollup`` counts the pages themselves, not the
    kernel's resident-set counters (which some kernels fold in lazily); it
    costs about a millisecond per GB. Falls back to :func:`_rss_anon`.
    """
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("Anonymous:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return _rss_anon()


def _libc():
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - not a dynamically linked process
        return None


_PR_SET_THP_DISABLE, _PR_GET_THP_DISABLE = 41, 42


def _set_thp_disabled(disabled):
    """Set the process's transparent-huge-page switch; return the old one.

    Returns None (and changes nothing) where ``prctl`` is not available.
    """
    libc = _libc()
    prctl = getattr(libc, "prctl", None)
    if prctl is None:
        return None
    before = prctl(_PR_GET_THP_DISABLE, 0, 0, 0, 0)
    if before < 0:
        return None
    prctl(_PR_SET_THP_DISABLE, int(bool(disabled)), 0, 0, 0)
    return bool(before)


class AnonMemorySampler:
    """Peak growth of the process's anonymous memory during a block (Linux).

    A thread samples ``RssAnon`` from ``/proc/self/status`` every
    ``interval`` seconds; ``growth`` is the peak minus the value at entry.
    Two things make the figure the block's own, whatever ran before it in
    the process (a test suite's worker runs hundreds of tests first):

    - at entry, a full garbage collection, so that garbage of earlier code
      (a fitted model in a reference cycle) freed by a collection inside the
      block does not hide the block's growth;
    - inside the block, transparent huge pages are off for the process
      (``prctl(PR_SET_THP_DISABLE)``, restored at exit), and the readings at
      entry and exit walk the page tables (``/proc/self/smaps_rollup``):
      kernels that fold a thread's resident-set counts into the process's
      only every 64 page faults can otherwise hide up to 64 huge pages
      (128 MB) from ``RssAnon``.

    Used by the tests and benchmarks of out-of-core fitting. Memory mapped
    from files (memmaps, page cache) is not anonymous and is not counted.

    Parameters
    ----------
    interval : float, default=0.002
        Seconds between samples.

    Attributes
    ----------
    baseline : int
        Anonymous resident memory in bytes at entry.
    peak : int
        Largest anonymous resident memory seen, in bytes.
    growth : int
        ``peak - baseline``.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.utils._testing import AnonMemorySampler
    >>> with AnonMemorySampler() as mem:
    ...     a = np.ones(50 * 2**20 // 8)
    >>> mem.growth >= 0
    True

    The samples between entry and exit read the kernel's counters, which
    may lag by a few pages per thread, so ``growth`` is an estimate; the
    tests use it for upper bounds with a wide margin.
    """

    def __init__(self, interval=0.002):
        self.interval = interval

    def __enter__(self):
        import gc
        import threading

        gc.collect()
        self._thp_disabled_before = _set_thp_disabled(True)
        self.baseline = self.peak = _anon_exact()
        self._stop = threading.Event()

        def run():
            while not self._stop.is_set():
                self.peak = max(self.peak, _rss_anon())
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        # stop the sampler first: a last sample taken while it still runs
        # could be overwritten by its older, smaller reading
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _anon_exact())
        self.growth = self.peak - self.baseline
        if self._thp_disabled_before is not None:
            _set_thp_disabled(self._thp_disabled_before)
        return False
