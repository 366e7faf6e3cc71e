"""Out-of-core fitting (memmaps, zarr, HDF5, chunk streams) and device logic."""

import pickle

import h5py
import numpy as np
import pytest
import torch
import zarr
from _instances import estimator_params
from sklearn.base import clone
from sklearn.decomposition import PCA, IncrementalPCA

from skconcepts import (
    AlignedSAE,
    ArchetypalSAE,
    ConvexNMFConcepts,
    NMFConcepts,
    SemiNMFConcepts,
    TopKSAE,
    _io,
    as_memmap,
    fit_chunks,
    iter_chunks,
)
from skconcepts._backend import make_generator
from skconcepts._io import is_chunked_array
from skconcepts.sae import _engine
from skconcepts.utils._testing import AnonMemorySampler

MB = 2**20


@pytest.fixture(scope="module")
def low_rank():
    rng = np.random.RandomState(0)
    return (rng.rand(1200, 4) @ rng.rand(4, 24)).astype(np.float32)


@pytest.fixture(scope="module")
def stores(low_rank, tmp_path_factory):
    """The same data as a zarr array, chunked+compressed and contiguous HDF5."""
    folder = tmp_path_factory.mktemp("stores")
    z = zarr.open_array(  # zarr 2 and 3 (zarr 3 needs NumPy >= 1.25)
        store=str(folder / "x.zarr"),
        mode="w",
        shape=low_rank.shape,
        chunks=(128, 24),
        dtype="float32",
    )
    z[:] = low_rank
    with h5py.File(folder / "x.h5", "w") as f:
        f.create_dataset("contiguous", data=low_rank)
        f.create_dataset("chunked", data=low_rank, chunks=(100, 24), compression="gzip")
    h5 = h5py.File(folder / "x.h5", "r")
    yield {"zarr": z, "h5": h5["contiguous"], "h5gz": h5["chunked"]}
    h5.close()


# ----------------------------------------------------------------- readers
def test_iter_chunks_covers_every_source(low_rank, stores, monkeypatch):
    import dask.array as da

    sources = dict(stores, dask=da.from_array(low_rank, chunks=(300, 24)))
    sources["numpy"] = low_rank
    for name, src in sources.items():
        chunks = list(iter_chunks(src, chunk_size=500))
        assert [c.shape[0] for c in chunks] == [500, 500, 200], name
        assert all(type(c) is np.ndarray for c in chunks), name
        np.testing.assert_array_equal(np.concatenate(chunks), low_rank)
    # default size: about DEFAULT_CHUNK_BYTES, in whole storage chunks (128 rows)
    monkeypatch.setattr(_io, "DEFAULT_CHUNK_BYTES", 300 * 24 * 4)
    assert [c.shape[0] for c in iter_chunks(low_rank)] == [300] * 4
    assert [c.shape[0] for c in iter_chunks(stores["zarr"])] == [256] * 4 + [176]
    # sequences and generators of chunks; long chunks are split
    parts = [low_rank[:700], low_rank[700:]]
    got = list(iter_chunks(parts, chunk_size=300))
    assert [c.shape[0] for c in got] == [300, 300, 100, 300, 200]
    got = list(iter_chunks(iter(parts), dtype=np.float64))
    assert got[0].dtype == np.float64 and len(got) == 2


def test_iter_chunks_errors(low_rank):
    with pytest.raises(ValueError, match="2-D"):
        list(iter_chunks(low_rank[0]))
    with pytest.raises(ValueError, match="chunk_size"):
        list(iter_chunks(low_rank, chunk_size=0))
    with pytest.raises(TypeError, match="iterable of 2-D chunks"):
        list(iter_chunks(3.0))
    with pytest.raises(ValueError, match="2-D"):
        list(iter_chunks([low_rank[0]]))


def test_as_memmap(low_rank, stores):
    # contiguous HDF5: mapped in place, no copy
    mm = as_memmap(stores["h5"])
    assert isinstance(mm, np.memmap) and not mm.flags.writeable
    assert mm.filename == stores["h5"].file.filename
    np.testing.assert_array_equal(mm, low_rank)
    # compressed HDF5 and zarr: a temporary on-disk copy
    for name in ("h5gz", "zarr"):
        mm = as_memmap(stores[name], chunk_size=100)
        assert isinstance(mm, np.memmap), name
        np.testing.assert_array_equal(mm, low_rank)
    # NumPy input is returned as is; non-float data becomes float64
    assert as_memmap(low_rank) is low_rank
    ints = zarr.open_array(
        store={}, mode="w", shape=(5, 2), chunks=(2, 2), dtype="int16"
    )
    ints[:] = np.arange(10).reshape(5, 2)
    out = as_memmap(ints)
    assert out.dtype == np.float64 and out[4, 1] == 9.0
    with pytest.raises(ValueError, match="2-D"):
        as_memmap(zarr.open_array(store={}, mode="w", shape=(5,), dtype="float32"))
    assert is_chunked_array(stores["zarr"]) and is_chunked_array(stores["h5"])
    assert not is_chunked_array(low_rank) and not is_chunked_array([[1.0]])

    class InMemory:  # e.g. an xarray DataArray without dask: chunks is None
        shape, dtype, chunks = (2, 2), np.dtype("float64"), None

        def __getitem__(self, sl):
            return np.zeros((2, 2))[sl]

    assert not is_chunked_array(InMemory())


