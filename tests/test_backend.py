import subprocess
import sys

import numpy as np
import pytest
import torch

from skconcepts._backend import (
    gen_batches_idx,
    iter_batches,
    make_generator,
    resolve_device,
    to_numpy,
    to_tensor,
    torch_dtype,
)


def test_resolve_device_auto_and_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_absent_cuda_is_a_clear_error(name):
    with pytest.raises(ValueError, match=f"device='{name}'.*CUDA is not available"):
        resolve_device(name)


def test_absent_mps_is_a_clear_error():
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        pytest.skip("MPS is available here")
    with pytest.raises(ValueError, match="device='mps'.*MPS is not available"):
        resolve_device("mps")


@pytest.mark.parametrize("bad", ["gpu", "tpu:0", "", 3])
def test_invalid_device_string(bad):
    with pytest.raises(ValueError, match="device"):
        resolve_device(bad)


def test_generator_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = torch.rand(5, generator=make_generator(3))
    b = torch.rand(5, generator=make_generator(3))
    c = torch.rand(5, generator=make_generator(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(state, torch.get_rng_state())


def test_torch_dtype():
    assert torch_dtype(np.float32) == torch.float32
    assert torch_dtype(np.float64) == torch.float64
    with pytest.raises(ValueError, match="float32 or float64"):
        torch_dtype(np.int64)


def test_batches_cover_all_rows_once():
    slices = list(gen_batches_idx(10, 3))
    covered = np.concatenate([np.arange(10)[s] for s in slices])
    np.testing.assert_array_equal(covered, np.arange(10))
    assert list(gen_batches_idx(10, None)) == [slice(0, 10)]


def test_iter_batches_over_readonly_memmap(tmp_path):
    X = np.arange(60, dtype=np.float32).reshape(20, 3)
    path = tmp_path / "x.dat"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    ro = np.memmap(path, dtype=np.float32, mode="r", shape=X.shape)
    parts = [to_numpy(t) for _, t in iter_batches(ro, 7, torch.device("cpu"))]
    np.testing.assert_array_equal(np.concatenate(parts), X)


def test_to_tensor_does_not_share_readonly_memory():
    X = np.ones((3, 2))
    X.setflags(write=False)
    t = to_tensor(X, torch.device("cpu"))
    t += 1
    np.testing.assert_array_equal(X, np.ones((3, 2)))


def test_import_is_lazy_and_side_effect_free():
    code = (
        "import sys, skconcepts; "
        "assert 'torch' not in sys.modules, 'torch imported at import time'; "
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_spawn_seeds_are_the_seed_sequence_children():
    from skconcepts._backend import spawn_seeds

    entropy = np.random.RandomState(7).randint(np.iinfo(np.int32).max)
    kids = np.random.SeedSequence(entropy).spawn(3)
    assert spawn_seeds(7, 3) == [int(k.generate_state(1)[0]) >> 1 for k in kids]
    assert all(0 <= s < 2**31 for s in spawn_seeds(7, 50))
    assert len(set(spawn_seeds(7, 3))) == 3
    assert spawn_seeds(np.random.RandomState(0), 2) == spawn_seeds(
        np.random.RandomState(0), 2
    )


def test_budgets_follow_working_memory():
    import sklearn

    from skconcepts._backend import default_batch_size, working_memory_bytes
    from skconcepts.sae import TopKSAE

    assert default_batch_size(128, itemsize=8) == 2**28 // 1024  # 1/4 of 1 GiB
    with sklearn.config_context(working_memory=64):
        assert working_memory_bytes() == 64 * 2**20
        assert default_batch_size(128, itemsize=8) == 16 * 2**20 // 1024
        assert TopKSAE()._feed().budget == 64 * 2**20


def test_r2_accumulator_matches_sklearn():
    from sklearn.metrics import r2_score

    from skconcepts._stats import R2Accumulator

    rng = np.random.RandomState(0)
    X = rng.randn(50, 4) * [1.0, 2.0, 3.0, 4.0] + 5.0
    X_hat = X + 0.3 * rng.randn(50, 4)
    # R^2 of the whole matrix: 1 - SSE / SST, sklearn's variance-weighted R^2
    ref = r2_score(X, X_hat, multioutput="variance_weighted")
    for mean in (None, X.mean(0)):
        acc = R2Accumulator("cpu", mean=mean)
        for s in range(0, 50, 7):
            acc.update(torch.as_tensor(X[s : s + 7]), torch.as_tensor(X_hat[s : s + 7]))
        assert acc.score() == pytest.approx(ref, rel=1e-12)
    const = R2Accumulator("cpu")
    const.update(torch.ones(3, 2), torch.ones(3, 2))
    assert const.score() == 1.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kmeans_runs_lloyd_to_sklearns_fixed_point(dtype):
    """From the same k-means++ seeds, the one k-means ends where scikit-learn's
    Lloyd ends (and its default tolerance does not stop it after one step)."""
    from sklearn.cluster import KMeans

    from skconcepts._kmeans import kmeans, kmeans_plusplus

    rng = np.random.RandomState(0)
    X = rng.randn(600, 5).astype(dtype)  # no clusters: Lloyd needs many steps
    Xt = torch.from_numpy(X)
    # the seeds kmeans draws: a row permutation, then k-means++ on it
    gen = torch.Generator().manual_seed(3)
    rows = torch.randperm(600, generator=gen)
    C0 = kmeans_plusplus(Xt[rows], 8, gen).numpy().astype(np.float64)
    ref = KMeans(8, init=C0, n_init=1, tol=0, max_iter=300, algorithm="lloyd")
    ref.fit(X.astype(np.float64))
    assert ref.n_iter_ > 3
    C = kmeans(Xt, 8, torch.Generator().manual_seed(3), n_iter=300, tol=0)
    np.testing.assert_allclose(C.numpy(), ref.cluster_centers_, atol=1e-4)
    # the default tolerance: the inertia of scikit-learn's fixed point
    C, labels = kmeans(Xt, 8, torch.Generator().manual_seed(3), return_labels=True)
    inertia = float(((X - C.numpy()[labels.numpy()]) ** 2).sum())
    assert inertia <= ref.inertia_ * (1 + 1e-3)
