"""The command line (``python -m skconcepts``) and the progress-bar policy.

The command line runs in a subprocess on small files of every activation
format and its outputs are checked against the Python API on the same data;
every failure mode must exit with status 2, one line on stderr, no traceback
and no file left behind.
"""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest

from skconcepts import NMFConcepts, TaCoEraser
from skconcepts._cli import build_parser, find_estimator, main
from skconcepts._progress import progress, progress_enabled
from skconcepts.metrics import dead_fraction, leakage, mean_l0, reconstruction_r2

ROOT = Path(__file__).resolve().parents[1]
NMF_ARGS = ["--n-concepts", "3", "--device", "cpu"]
NMF_ARGS += ["--param", "random_state=0", "--param", "max_iter=60"]
NMF_KW = dict(n_concepts=3, device="cpu", random_state=0, max_iter=60)


def run(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("SKCONCEPTS_PROGRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "skconcepts", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def acts():
    rng = np.random.RandomState(0)
    return (rng.rand(120, 4) @ rng.rand(4, 10)).astype(np.float32)


def _write(fmt, A, folder):
    """Write ``A`` (plus a decoy array) in ``fmt``; return (path, key, reopened A)."""
    folder = Path(folder)
    if fmt == "npy":
        np.save(folder / "a.npy", A)
        return folder / "a.npy", None, np.load(folder / "a.npy", mmap_mode="r")
    if fmt == "npz":
        np.savez(folder / "a.npz", acts=A, decoy=A[:3])
        return folder / "a.npz", "acts", A
    if fmt == "zarr":
        import zarr

        z = zarr.open(
            str(folder / "a.zarr"),
            mode="w",
            shape=A.shape,
            dtype=A.dtype,
            chunks=(50, A.shape[1]),
        )
        z[:] = A
        return folder / "a.zarr", None, zarr.open(str(folder / "a.zarr"), mode="r")
    if fmt == "h5":
        import h5py

        with h5py.File(folder / "a.h5", "w") as f:
            f["layer/acts"] = A
            f["decoy"] = A[:3]
        f = h5py.File(folder / "a.h5", "r")
        return folder / "a.h5", "layer/acts", f["layer/acts"]
    if fmt == "safetensors":
        from safetensors.numpy import save_file

        save_file({"acts": A, "decoy": A[:3]}, str(folder / "a.safetensors"))
        return folder / "a.safetensors", "acts", A
    if fmt == "pt":
        import torch

        torch.save(
            {"acts": torch.from_numpy(A), "decoy": torch.zeros(2)}, folder / "a.pt"
        )
        return folder / "a.pt", "acts", A
    raise AssertionError(fmt)


# ------------------------------------------------------------- every format
@pytest.mark.parametrize("fmt", ["npy", "npz", "zarr", "h5", "safetensors", "pt"])
def test_fit_every_format_matches_python_api(fmt, acts, tmp_path):
    path, key, same = _write(fmt, acts, tmp_path)
    args = ["fit", "nmfconcepts", path.name, *NMF_ARGS, "--out", "m.joblib"]
    if key is not None:
        args += ["--tensor" if fmt in ("pt", "safetensors") else "--dataset", key]
    proc = run(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal
    model = joblib.load(tmp_path / "m.joblib")
    summary = json.loads((tmp_path / "m.json").read_text())

    ref = NMFConcepts(**NMF_KW).fit(same)  # the same data, opened the same way
    np.testing.assert_allclose(model.components_, ref.components_, rtol=1e-5)
    codes = ref.transform(acts)
    assert summary["method"] == "NMFConcepts"
    assert summary["params"]["n_concepts"] == 3
    assert summary["activations"]["shape"] == [120, 10]
    assert summary["r2"] == pytest.approx(ref.score(acts), rel=1e-5)
    assert summary["mean_l0"] == pytest.approx(mean_l0(codes))
    assert summary["dead_fraction"] == pytest.approx(dead_fraction(codes))
    assert summary["fit_time_s"] > 0


def test_transform_streams_chunks_and_evaluate(acts, tmp_path, capsys):
    np.save(tmp_path / "a.npy", acts)
    ref = NMFConcepts(**NMF_KW).fit(np.load(tmp_path / "a.npy", mmap_mode="r"))
    joblib.dump(ref, tmp_path / "m.joblib")
    # 120 rows in chunks of 37: four chunks, the last one short
    proc = run(
        "transform",
        "m.joblib",
        "a.npy",
        "--out",
        "codes.npy",
        "--chunk-size",
        37,
        "--progress",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "transform" in proc.stderr and "rows" in proc.stderr  # forced bar
    codes = np.load(tmp_path / "codes.npy")
    expected = ref.transform(acts)
    assert codes.dtype == expected.dtype
    np.testing.assert_allclose(codes, expected, rtol=1e-6, atol=1e-7)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.npy",
        "codes.npy",
        "m.joblib",
    ]

    proc = run(
        "evaluate", "m.joblib", "a.npy", "--json", "--chunk-size", 37, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert metrics["reconstruction_r2"] == pytest.approx(
        reconstruction_r2(acts, ref.inverse_transform(expected)), rel=1e-5
    )
    assert metrics["mean_l0"] == pytest.approx(mean_l0(expected))
    assert metrics["dead_fraction"] == pytest.approx(dead_fraction(expected))

    # the table, in process (same code path)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        assert main(["evaluate", "m.joblib", "a.npy"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["metric", "NMFConcepts"]
    r2 = f"{metrics['reconstruction_r2']:.4f}"
    assert table[2].split() == ["reconstruction_r2", r2]


def test_taco_eraser_with_labels(tmp_path):
    rng = np.random.RandomState(0)
    Z = rng.normal(size=(160, 3)) * [3.0, 2.0, 1.0]
    X = Z @ rng.normal(size=(3, 6))
    y = (Z[:, 1] > 0).astype(int)
    np.save(tmp_path / "x.npy", X)
    (tmp_path / "y.txt").write_text("\n".join(map(str, y)) + "\n")
    params = dict(n_concepts=3, n_remove=1, n_designs=8, cv=2, random_state=0)
    args = [
        "fit",
        "TaCoEraser",
        "x.npy",
        "--labels",
        "y.txt",
        "--device",
        "cpu",
        "--out",
        "e.joblib",
        "--n-concepts",
        "3",
    ]
    args += [f"--param={k}={v}" for k, v in params.items() if k != "n_concepts"]
    proc = run(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ref = TaCoEraser(**params, device="cpu").fit(X, y)
    summary = json.loads((tmp_path / "e.json").read_text())
    assert summary["removed_concepts"] == [int(c) for c in ref.removed_concepts_]

    proc = run(
        "evaluate", "e.joblib", "x.npy", "--labels", "y.txt", "--json", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    after = leakage(ref.transform(X), y, random_state=0)
    assert metrics["leakage_linear_after"] == pytest.approx(after["linear"])
    assert metrics["leakage_linear_before"] > 0.9  # the attribute is linear in X
    assert metrics["leakage_linear_after"] < metrics["leakage_linear_before"]
    assert metrics["erasure_score"] == pytest.approx(ref.score(X, y))


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = run("demo", "--out", out, "--n-concepts", 6, "--top", 2, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    head = next(
        i
        for i, ln in enumerate(lines)
        if ln.split()[:3] == ["class", "rank", "concept"]
    )
    rows = [ln.split() for ln in lines[head + 2 : head + 22]]
    assert [int(r[0]) for r in rows] == [c for c in range(10) for _ in range(2)]
    for r in rows:
        lo, hi = float(r[4].strip("[,")), float(r[5].strip("]"))
        assert 0 <= int(r[2]) < 6 and lo <= float(r[3]) <= hi
    # each digit's top concept carries most of its logit's variance
    assert all(float(r[3]) > 0.3 for r in rows[::2])
    csv = (out / "top_concepts.csv").read_text().splitlines()
    assert len(csv) == 21
    for name in ("importance.png", "concepts.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == [
        "concepts.png",
        "importance.png",
        "top_concepts.csv",
    ]


# ------------------------------------------------------------ failure modes
def _failure_cases(folder, A):
    folder = Path(folder)
    np.save(folder / "a.npy", A)
    np.save(folder / "neg.npy", A - 1.0)
    np.save(folder / "y.npy", np.arange(A.shape[0] - 1) % 2)
    np.save(folder / "three.npy", A[None])
    np.save(folder / "narrow.npy", A[:, :5])
    nan = A.copy()
    nan[50, 0] = np.nan  # in the sixth chunk of 10 rows, after codes were written
    np.save(folder / "nan.npy", nan)
    np.savez(folder / "two.npz", x=A, z=A)
    (folder / "text.npy").write_text("not an array")
    (folder / "data.csv").write_text("1,2\n")
    return {
        "missing file": ["fit", "NMFConcepts", "nope.npy", "--out", "m.joblib"],
        "unknown method": ["fit", "NMFConcept", "a.npy", "--out", "m.joblib"],
        "unknown parameter": [
            "fit",
            "NMFConcepts",
            "a.npy",
            "--param",
            "foo=1",
            "--out",
            "m.joblib",
        ],
        "invalid value": [
            "fit",
            "NMFConcepts",
            "a.npy",
            "--param",
            "solver=bogus",
            "--out",
            "m.joblib",
        ],
        "rejected in fit": [
            "fit",
            "NMFConcepts",
            "neg.npy",
            "--device",
            "cpu",
            "--out",
            "m.joblib",
        ],
        "wrong dataset key": [
            "fit",
            "NMFConcepts",
            "two.npz",
            "--dataset",
            "w",
            "--out",
            "m.joblib",
        ],
        "no dataset key": ["fit", "NMFConcepts", "two.npz", "--out", "m.joblib"],
        "labels wrong length": [
            "fit",
            "TaCoEraser",
            "a.npy",
            "--labels",
            "y.npy",
            "--out",
            "m.joblib",
        ],
        "labels missing": ["fit", "TaCoEraser", "a.npy", "--out", "m.joblib"],
        "needs a head": ["fit", "SobolConceptImportance", "a.npy", "--out", "m.joblib"],
        "not an array": ["fit", "NMFConcepts", "text.npy", "--out", "m.joblib"],
        "unknown format": ["fit", "NMFConcepts", "data.csv", "--out", "m.joblib"],
        "not 2-D": ["fit", "NMFConcepts", "three.npy", "--out", "m.joblib"],
        "model not a model": ["transform", "text.npy", "a.npy", "--out", "c.npy"],
        "output folder missing": [
            "transform",
            "m0.joblib",
            "a.npy",
            "--out",
            "no/c.npy",
        ],
        "wrong width": ["transform", "m0.joblib", "narrow.npy", "--out", "c.npy"],
        "fails mid-stream": [
            "transform",
            "m0.joblib",
            "nan.npy",
            "--out",
            "c.npy",
            "--chunk-size",
            "10",
        ],
        "argparse error": ["fit", "NMFConcepts", "a.npy", "--bogus"],
        "bad int option": ["fit", "NMFConcepts", "a.npy", "--n-concepts", "x"],
    }


@pytest.fixture(scope="module")
def failure_folder(tmp_path_factory, acts):
    folder = tmp_path_factory.mktemp("fail")
    cases = _failure_cases(folder, acts)
    joblib.dump(NMFConcepts(**NMF_KW).fit(acts), folder / "m0.joblib")
    return folder, cases


CASES = [
    "missing file",
    "unknown method",
    "unknown parameter",
    "invalid value",
    "rejected in fit",
    "wrong dataset key",
    "no dataset key",
    "labels wrong length",
    "labels missing",
    "needs a head",
    "not an array",
    "unknown format",
    "not 2-D",
    "model not a model",
    "output folder missing",
    "wrong width",
    "fails mid-stream",
    "argparse error",
    "bad int option",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_with_one_line(case, failure_folder, capsys, monkeypatch):
    folder, cases = failure_folder
    monkeypatch.chdir(folder)
    before = sorted(os.listdir(folder))
    try:
        status = main(cases[case])
    except SystemExit as exc:  # argparse errors exit from parse_args
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], err
    assert "Traceback" not in err
    assert sorted(os.listdir(folder)) == before  # nothing written, no temp file


def test_failure_messages_name_the_problem(failure_folder, capsys, monkeypatch):
    folder, cases = failure_folder
    monkeypatch.chdir(folder)
    expected = {
        "unknown method": "did you mean NMFConcepts?",
        "unknown parameter": "unknown parameter 'foo' for NMFConcepts",
        "invalid value": "'solver' parameter of NMFConcepts",
        "rejected in fit": "NMFConcepts.fit: ",
        "wrong dataset key": "has no array 'w' (it holds: 'x', 'z')",
        "no dataset key": "choose one with --dataset KEY",
        "labels wrong length": "has 119 labels but the activations have 120 rows",
        "needs a head": "use the Python API",
        "wrong width": "fitted on 10",
    }
    for case, text in expected.items():
        assert main(cases[case]) == 2
        assert text in capsys.readouterr().err, case


def test_debug_shows_the_traceback_and_subprocess_exit_status(failure_folder):
    folder, cases = failure_folder
    proc = run(*cases["missing file"], cwd=folder)
    assert proc.returncode == 2 and proc.stdout == ""
    assert (
        proc.stderr == "skconcepts fit: error: activations file not found: nope.npy\n"
    )
    proc = run(*cases["missing file"], "--debug", cwd=folder)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("skconcepts fit: error:")


def test_estimator_names_are_case_insensitive():
    from skconcepts.utils import all_estimators

    for name, cls in all_estimators():
        assert find_estimator(name.lower()) == (name, cls)
        assert find_estimator(name.upper()) == (name, cls)


def test_parameters_are_python_literals(tmp_path, acts, monkeypatch, capsys):
    np.save(tmp_path / "a.npy", acts)
    monkeypatch.chdir(tmp_path)
    status = main(
        [
            "fit",
            "TopKSAE",
            "a.npy",
            "--n-concepts",
            "8",
            "--device",
            "cpu",
            "--param",
            "top_k=2",
            "--param",
            "activation=topk",
            "--param",
            "max_epochs=2",
            "--param",
            "random_state=0",
            "--out",
            "sae.joblib",
        ]
    )
    assert status == 0, capsys.readouterr().err
    sae = joblib.load("sae.joblib")
    assert sae.top_k == 2 and sae.activation == "topk" and sae.max_epochs == 2
    summary = json.loads(Path("sae.json").read_text())
    assert summary["mean_l0"] <= 2.0  # TopK with k=2 keeps at most two codes


def test_help_lists_commands_and_formats(capsys):
    parser = build_parser()
    text = parser.format_help()
    for command in ("demo", "fit", "transform", "evaluate", "export"):
        assert command in text
    sub = parser._subparsers._group_actions[0].choices
    assert ".safetensors" in sub["fit"].format_help()
    assert "Examples" in sub["fit"].format_help()


def test_export_writes_saelens_that_loads_back(acts, tmp_path, capsys):
    from skconcepts import TopKSAE
    from skconcepts.sae import load_pretrained

    sae = TopKSAE(8, 2, max_epochs=3, batch_size=32, random_state=0, device="cpu")
    sae.fit(acts)
    joblib.dump(sae, tmp_path / "sae.joblib")
    assert main(["export", str(tmp_path / "sae.joblib"), str(tmp_path / "out")]) == 0
    assert sorted(os.listdir(tmp_path / "out")) == [
        "cfg.json",
        "sae_weights.safetensors",
    ]
    back = load_pretrained(tmp_path / "out")
    np.testing.assert_allclose(back.transform(acts), sae.transform(acts), atol=1e-5)
    # not an SAE, or a folder in the way: status 2, one line, nothing written
    joblib.dump(NMFConcepts(**NMF_KW).fit(acts), tmp_path / "nmf.joblib")
    capsys.readouterr()
    for model, out in (("nmf.joblib", "o2"), ("sae.joblib", "out")):
        before = sorted(os.listdir(tmp_path))
        assert main(["export", str(tmp_path / model), str(tmp_path / out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error:" in err[0], err
        assert sorted(os.listdir(tmp_path)) == before


# ---------------------------------------------------------- progress policy
class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self._tty = tty

    def isatty(self):
        return self._tty


def test_progress_policy(monkeypatch):
    monkeypatch.delenv("SKCONCEPTS_PROGRESS", raising=False)
    tty, log = _Stream(True), _Stream(False)
    # verbose=0 never draws; verbose>=2 draws anywhere
    assert not progress_enabled(0, file=tty)
    assert progress_enabled(2, file=log)
    # verbose=1 draws on a terminal only, and never in a test run
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    assert progress_enabled(1, file=tty)
    assert not progress_enabled(1, file=log)
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "x")
    assert not progress_enabled(1, file=tty)
    # force decides alone; the environment variable comes before verbose
    assert progress_enabled(0, force=True, file=log)
    assert not progress_enabled(2, force=False, file=tty)
    monkeypatch.setenv("SKCONCEPTS_PROGRESS", "1")
    assert progress_enabled(0, file=log)
    assert not progress_enabled(0, force=False, file=log)
    monkeypatch.setenv("SKCONCEPTS_PROGRESS", "never")
    assert not progress_enabled(2, file=tty)


def test_progress_bar_draws_only_when_enabled(monkeypatch):
    monkeypatch.delenv("SKCONCEPTS_PROGRESS", raising=False)
    shown, hidden = _Stream(False), _Stream(False)
    assert list(
        progress(range(5), desc="step", verbose=2, leave=True, file=shown)
    ) == list(range(5))
    assert list(progress(range(5), desc="step", verbose=1, file=hidden)) == list(
        range(5)
    )
    assert "step" in shown.getvalue() and "5/5" in shown.getvalue()
    assert hidden.getvalue() == ""
    with progress(
        10, desc="rows", force=True, leave=True, file=shown
    ) as bar:  # by hand
        bar.update(4)
        bar.update(6)
    assert "10/10" in shown.getvalue()


def test_bfloat16_tensors_are_read_as_float32(tmp_path):
    import torch
    from safetensors.torch import save_file

    from skconcepts._cli import load_array

    t = torch.arange(12, dtype=torch.float32).reshape(3, 4).to(torch.bfloat16)
    save_file({"acts": t}, str(tmp_path / "a.safetensors"))
    torch.save(t, tmp_path / "a.pt")
    for name in ("a.safetensors", "a.pt"):
        X, _ = load_array(tmp_path / name)
        assert X.dtype == np.float32
        np.testing.assert_array_equal(X, np.arange(12).reshape(3, 4))
    # a float32 safetensors tensor is memory-mapped, not copied
    save_file({"acts": t.float()}, str(tmp_path / "b.safetensors"))
    X, _ = load_array(tmp_path / "b.safetensors")
    assert isinstance(X, np.memmap)
    np.testing.assert_array_equal(X, np.arange(12).reshape(3, 4))


def test_long_loops_draw_progress_bars(monkeypatch, capsys):
    """SAE epochs, NMF iterations, Sobol' samples and TaCo's search draw a bar
    when asked."""
    from sklearn.decomposition import PCA

    from skconcepts import SobolConceptImportance, TopKSAE

    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 5))
    y = (X[:, 0] > 0).astype(int)
    monkeypatch.setenv("SKCONCEPTS_PROGRESS", "1")
    TopKSAE(4, 2, max_epochs=2, batch_size=30, random_state=0, device="cpu").fit(X)
    NMFConcepts(2, max_iter=5, random_state=0).fit(np.abs(X))
    SobolConceptImportance(
        PCA(3), lambda a: np.tanh(a).sum(1), n_designs=4, random_state=0
    ).fit(X)
    TaCoEraser(n_concepts=3, n_designs=4, max_samples=20, random_state=0).fit(X, y)
    err = capsys.readouterr().err
    for desc in ("TopKSAE", "NMFConcepts", "SobolConceptImportance", "TaCoEraser: r"):
        assert desc in err, (desc, err[-500:])
    monkeypatch.setenv("SKCONCEPTS_PROGRESS", "0")
    SobolConceptImportance(
        PCA(3), lambda a: np.tanh(a).sum(1), n_designs=4, random_state=0
    ).fit(X)
    assert "SobolConceptImportance" not in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_streamed_passes_draw_progress_bars(monkeypatch, capsys, tmp_path):
    """The streamed PCA / SVD / ICA passes over an on-disk array, TaCo's codes
    and fit_chunks draw a bar with the right total when asked, none by
    default under pytest."""
    from sklearn.decomposition import IncrementalPCA

    from skconcepts import fit_chunks
    from skconcepts.decomposition._streamed import STREAMED

    rng = np.random.RandomState(0)
    X = np.lib.format.open_memmap(tmp_path / "x.npy", "w+", np.float64, (100, 6))
    X[:] = rng.normal(size=(100, 6))
    y = (X[:, 0] > 0).astype(int)
    monkeypatch.delenv("SKCONCEPTS_PROGRESS", raising=False)

    def run_all(verbose=0):
        for name in ("pca", "svd", "ica"):
            STREAMED[name](X, 3, 25, 0, verbose=verbose)  # 4 batches
        fit_chunks(IncrementalPCA(3), X, chunk_size=20, n_epochs=2, verbose=verbose)
        chunks = [X[:50], X[50:]]
        fit_chunks(IncrementalPCA(3), chunks, n_epochs=3, verbose=verbose)
        TaCoEraser(
            n_concepts=3, n_designs=4, max_samples=20, batch_size=40, random_state=0
        ).set_params(verbose=verbose).fit(X, y)

    run_all()  # the default: no bar (and verbose=1 under pytest: none either)
    assert capsys.readouterr().err == ""
    run_all(verbose=1)  # TaCo's log lines only
    err = capsys.readouterr().err
    assert "streamed" not in err and "fit_chunks" not in err and "%|" not in err
    monkeypatch.setenv("SKCONCEPTS_PROGRESS", "1")
    run_all()
    err = capsys.readouterr().err
    for desc, total in (
        ("streamed PCA", "/4 ["),
        ("streamed SVD", "/4 ["),
        ("streamed ICA: whitening", "/4 ["),
        ("fit_chunks: IncrementalPCA", "/10 ["),  # 2 epochs x 5 chunks
        ("fit_chunks: IncrementalPCA", "/6 ["),  # 3 epochs x 2 chunks
        ("TaCoEraser: codes", "/3 ["),  # 100 rows by 40
    ):
        lines = [s for s in err.replace("\r", "\n").splitlines() if desc in s]
        assert any(total in s for s in lines), (desc, total, lines[-3:])
