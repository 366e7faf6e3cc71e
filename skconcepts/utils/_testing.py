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


class AnonMemorySampler:
    """Peak growth of the process's anonymous memory during a block (Linux).

    A thread samples ``RssAnon`` from ``/proc/self/status`` every
    ``interval`` seconds; ``growth`` is the peak minus the value at entry.
    The readings at entry and exit walk the page tables
    (``/proc/self/smaps_rollup``), so that kernels that fold a thread's
    resident-set counts into the process's lazily (before Linux 6.2, every
    64 page faults) cannot hide what the block holds at exit; at entry a
    full garbage collection first frees the garbage of earlier code (a
    fitted model in a reference cycle), which a collection inside the block
    would otherwise free there and so hide the block's growth.

    ``growth`` is the growth of the *process's* resident memory, not the
    sum of the block's allocations: memory that the C allocator kept after
    earlier code freed it (free chunks of its heap, still resident) is
    reused by the block's allocations without growth. In a process that has
    run other code first (a test worker) the figure can therefore be far
    below the block's own footprint, down to 0 for a 64 MB array (seen on
    CI); measure a footprint in a fresh process.

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
    may lag by a few pages per thread, so the peak is an estimate.
    """

    def __init__(self, interval=0.002):
        self.interval = interval

    def __enter__(self):
        import gc
        import threading

        gc.collect()
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
        return False
