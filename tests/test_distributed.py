"""Distributed training (torch.distributed, gloo) and distributed search (Dask)."""

import json
import os
import re
import socket
import subprocess
import sys
import time

import joblib
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from sklearn.base import clone

import skconcepts
from skconcepts import AlignedSAE, ArchetypalSAE, NMFConcepts, TopKSAE
from skconcepts.distributed import data_parallel, fit_distributed, main

# A batch remainder of one row: with two ranks the second rank's share of the
# last batch of every epoch is empty.
N_ROWS, BATCH = 385, 64


def _data():
    rng = np.random.RandomState(0)
    atoms = rng.randn(12, 16)
    codes = rng.rand(N_ROWS, 12) * (rng.rand(N_ROWS, 12) < 0.3)
    return codes @ atoms + 0.01 * rng.randn(N_ROWS, 16)


def _estimators():
    common = dict(batch_size=BATCH, device="cpu", random_state=0)
    return {
        # float64 data: the comparison is at float64 rounding
        "topk": TopKSAE(24, 3, max_epochs=3, **common),
        "archetypal": ArchetypalSAE(
            24, 3, relaxation=0.1, n_candidates=48, max_epochs=2, **common
        ),
        "relu": TopKSAE(24, 3, activation="relu", max_epochs=2, **common),
        # the terms computed on the whole batch: BatchTopK's selection, the
        # AuxK ratio (atoms are dead after 2 steps here), the Iso-Energy means
        "batchtopk": TopKSAE(24, 3, activation="batchtopk", max_epochs=2, **common),
        "auxk": TopKSAE(24, 3, dead_steps=2, aux_coef=0.5, max_epochs=3, **common),
        "jumprelu": TopKSAE(24, 3, activation="jumprelu", max_epochs=2, **common),
        "aligned": AlignedSAE(24, 3, alignment_weight=1.0, max_epochs=2, **common),
        "matryoshka": skconcepts.MatryoshkaSAE(24, 3, max_epochs=2, **common),
    }


def _targets():
    # unpaired modalities (193 and 192 rows): each batch is [a rows, b rows],
    # so with two ranks each share holds mostly one modality
    return {"aligned": np.arange(N_ROWS) % 2}


def _fitted_state(est):
    keys = ["components_", "encoder_weights_", "encoder_bias_", "pre_bias_"]
    return {k: np.asarray(getattr(est, k)) for k in keys}


def _linear():
    lin = torch.nn.Linear(16, 4).double()
    rng = np.random.RandomState(3)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(rng.randn(4, 16)))
        lin.bias.copy_(torch.as_tensor(rng.randn(4)))
    return lin