# ------------------------------------------- fit on chunked arrays = in memory
@pytest.mark.parametrize("name", ["zarr", "h5", "h5gz"])
def test_fit_on_disk_arrays_equals_in_memory_fit(low_rank, stores, name):
    src = stores[name]
    for est in (
        NMFConcepts(4, max_iter=30, batch_size=256, device="cpu", random_state=0),
        TopKSAE(16, 3, max_epochs=2, batch_size=128, device="cpu", random_state=0),
    ):
        ref = clone(est).fit(low_rank)
        got = clone(est).fit(src)
        np.testing.assert_array_equal(got.components_, ref.components_)
        np.testing.assert_array_equal(got.transform(src), ref.transform(low_rank))
        assert got.score(src) == ref.score(low_rank)
        assert got.components_.dtype == np.float32
    # the supervised SAE too (y = modality): never loaded whole
    modality = np.arange(low_rank.shape[0]) % 2
    est = AlignedSAE(16, 3, max_epochs=2, batch_size=128, device="cpu", random_state=0)
    ref = clone(est).fit(low_rank, modality)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(src), "__array__", lambda *a, **k: pytest.fail("loaded whole"))
        got = clone(est).fit(src, modality)
    np.testing.assert_array_equal(got.components_, ref.components_)
    np.testing.assert_array_equal(got.modality_scores_, ref.modality_scores_)


@pytest.mark.parametrize("name", ["zarr", "h5gz"])
def test_taco_fit_on_disk_arrays(low_rank, stores, name, monkeypatch):
    from sklearn.linear_model import LogisticRegression

    from skconcepts import TaCoEraser
    from skconcepts.decomposition import _streamed

    y = (low_rank[:, 0] > np.median(low_rank[:, 0])).astype(int)
    taco = TaCoEraser(
        3,
        n_remove=1,
        probe=LogisticRegression(max_iter=200),
        n_designs=8,
        max_samples=64,
        device="cpu",
        random_state=0,
    )
    # the chunked array gets a memmap face (never np.asarray'd whole) and
    # its PCA is the streamed one
    monkeypatch.setattr(
        type(stores[name]),
        "__array__",
        lambda *a, **k: pytest.fail("loaded whole"),
        raising=False,
    )
    seen = []
    streamed = _streamed.STREAMED["pca"]
    monkeypatch.setitem(
        _streamed.STREAMED,
        "pca",
        lambda X, *a, **kw: seen.append(_io.is_on_disk(X)) or streamed(X, *a, **kw),
    )
    got = clone(taco).fit(stores[name], y)
    assert seen == [True]
    ref = clone(taco).fit(low_rank, y)
    np.testing.assert_allclose(got.components_, ref.components_, atol=1e-4)
    np.testing.assert_array_equal(got.removed_concepts_, ref.removed_concepts_)


def test_memmap_fit_equals_in_memory_fit(low_rank, tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, low_rank)
    mm = np.load(path, mmap_mode="r")
    np.save(tmp_path / "s.npy", low_rank - low_rank.mean(0))  # signed data
    signed = np.load(tmp_path / "s.npy", mmap_mode="r")
    pairs = [
        (NMFConcepts(4, max_iter=20, device="cpu", random_state=0), mm, low_rank),
        (
            SemiNMFConcepts(4, max_iter=20, device="cpu", random_state=0),
            signed,
            np.asarray(signed).copy(),
        ),
        (
            ConvexNMFConcepts(
                4, max_iter=10, batch_size=256, device="cpu", random_state=0
            ),
            signed,
            np.asarray(signed).copy(),
        ),
        (
            ArchetypalSAE(
                16,
                3,
                n_candidates=32,
                max_epochs=2,
                batch_size=128,
                device="cpu",
                random_state=0,
            ),
            mm,
            low_rank,
        ),
    ]
    for est, on_disk, in_memory in pairs:
        a = clone(est).fit(on_disk)
        b = clone(est).fit(in_memory)
        np.testing.assert_array_equal(a.components_, b.components_)


