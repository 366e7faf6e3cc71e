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

    kids = np.random.SeedSequence(7).spawn(3)
    assert spawn_seeds(7, 3) == [int(k.generate_state(1)[0]) for k in kids]
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
