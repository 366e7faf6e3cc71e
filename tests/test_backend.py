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