# ------------------------------------------------------------- fit_chunks
def test_fit_chunks_equals_manual_partial_fit(low_rank, stores):
    for est in (
        NMFConcepts(4, max_iter=50, device="cpu", random_state=0),
        TopKSAE(16, 3, batch_size=100, device="cpu", random_state=0),
    ):
        ref = clone(est)
        for _ in range(2):
            for s in range(0, 1200, 300):
                ref.partial_fit(low_rank[s : s + 300])
        got = fit_chunks(clone(est), stores["zarr"], chunk_size=300, n_epochs=2)
        np.testing.assert_array_equal(got.components_, ref.components_)
        # a list of chunks from HDF5 gives the same result
        parts = [stores["h5gz"][s : s + 300] for s in range(0, 1200, 300)]
        got = fit_chunks(clone(est), parts, n_epochs=2)
        np.testing.assert_array_equal(got.components_, ref.components_)
    # against scikit-learn's own chunked fit
    ipca = fit_chunks(IncrementalPCA(3), stores["h5"], chunk_size=200)
    ref = IncrementalPCA(3, batch_size=200).fit(low_rank)
    np.testing.assert_allclose(ipca.components_, ref.components_, atol=1e-5)


def test_fit_chunks_targets_shuffle_and_errors(low_rank):
    class Recorder:
        def __init__(self):
            self.calls = []

        def partial_fit(self, X, y=None, **kw):
            self.calls.append((X[0, 0], None if y is None else y[0], kw))
            return self

    y = np.arange(1200)
    rec = fit_chunks(Recorder(), low_rank, y, chunk_size=400, classes=[0, 1])
    assert [c[1] for c in rec.calls] == [0, 400, 800]
    assert rec.calls[0][2] == {"classes": [0, 1]}
    kw = dict(chunk_size=100, n_epochs=2, shuffle=True, random_state=0)
    a, b = (fit_chunks(Recorder(), low_rank, y, **kw) for _ in range(2))
    firsts = [c[1] for c in a.calls]
    assert firsts == [c[1] for c in b.calls]
    assert sorted(firsts[:12]) == list(range(0, 1200, 100)) != firsts[:12]
    # per-chunk targets for a list of chunks
    rec = fit_chunks(Recorder(), [low_rank[:5], low_rank[5:9]], [y[:5], y[5:9]])
    assert [c[1] for c in rec.calls] == [0, 5]
    with pytest.raises(TypeError, match="no partial_fit"):
        fit_chunks(object(), low_rank)
    with pytest.raises(ValueError, match="y has 3 rows"):
        fit_chunks(Recorder(), low_rank, y[:3])
    with pytest.raises(ValueError, match="read once"):
        fit_chunks(Recorder(), iter([low_rank]), n_epochs=2)


# --------------------------------------------------- bounded anonymous memory
@pytest.fixture(scope="module")
def big_memmap(tmp_path_factory):
    """A 94 MB float32 memmap (read-only, as workers and checks give them)."""
    rng = np.random.RandomState(0)
    path = tmp_path_factory.mktemp("big") / "big.npy"
    out = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.float32, shape=(61440, 400)
    )
    basis = rng.rand(8, 400).astype(np.float32)
    for s in range(0, out.shape[0], 6144):
        out[s : s + 6144] = rng.rand(6144, 8).astype(np.float32) @ basis
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


@pytest.fixture
def small_budgets(monkeypatch):
    """Shrink the SAE engine's device chunk (1 GiB) and init sample (65536 rows).

    Both bound the SAE's memory independently of ``n_samples``; at their
    defaults they exceed this test's data, which would then be moved whole.
    """
    monkeypatch.setattr(_engine, "DEVICE_BUDGET_BYTES", 4 * MB)
    monkeypatch.setattr(_engine, "INIT_SAMPLES", 4096)


def _warm_up(X):
    # torch's lazy initialisation and the allocator's first growth (glibc
    # raises its mmap threshold after the first large frees) are not what we
    # measure: run the same code paths once on a slice.
    NMFConcepts(8, max_iter=2, batch_size=512, device="cpu").fit(X[:8192])
    TopKSAE(32, 4, max_epochs=1, batch_size=1024, device="cpu").fit(X[:8192])