def _worker(rank, world_size, port, out_dir):
    torch.set_num_threads(1)
    import torch.distributed as dist

    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
    )
    try:
        from skconcepts import distributed

        shares = []  # rows of every batch share this rank trained on
        shard = distributed._DataParallel.shard

        def counting_shard(self, idx):
            out = shard(self, idx)
            shares.append(int(out.numel()))
            return out

        distributed._DataParallel.shard = counting_shard
        X = _data()
        results = {}
        for name, est in _estimators().items():
            shares.clear()
            fit_distributed(est, X, _targets().get(name))
            results[f"{name}.shares"] = np.array(shares)
            for k, v in _fitted_state(est).items():
                results[f"{name}.{k}"] = v
            results[f"{name}.loss"] = np.array([r["loss"] for r in est.history_])
            results[f"{name}.l0"] = np.array([r["l0"] for r in est.history_])
            results[f"{name}.threshold"] = np.asarray(est.threshold_, dtype=float)
        # the all-reduced gradient of the weighted share losses is the
        # full-batch gradient (a direct check, independent of Adam's scale
        # invariance), here for a batch of 7 rows: shares of 3 and 4
        lin = _linear()
        ctx = distributed._DataParallel()
        idx = ctx.shard(torch.arange(7))
        xb = torch.as_tensor(X[:7])[idx]
        loss = (lin(xb) ** 2).sum(1).mean() * ctx.weight(xb.shape[0])
        loss.backward()
        ctx.all_reduce_grads(lin)
        results["grad.weight"] = lin.weight.grad.numpy()
        results["grad.bias"] = lin.bias.grad.numpy()
        # streaming: two partial_fit calls in the data-parallel context
        est = TopKSAE(24, 3, batch_size=BATCH, device="cpu", random_state=0)
        with data_parallel() as ctx:
            assert ctx.world_size == world_size
            est.partial_fit(X[:200])
            est.partial_fit(X[200:])
        for k, v in _fitted_state(est).items():
            results[f"partial.{k}"] = v
        np.savez(os.path.join(out_dir, f"rank{rank}.npz"), **results)
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    # spawn, not fork: forking a process that already runs threads (torch,
    # BLAS, joblib or Dask threads of earlier tests in the same pytest worker)
    # can deadlock the child. A bounded join turns a hang into a failure.
    ctx = mp.start_processes(
        _worker,
        args=(2, _free_port(), str(out)),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + 300
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the two DDP ranks did not finish within 300 s")
    return [dict(np.load(out / f"rank{r}.npz")) for r in range(2)]


def test_two_ranks_equal_single_process_full_batches(ddp_results):
    X = _data()
    rank0, rank1 = ddp_results
    for name, est in _estimators().items():
        ref = clone(est).fit(X, _targets().get(name))
        for k, v in _fitted_state(ref).items():
            # both ranks hold the same model ...
            np.testing.assert_array_equal(rank0[f"{name}.{k}"], rank1[f"{name}.{k}"])
            # ... which is the single-process model (full batches of 64 rows)
            np.testing.assert_allclose(
                rank0[f"{name}.{k}"], v, rtol=1e-9, atol=1e-10, err_msg=name
            )
        np.testing.assert_allclose(
            rank0[f"{name}.threshold"],
            np.asarray(ref.threshold_, dtype=float),
            rtol=1e-9,
            err_msg=name,
        )
        # each rank trained on its half of every batch, and on nothing else
        shares = rank0[f"{name}.shares"] + rank1[f"{name}.shares"]
        steps = ref.n_steps_
        assert len(shares) == steps
        assert shares.sum() == N_ROWS * ref.n_iter_
        if name != "aligned":  # (its batches hold whole shares of each modality)
            assert rank0[f"{name}.shares"][0] == BATCH // 2
            assert rank1[f"{name}.shares"][0] == BATCH // 2
            assert 0 in rank0[f"{name}.shares"]  # the 1-row last batch: rank 1 only
        if name == "auxk":
            assert any(r.get("auxk", 0) > 0 for r in ref.history_)
        if name == "aligned":
            assert all(r["energy"] > 0 for r in ref.history_)
        # the history is of the global batches, not of one rank's share
        ref_loss = [r["loss"] for r in ref.history_]
        np.testing.assert_allclose(rank0[f"{name}.loss"], ref_loss, rtol=1e-9)
        ref_l0 = [r["l0"] for r in ref.history_]
        np.testing.assert_allclose(rank0[f"{name}.l0"], ref_l0, rtol=1e-9)


def test_all_reduced_gradient_is_the_full_batch_gradient(ddp_results):
    lin = _linear()
    xb = torch.as_tensor(_data()[:7])
    (lin(xb) ** 2).sum(1).mean().backward()
    for rank in ddp_results:
        np.testing.assert_allclose(rank["grad.weight"], lin.weight.grad, rtol=1e-12)
        np.testing.assert_allclose(rank["grad.bias"], lin.bias.grad, rtol=1e-12)


def test_two_ranks_partial_fit_equals_single_process(ddp_results):
    X = _data()
    ref = TopKSAE(24, 3, batch_size=BATCH, device="cpu", random_state=0)
    ref.partial_fit(X[:200]).partial_fit(X[200:])
    for k, v in _fitted_state(ref).items():
        np.testing.assert_allclose(ddp_results[0][f"partial.{k}"], v, rtol=1e-9)


def test_cosine_alignment_is_refused_data_parallel(tmp_path):
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        X = _data()[:200]
        est = AlignedSAE(
            8, 2, alignment="cosine", batch_size=BATCH, device="cpu", random_state=0
        )
        with pytest.raises(ValueError, match="alignment='cosine'.*energy"):
            fit_distributed(est, X, np.arange(200) % 2)
    finally:
        dist.destroy_process_group()


def test_fit_distributed_errors():
    X = _data()
    with pytest.raises(RuntimeError, match="init_process_group"):
        fit_distributed(TopKSAE(8, 2, random_state=0), X)
    with pytest.raises(ValueError, match="int random_state"):
        fit_distributed(TopKSAE(8, 2), X)
    with pytest.raises(ValueError, match="trains the SAEs"):
        fit_distributed(NMFConcepts(2, random_state=0), np.abs(X))


# ------------------------------------------------ the command line, under torchrun
_CLI = {
    "topk": ("TopKSAE", {"n_concepts": 24, "top_k": 3, "max_epochs": 2}),
    "aligned": (
        "AlignedSAE",
        {"n_concepts": 24, "top_k": 3, "alignment": "energy", "max_epochs": 2},
    ),
}


def _cli_files(tmp_path, name):
    """The data (and target) files and the arguments of the entry point."""
    estimator, params = _CLI[name]
    params = {**params, "batch_size": BATCH, "device": "cpu", "random_state": 0}
    np.save(tmp_path / "X.npy", _data())
    argv = [
        str(tmp_path / "X.npy"),
        str(tmp_path / "sae.joblib"),
        "--estimator",
        estimator,
        "--params",
        json.dumps(params),
        "--backend",
        "gloo",
    ]
    y = _targets().get(name)
    if y is not None:
        np.save(tmp_path / "y.npy", y)
        argv += ["--target", str(tmp_path / "y.npy")]
    ref = getattr(skconcepts, estimator)(**params).fit(_data(), y)
    return argv, ref


def _assert_same_fit(got, ref):
    assert type(got) is type(ref)
    assert got.get_params() == ref.get_params()
    for k, v in _fitted_state(ref).items():
        np.testing.assert_allclose(_fitted_state(got)[k], v, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(
        [r["loss"] for r in got.history_], [r["loss"] for r in ref.history_], rtol=1e-9
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["topk", "aligned"])
def test_torchrun_entry_point_equals_single_process(tmp_path, name):
    """``torchrun --nproc-per-node=2 -m skconcepts.distributed`` (gloo, ~10 s)."""
    argv, ref = _cli_files(tmp_path, name)
    root = os.path.dirname(os.path.dirname(os.path.abspath(skconcepts.__file__)))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node=2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        "-m",
        "skconcepts.distributed",
        *argv,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # rank 0 alone writes the model
    assert proc.stdout.count(f"wrote {tmp_path / 'sae.joblib'}") == 1, proc.stdout
    got = joblib.load(tmp_path / "sae.joblib")
    _assert_same_fit(got, ref)
    if name == "aligned":
        assert all(r["energy"] > 0 for r in got.history_)


def test_entry_point_in_process_one_rank(tmp_path, monkeypatch):
    # the same entry point in this process, a world of one rank (env://)
    for key, value in {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
    }.items():
        monkeypatch.setenv(key, value)
    argv, ref = _cli_files(tmp_path, "aligned")
    main(argv)
    import torch.distributed as dist

    assert not dist.is_initialized()  # the process group is destroyed
    _assert_same_fit(joblib.load(tmp_path / "sae.joblib"), ref)


# ------------------------------------------------ distributed hyper-parameter search
def _search_data():
    rng = np.random.RandomState(1)
    return rng.rand(240, 6) @ rng.rand(6, 20) + 0.05 * rng.rand(240, 20)


def recon_and_sparsity():
    """Multi-metric scoring of a concept extractor (the scale guide's recipe)."""
    from skconcepts.metrics import mean_l0

    def sparsity(est, X, y=None):
        codes = est.transform(X)
        return 1.0 - mean_l0(codes) / codes.shape[1]  # fraction of zero codes

    return {"r2": lambda est, X, y=None: est.score(X), "sparsity": sparsity}


def smallest_within(tol):
    """``refit`` callable: the fewest concepts whose mean R^2 is within ``tol``."""

    def refit(cv_results):
        r2 = np.asarray(cv_results["mean_test_r2"])
        k = np.asarray(cv_results["param_n_concepts"], dtype=float)
        ok = np.flatnonzero(r2 >= r2.max() - tol)
        return int(ok[np.argmin(k[ok])])

    return refit


def _searches():
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

    nmf = NMFConcepts(max_iter=50, device="cpu", random_state=0)
    sae = TopKSAE(top_k=2, max_epochs=3, batch_size=32, device="cpu", random_state=0)
    return {
        "grid": GridSearchCV(nmf, {"n_concepts": [2, 6, 10]}, cv=2),
        "multi": GridSearchCV(
            nmf,
            {"n_concepts": [2, 4, 6, 8]},
            scoring=recon_and_sparsity(),
            refit=smallest_within(0.01),
            cv=3,
        ),
        "random": RandomizedSearchCV(
            sae,
            {"n_concepts": [4, 8, 16], "learning_rate": [1e-3, 4e-3, 1e-2]},
            n_iter=3,
            cv=2,
            random_state=0,
        ),
    }


def _run_searches(backend=None, **backend_kw):
    from joblib import parallel_backend

    X = _search_data()
    out = {}
    for name, search in _searches().items():
        if backend is None:
            search.fit(X)
        else:
            search.set_params(n_jobs=2)
            with parallel_backend(backend, **backend_kw):
                search.fit(X)
        out[name] = search
    return out


@pytest.fixture(scope="module")
def sequential_searches():
    return _run_searches()


def _assert_same_search(got, ref):
    for name in ref:
        g, r = got[name], ref[name]
        assert g.best_params_ == r.best_params_, name
        assert g.best_index_ == r.best_index_, name
        for key in r.cv_results_:
            if key.startswith(("mean_test", "split")):
                np.testing.assert_allclose(
                    g.cv_results_[key], r.cv_results_[key], rtol=1e-6, err_msg=key
                )
        np.testing.assert_allclose(
            g.best_estimator_.components_, r.best_estimator_.components_, rtol=1e-5
        )


def test_multi_metric_refit_picks_the_smallest_good_dictionary(sequential_searches):
    multi = sequential_searches["multi"]
    r2 = multi.cv_results_["mean_test_r2"]
    # R^2 alone prefers the largest dictionary; the refit callable does not
    assert multi.cv_results_["params"][int(np.argmax(r2))]["n_concepts"] == 8
    assert multi.best_params_["n_concepts"] == 6  # 6 true components
    assert r2[multi.best_index_] >= r2.max() - 0.01
    assert multi.best_estimator_.n_concepts == 6


def test_threading_backend_search_equals_sequential(sequential_searches):
    _assert_same_search(_run_searches("threading"), sequential_searches)


def test_dask_local_cluster_search_equals_sequential(sequential_searches):
    import dask
    from dask.distributed import Client, LocalCluster, get_task_stream

    # spawn (Dask's default): forking a pytest worker that already runs
    # threads can deadlock the child
    with (
        dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            worker_dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        with get_task_stream(client) as stream:
            got = _run_searches("dask")
        workers = client.scheduler_info()["workers"]
        pids = client.run(os.getpid)
    # every cross-validation fit ran as a task in a worker process (joblib
    # sends batches of ``_fit_and_score`` calls; the refit runs in the client)
    assert len(workers) == 2
    assert os.getpid() not in pids.values()
    fits = {}  # worker -> number of _fit_and_score calls it ran
    for task in stream.data:
        found = re.search(r"batch_of__fit_and_score_(\d+)_calls", str(task["key"]))
        if found:
            fits[task["worker"]] = fits.get(task["worker"], 0) + int(found.group(1))
    assert set(fits) <= set(workers), fits
    n_fits = sum(len(s.cv_results_["params"]) * s.n_splits_ for s in got.values())
    assert sum(fits.values()) == n_fits == 24, fits
    _assert_same_search(got, sequential_searches)
