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


class AnonMemorySampler:
    """Peak growth of the process's anonymous memory during a block (Linux).

    A thread samples ``RssAnon`` from ``/proc/self/status`` every
    ``interval`` seconds; ``growth`` is the peak minus the value at entry,
    read after a full garbage collection (so that garbage of earlier code,
    freed by a collection inside the block, does not hide its growth).
    Used by the tests and benchmarks of out-of-core fitting. Memory mapped
    from files (memmaps, page cache) is not anonymous and is not counted.

    Parameters
    ----------
    interval : float, default=0.002
        Seconds between samples.

    Attributes
    ----------
    baseline : int
        ``RssAnon`` in bytes at entry.
    peak : int
        Largest ``RssAnon`` seen, in bytes.
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

    The kernel's resident-set counters are approximate (per-CPU caches are
    folded in lazily), so ``growth`` is an estimate; the tests use it only
    for upper bounds with a wide margin.
    """

    def __init__(self, interval=0.002):
        self.interval = interval

    def __enter__(self):
        import gc
        import threading

        # garbage left by earlier code (a fitted model in a reference cycle)
        # would otherwise be freed by a collection inside the block and hide
        # the block's own growth: collect it before the baseline is read
        gc.collect()
        self.baseline = self.peak = _rss_anon()
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
        self.peak = max(self.peak, _rss_anon())
        self.growth = self.peak - self.baseline
        return False