def _fresh_copy(src):
    """A copy of ``src`` in an anonymous ``mmap`` of its own: fresh pages,
    never memory the C allocator kept from earlier code (which a ``malloc``
    of any size may reuse: then the process's memory does not grow)."""
    import mmap

    # private: a shared anonymous mapping is shared memory, not anonymous
    buf = mmap.mmap(-1, src.nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    out = np.frombuffer(buf, dtype=src.dtype).reshape(src.shape)
    out[...] = src
    return out


def test_sampler_sees_a_full_copy(big_memmap):
    with AnonMemorySampler() as mem:
        copy = _fresh_copy(big_memmap)
    assert mem.growth >= 0.9 * copy.nbytes, (mem.baseline, mem.peak)
    del copy


def test_sampler_baseline_excludes_earlier_garbage():
    """Garbage of earlier code freed inside the block does not hide its growth.

    A 64 MB array held only by a reference cycle (as a fitted model can be)
    is collected by a garbage collection inside the block, before a 64 MB
    copy: without the collection at entry the baseline would include the
    garbage and the growth would read about 0.
    """
    import gc

    class _Cycle:
        pass

    a, b = _Cycle(), _Cycle()
    a.other, b.other = b, a
    a.data = np.ones(8 * 2**20)  # 64 MB, touched
    del a, b
    src = np.ones(8 * 2**20)
    with AnonMemorySampler() as mem:
        gc.collect()  # as the interpreter may run one inside the block
        copy = _fresh_copy(src)
    assert mem.growth >= 0.9 * copy.nbytes, (mem.baseline, mem.peak)


def test_sampler_reads_entry_and_exit_from_the_pages(monkeypatch):
    """A lagging resident-set counter does not hide a copy alive at exit.

    Kernels before Linux 6.2 fold a thread's resident-set counts into the
    process's every 64 page faults. Here the counter the sampling thread
    reads is frozen; the readings at entry and exit walk the page tables.
    Ablation run: with ``RssAnon`` read at exit it fails.
    """
    from skconcepts.utils import _testing

    frozen = _testing._rss_anon()
    monkeypatch.setattr(_testing, "_rss_anon", lambda: frozen)
    src = np.ones(8 * 2**20)
    with AnonMemorySampler() as mem:
        copy = _fresh_copy(src)
    assert mem.growth >= 0.9 * copy.nbytes, (mem.baseline, mem.peak)


def _run_fresh(code, *args):
    """Standard output of ``code`` run in a fresh interpreter (``args`` are
    its ``sys.argv[1:]``); fails with its error output if it fails."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


_REUSE = """
import numpy as np
from skconcepts.utils._testing import AnonMemorySampler
chunks = [bytearray(100_000) for _ in range(1000)]  # 100 MB in the heap
pin = bytearray(100_000)  # keeps the heap's top in use: free() keeps them
del chunks
with AnonMemorySampler() as mem:
    big = np.ones(8 * 2**20)  # 64 MB
print(mem.growth, big.nbytes)
"""


def test_sampler_does_not_count_memory_the_allocator_reuses():
    """What the sampler documents it cannot see, and why CI read 4 kB of
    growth for a 64 MB ``numpy`` copy: glibc serves a ``malloc`` of any size
    from a free chunk of its heap when one is large enough, and the pages of
    a freed chunk stay resident.

    In a fresh interpreter (a test worker's heap is fragmented: there the
    chunks need not be contiguous), 1000 chunks of 100 kB are freed while a
    later chunk pins the heap's top, so ``free`` keeps them resident; a
    64 MB array made in the block lands in them: about 0 growth. Hence the
    memory bounds measured in a fresh, trimmed process (``_fresh_growth``).
    """
    import ctypes

    if getattr(ctypes.CDLL(None), "malloc_trim", None) is None:
        pytest.skip("not glibc")
    growth, nbytes = map(int, _run_fresh(_REUSE).split()[-2:])
    assert growth < 0.5 * nbytes, growth


_FRESH = """
import ctypes, gc, sys
import numpy as np, torch
torch.set_num_threads(1)
from skconcepts import NMFConcepts
from skconcepts.sae import TopKSAE
from skconcepts.utils._testing import AnonMemorySampler
X = np.load(sys.argv[1], mmap_mode="r")
NMFConcepts(8, max_iter=2, batch_size=512, device="cpu").fit(X[:8192])
TopKSAE(32, 4, max_epochs=1, batch_size=1024, device="cpu").fit(X[:8192])
gc.collect()
ctypes.CDLL(None).malloc_trim(0)
with AnonMemorySampler() as mem:
{body}
print(mem.growth)
"""


def _fresh_growth(memmap, body):
    """The anonymous-memory growth of ``body`` (code using ``X``, the memmap)
    run in a fresh interpreter after the warm-up fits, with the C heap
    trimmed first: nothing earlier code freed is there to be reused without
    growth (see ``test_sampler_does_not_count_memory_the_allocator_reuses``)."""
    import textwrap

    code = _FRESH.format(body=textwrap.indent(textwrap.dedent(body), "    "))
    return int(_run_fresh(code, str(memmap.filename)).split()[-1])


def test_nmf_fit_on_memmap_is_bounded_by_the_batch(big_memmap):
    """NMF fit, score and partial_fit on a memmap grow memory by O(n k), not
    by the data: measured in a fresh, trimmed process (in this worker, or
    in a fresh process without the trim, it grew by 0.0 MB: the allocator
    reused memory the warm-up fits freed, and the bound could not fail).
    Five runs for the 94 MB file: 14-30 MB (0.15-0.32 of it; the peak
    depends on which transient the 2 ms sampler catches); with a full
    in-memory copy added to the block (the ablation) 113 MB, and this
    fails."""
    nbytes = big_memmap.nbytes
    growth = _fresh_growth(
        big_memmap,
        """
        est = NMFConcepts(8, max_iter=3, batch_size=512, device="cpu", random_state=0)
        est.fit(X)
        est.score(X)
        est.partial_fit(X[:4096])
        """,
    )
    # the codes (n x 8) and the randomized SVD's (n x 18) blocks are O(n k)
    assert growth < 0.5 * nbytes, growth / MB
    est = NMFConcepts(8, max_iter=3, batch_size=512, device="cpu", random_state=0)
    W = est.fit(big_memmap).components_
    score = est.score(big_memmap)
    in_memory = np.array(big_memmap)
    ref = clone(est).fit(in_memory)
    np.testing.assert_array_equal(W, ref.components_)
    assert score == ref.score(in_memory) > 0.9


def test_sae_fit_on_memmap_is_bounded_by_the_batch(big_memmap):
    # default engine constants: a memmap larger than one streaming chunk
    # (STREAM_CHUNK_BATCHES = 32 batches of 128 rows = 6.25 MiB here) is moved
    # to the device one chunk at a time, its initialisation sample holds at
    # most one chunk of rows and its variance is streamed
    _warm_up(big_memmap)
    nbytes = big_memmap.nbytes
    params = dict(max_epochs=1, batch_size=128, device="cpu", random_state=0)
    est = TopKSAE(32, 4, **params)
    chunk = _engine.STREAM_CHUNK_BATCHES * 128 * big_memmap.shape[1] * 4
    assert est._chunk_rows(big_memmap, torch.device("cpu")) * 1600 == chunk
    with AnonMemorySampler() as mem:
        est.fit(big_memmap)
    # one chunk, its init sample, batch temporaries: under three chunks (a
    # fifth of the file); the previous engine copied the whole 94 MB file
    # three times (device chunk, init sample, centred temporaries)
    assert 3 * chunk < 0.21 * nbytes
    assert mem.growth < 3 * chunk, mem.growth / MB
    assert est.history_[0]["steps"] == big_memmap.shape[0] // 128
    # the chunked shuffle differs from the in-memory one: same quality
    in_memory = np.array(big_memmap)
    ref = TopKSAE(32, 4, **params).fit(in_memory)
    assert est.reconstruction_r2_ > 0.9
    assert abs(est.reconstruction_r2_ - ref.reconstruction_r2_) < 0.02
    # the batched variance is the full-size formula, bit for bit
    X_init = est._init_sample(big_memmap, make_generator(0), "cpu", torch.float32)
    assert X_init.shape[0] <= chunk // 1600
    centred = X_init - X_init.mean(0)
    assert est._data_var(X_init) == float((centred * centred).sum(1).mean())
    # early stopping on a streamed memmap reads the validation rows by batches
    rows = np.arange(0, 20000, 7)
    sess = est._session
    ref_r2 = est._r2_tensor(sess.module, torch.as_tensor(in_memory[rows]), sess)
    got_r2 = est._r2_rows(sess.module, big_memmap, rows, sess)
    assert got_r2 == pytest.approx(ref_r2, abs=1e-5)
    es = TopKSAE(32, 4, **dict(params, max_epochs=2), early_stopping=True)
    es.fit(big_memmap[:16384])
    assert [h["val_r2"] > 0.5 for h in es.history_] == [True, True]


@pytest.mark.parametrize("name", ["semi", "convex", "archetypal", "aligned"])
def test_other_learners_on_memmap_are_bounded(big_memmap, name):
    # the rest of the learning estimators: no copy of the 94 MB file either
    X = big_memmap
    sae = dict(max_epochs=1, batch_size=128, device="cpu", random_state=0)
    nmf = dict(batch_size=2048, device="cpu", random_state=0)
    est, y = {
        "semi": (SemiNMFConcepts(8, max_iter=3, **nmf), None),
        "convex": (ConvexNMFConcepts(8, max_iter=2, n_candidates=256, **nmf), None),
        "archetypal": (ArchetypalSAE(32, 4, n_candidates=64, **sae), None),
        "aligned": (AlignedSAE(32, 4, **sae), np.arange(X.shape[0]) % 2),
    }[name]
    warm = X[:8192], None if y is None else y[:8192]
    clone(est).fit(*warm)  # warm-up of the same code paths
    with AnonMemorySampler() as mem:
        est.fit(X, y)
    assert mem.growth < 0.4 * X.nbytes, mem.growth / MB
    assert est.score(X[:4096]) > 0.5


def test_fit_chunks_from_zarr_is_bounded_by_the_chunk(
    big_memmap, tmp_path, small_budgets, monkeypatch
):
    z = zarr.open_array(
        store=str(tmp_path / "big.zarr"),
        mode="w",
        shape=big_memmap.shape,
        chunks=(2048, 400),
        dtype="float32",
    )
    for s in range(0, big_memmap.shape[0], 8192):
        z[s : s + 8192] = big_memmap[s : s + 8192]
    monkeypatch.setattr(_io, "DEFAULT_CHUNK_BYTES", 4 * MB)
    _warm_up(big_memmap)
    for _ in iter_chunks(z, 4096):  # zarr's reader threads and buffers
        pass
    fit_chunks(TopKSAE(32, 4, device="cpu"), z[:8192], chunk_size=4096)
    nbytes = big_memmap.nbytes
    with AnonMemorySampler() as mem:
        sae = fit_chunks(
            TopKSAE(32, 4, batch_size=1024, device="cpu", random_state=0),
            z,
            chunk_size=4096,
        )
        nmf = fit_chunks(
            NMFConcepts(8, max_iter=20, device="cpu", random_state=0),
            z,
            chunk_size=4096,
        )
        # fit on the zarr array goes through a temporary memmap, not RAM
        TopKSAE(32, 4, max_epochs=1, batch_size=1024, device="cpu", random_state=0).fit(
            z
        )
    assert mem.growth < 0.25 * nbytes, mem.growth / MB
    assert sae.n_steps_ == 60 and nmf.n_steps_ == 15


def _bounded_taco(X, warm_rows, **params):
    """A TaCoEraser fitted on memmap ``X`` and its anonymous memory growth."""
    from sklearn.linear_model import LogisticRegression

    from skconcepts import TaCoEraser

    y = (X[:, 0] > np.median(X[:, 0])).astype(int)
    params = dict(
        dict(n_designs=4, max_samples=128, device="cpu", random_state=0), **params
    )
    params.setdefault("probe", LogisticRegression(max_iter=50))
    taco = TaCoEraser(6, **params)
    clone(taco).fit(X[:warm_rows], y[:warm_rows])  # warm-up of the same code path
    with AnonMemorySampler() as mem:
        taco.fit(X, y)
    return taco, y, mem.growth


def test_taco_with_a_streaming_decomposition_is_bounded(big_memmap):
    from sklearn.linear_model import LogisticRegression

    X = big_memmap  # 94 MB, read-only
    taco, y, growth = _bounded_taco(
        X,
        4096,
        n_remove=2,
        decomposition=SemiNMFConcepts(6, max_iter=5, batch_size=2048),
        probe=LogisticRegression(max_iter=20),
        batch_size=64,
    )
    # no copy of X (94 MB): the decomposition streams, the probes and the
    # Sobol' engine (max_samples rows) work on batches; 12-37 MB measured
    # (SemiNMF's initialisation sample, torch's batches, allocator slack).
    # On every supported scikit-learn: before 1.9 LogisticRegression(lbfgs)
    # converts float32 to a float64 copy (188 MB here), so the eraser gives
    # it a float64 memmap instead (skconcepts._compat.probe_fit_input)
    assert growth < 0.6 * X.nbytes, growth / MB
    ref = clone(taco).fit(np.array(X), y)
    np.testing.assert_array_equal(taco.components_, ref.components_)
    np.testing.assert_array_equal(taco.removed_concepts_, ref.removed_concepts_)


def test_taco_default_pca_on_memmap_is_bounded(big_memmap):
    from skconcepts.decomposition._streamed import streamed_pca

    X = big_memmap  # 94 MB, read-only
    taco, y, growth = _bounded_taco(X, 8192, max_train_samples=4096)
    # streamed PCA (Gram 400 x 400 and one 4096-row float64 batch), codes
    # (n x 6), probes and auto search on 4096 rows, Sobol' on 128 rows;
    # 0-19 MB measured (a copy of X alone would be 94 MB)
    assert growth < 0.4 * X.nbytes, growth / MB
    # in memory: sklearn's PCA (randomized solver here) on the same data,
    # probes on the same subsample -> same concepts up to the solver's error
    in_memory = np.array(X)
    ref = clone(taco).fit(in_memory, y)
    np.testing.assert_allclose(taco.components_, ref.components_, atol=2e-3)
    np.testing.assert_allclose(taco.mean_, ref.mean_, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(taco.removed_concepts_, ref.removed_concepts_)
    np.testing.assert_allclose(
        taco.transform(X[:512]), ref.transform(in_memory[:512]), atol=1e-2
    )
    # the streamed PCA is the exact (full-SVD) PCA up to rounding
    exact = PCA(6, svd_solver="full").fit(in_memory[:20000].astype(np.float64))
    got = streamed_pca(X[:20000], 6, 3000, 0)
    np.testing.assert_allclose(got.components_, exact.components_, atol=1e-4)
    np.testing.assert_allclose(
        got.explained_variance_, exact.explained_variance_, rtol=1e-4
    )


@pytest.fixture(scope="module")
def mixed_sources(tmp_path_factory):
    """Three known non-Gaussian sources mixed into 20 dimensions, on disk."""
    rng = np.random.RandomState(0)
    n = 6000
    S = np.c_[rng.uniform(-1, 1, n), rng.laplace(size=n), rng.uniform(-1, 1, n) ** 3]
    X = S @ rng.normal(size=(3, 20)) + rng.normal(scale=0.01, size=(n, 20)) + 3
    path = tmp_path_factory.mktemp("ica") / "mixed.npy"
    np.save(path, X)
    y = (np.abs(S[:, 1]) > np.median(np.abs(S[:, 1]))).astype(int)
    return np.load(path, mmap_mode="r"), S, y


@pytest.mark.parametrize("decomposition", ["svd", "ica"])
def test_taco_svd_and_ica_stream_a_memmap(mixed_sources, decomposition):
    from sklearn.decomposition import TruncatedSVD
    from sklearn.linear_model import LogisticRegression

    from skconcepts import TaCoEraser
    from skconcepts.decomposition import _streamed

    X, S, y = mixed_sources
    taco = TaCoEraser(
        3,
        n_remove=1,
        decomposition=decomposition,
        probe=LogisticRegression(max_iter=200),
        n_designs=8,
        max_samples=64,
        residual=True,
        batch_size=700,
        device="cpu",
        random_state=0,
    )
    calls = []
    streamed = _streamed.STREAMED[decomposition]
    _streamed.STREAMED[decomposition] = lambda *a, **kw: (
        calls.append(a) or streamed(*a, **kw)
    )
    try:
        taco.fit(X, y)
    finally:
        _streamed.STREAMED[decomposition] = streamed
    assert len(calls) == 1 and calls[0][2] == 700  # batches of batch_size rows
    in_memory = np.array(X)
    if decomposition == "svd":
        # the exact truncated SVD (ARPACK) of the same data
        ref = TruncatedSVD(3, algorithm="arpack").fit(in_memory)
        np.testing.assert_allclose(
            taco.components_, ref.components_, rtol=1e-6, atol=1e-8
        )
        for name in ("singular_values_", "explained_variance_ratio_"):
            np.testing.assert_allclose(
                getattr(taco.extractor_, name), getattr(ref, name), rtol=1e-6
            )
    else:
        # ground truth: the codes are the three sources (up to order and
        # sign), with unit variance, and the decoder inverts the codes
        U = taco.extractor_.transform(in_memory)
        corr = np.abs(np.corrcoef(U.T, S.T)[:3, 3:])
        assert np.all(corr.max(axis=1) > 0.99), corr
        np.testing.assert_allclose(U.std(axis=0), 1.0, rtol=1e-6)
        np.testing.assert_allclose(
            U @ taco.components_ + taco.mean_, in_memory, atol=0.1
        )
    # removing a concept subtracts exactly its decoded part
    U = np.asarray(taco.extractor_.transform(in_memory))
    j = taco.removed_concepts_[0]
    np.testing.assert_allclose(
        taco.transform(in_memory),
        in_memory - np.outer(U[:, j], taco.components_[j]),
        atol=1e-8,
    )


@pytest.mark.parametrize("decomposition", ["svd", "ica"])
def test_taco_svd_and_ica_on_memmap_are_bounded(big_memmap, decomposition):
    X = big_memmap  # 94 MB, read-only
    taco, _, growth = _bounded_taco(
        X, 8192, n_remove=2, decomposition=decomposition, max_train_samples=4096
    )
    # Gram 400 x 400, one 4096-row batch, codes (n x 6, twice for ICA);
    # 0-25 MB measured (a copy of X alone would be 94 MB)
    assert growth < 0.4 * X.nbytes, growth / MB
    assert taco.components_.shape == (6, 400)


# ------------------------------------------------------------ device logic
def test_device_logic_fitted_state_is_numpy(low_rank):
    for est in (
        NMFConcepts(4, max_iter=20, random_state=0, device="cpu"),
        TopKSAE(16, 3, max_epochs=1, batch_size=128, random_state=0, device="cpu"),
    ):
        est.fit(low_rank)
        for name, value in vars(est).items():
            assert not isinstance(value, torch.Tensor), name
        assert type(est.components_) is np.ndarray
        assert est.components_.dtype == np.float32
        U = est.transform(low_rank)
        # the pickle holds no torch object (a GPU fit loads on a CPU machine)
        blob = pickle.dumps(est)
        assert b"torch" not in blob
        np.testing.assert_array_equal(pickle.loads(blob).transform(low_rank), U)
        # transform under another device setting, set after fit
        est.set_params(device="auto")
        np.testing.assert_allclose(est.transform(low_rank), U, rtol=1e-5, atol=1e-6)
        if not torch.cuda.is_available():
            est.set_params(device="cuda")
            with pytest.raises(ValueError, match="device='cuda'.*CUDA is not"):
                est.transform(low_rank)
            with pytest.raises(ValueError, match="device='cuda:3'"):
                clone(est).set_params(device="cuda:3").fit(low_rank)
        with pytest.raises(ValueError, match="not a valid device|not supported"):
            clone(est).set_params(device="tpu").fit(low_rank)


def _fit_on(est, device, X, y):
    """Fit a clone on ``device``; check the state is NumPy and it runs on CPU.

    An estimator without a ``device`` (``ConceptShift``: NumPy and its
    extractor's) is fitted as it is; a regressor is checked on ``predict``.
    """
    est = clone(est)
    has_device = "device" in est.get_params()
    if has_device:
        est.set_params(device=device)
    if "random_state" in est.get_params():
        est.set_params(random_state=0)
    est.fit(X, y)
    for name, value in vars(est).items():
        if name.endswith("_") and not name.startswith("_"):
            if isinstance(value, dict):
                items = list(value.values())
            else:
                items = value if isinstance(value, list) else [value]
            for v in items:
                assert not torch.is_tensor(v), (type(est).__name__, name)
    if has_device:
        est.set_params(device="cpu")  # e.g. loaded on a machine without the GPU
    out = est.transform(X[:64]) if hasattr(est, "transform") else est.predict(X[:64])
    assert type(out) is np.ndarray and out.dtype == X.dtype
    return est, out


@pytest.mark.parametrize("est", estimator_params())
def test_every_estimator_fitted_state_is_numpy_and_reproducible(est, low_rank):
    # the CPU half of the device logic (test_every_estimator_on_cuda below
    # fits on a GPU where there is one): the fitted state holds no tensor,
    # two seeded fits agree, and a pickled model transforms the same
    y = np.arange(low_rank.shape[0]) % 2
    a, out_a = _fit_on(est, "cpu", low_rank, y)
    b, out_b = _fit_on(est, "cpu", low_rank, y)
    np.testing.assert_array_equal(out_a, out_b)
    loaded = pickle.loads(pickle.dumps(a))
    run = loaded.transform if hasattr(loaded, "transform") else loaded.predict
    np.testing.assert_array_equal(run(low_rank[:64]), out_a)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("est", estimator_params())
def test_every_estimator_on_cuda(est, low_rank):  # pragma: no cover
    y = np.arange(low_rank.shape[0]) % 2
    gpu, out_gpu = _fit_on(est, "cuda", low_rank, y)
    cpu, out_cpu = _fit_on(est, "cpu", low_rank, y)
    assert out_gpu.shape == out_cpu.shape and np.isfinite(out_gpu).all()
    if hasattr(cpu, "inverse_transform") and hasattr(cpu, "components_"):
        # concept extractors: the same reconstruction quality on both devices
        assert abs(gpu.score(low_rank) - cpu.score(low_rank)) < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fit_matches_cpu_and_comes_back_as_numpy(low_rank):  # pragma: no cover
    for est in (
        NMFConcepts(4, max_iter=50, random_state=0),
        TopKSAE(16, 3, max_epochs=3, batch_size=128, random_state=0),
    ):
        gpu = clone(est).set_params(device="cuda").fit(low_rank)
        cpu = clone(est).set_params(device="cpu").fit(low_rank)
        assert type(gpu.components_) is np.ndarray
        assert abs(gpu.score(low_rank) - cpu.score(low_rank)) < 0.02
        gpu.set_params(device="cpu")
        assert gpu.transform(low_rank).dtype == np.float32
