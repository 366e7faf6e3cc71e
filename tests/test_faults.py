"""Fault injection: fits that diverge, are interrupted or killed, inputs that
overflow, pickles from another version (issue 15, docs/guide/faults.md)."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.exceptions import InconsistentVersionWarning

from skconcepts import (
    ConvexNMFConcepts,
    NMFConcepts,
    SemiNMFConcepts,
    SobolConceptImportance,
    TopKSAE,
)
from skconcepts._faults import (
    R2_FLOOR,
    DivergenceError,
    InconsistentSkconceptsVersionWarning,
)


def _X(n=200, d=8, seed=0):
    rng = np.random.RandomState(seed)
    return rng.rand(n, 4) @ rng.rand(4, d) + 0.01 * rng.rand(n, d)


# --------------------------------------------------------------- overflow


@pytest.mark.parametrize("cls", [NMFConcepts, SemiNMFConcepts, ConvexNMFConcepts])
def test_overflow_is_a_value_error_not_a_linalg_error(cls):
    # the case: X[0, 0] = 3e38 in float32 ended in a LinAlgError
    # ("input matrix contained non-finite values") from an SVD
    X = _X().astype(np.float32)
    X[0, 0] = 3e38
    with pytest.raises(ValueError, match="overflow float32.*Rescale"):
        cls(3, random_state=0).fit(X)
    # the same data rescaled fits
    cls(3, random_state=0, max_iter=20).fit(X / 3e38)


def test_overflow_limit_scales_with_the_gram_size():
    from skconcepts._faults import check_overflow

    X = np.ones((100, 4), dtype=np.float32)
    X[0, 0] = 1e19  # 1e38 * 100 rows > 3.4e38
    with pytest.raises(ValueError, match="overflow"):
        check_overflow(X)
    X[0, 0] = 1e17  # 1e34 * 100 = 1e36: safe
    check_overflow(X)


# --------------------------------------------------------------- versions


def _head(U):
    return U.sum(1)


def _stale(est, version):
    state = est.__getstate__()
    assert state["_skconcepts_version"] == __import__("skconcepts").__version__
    state["_skconcepts_version"] = version
    return type(est).__new__(type(est)), state


@pytest.mark.parametrize(
    "make",
    [
        lambda: NMFConcepts(3, random_state=0, max_iter=20).fit(_X()),
        lambda: TopKSAE(8, 2, max_epochs=2, random_state=0).fit(_X()),
        lambda: SobolConceptImportance(
            NMFConcepts(3, random_state=0, max_iter=20),
            _head,
            n_designs=8,
            random_state=0,
        ).fit(_X()),
    ],
    ids=["NMFConcepts", "TopKSAE", "SobolConceptImportance"],
)
def test_pickle_from_another_version_warns(make):
    est = make()
    # same version: silent, and the attribute does not stay on the object
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = pickle.loads(pickle.dumps(est))
    assert not hasattr(loaded, "_skconcepts_version")
    assert not hasattr(est, "_skconcepts_version")
    # another version: scikit-learn's kind of warning, naming both versions
    new, state = _stale(est, "0.0.1")
    with pytest.warns(InconsistentSkconceptsVersionWarning, match="0.0.1") as rec:
        new.__setstate__(state)
    assert isinstance(rec[0].message, InconsistentVersionWarning)
    assert rec[0].message.original_version == "0.0.1"
    # a pickle from before versions were stored warns too
    new, state = _stale(est, None)
    state.pop("_skconcepts_version")
    with pytest.warns(InconsistentSkconceptsVersionWarning, match="unknown"):
        new.__setstate__(state)


# ------------------------------------------------------------- divergence


def test_diverged_sae_raises_naming_the_fixes():
    # the case returned with train_r2 = -9e6 and no warning
    X = np.random.RandomState(0).randn(2000, 32).astype(np.float32)
    sae = TopKSAE(
        n_concepts=64, top_k=4, learning_rate=1e3, max_grad_norm=None, max_epochs=3
    )
    with pytest.raises(DivergenceError, match="learning_rate.*max_grad_norm.*scale"):
        sae.fit(X * 1e6)
    assert not hasattr(sae, "components_")
    # the same estimator with a sane learning rate and clipping fits
    sae.set_params(learning_rate=4e-3, max_grad_norm=1.0, random_state=0).fit(X)
    assert sae.reconstruction_r2_ > 0.1


class _PoisonSAE:
    """Fault injection: NaN weights after epoch ``at``."""

    def __init__(self, at):
        self.at = at

    def on_epoch_end(self, est, session, record):
        if session.epoch == self.at:
            import torch

            with torch.no_grad():
                session.module.enc_weight.fill_(float("nan"))


def test_nan_weights_stop_the_sae_and_partial_fit_restarts_clean():
    X = _X()
    # NaN weights after epoch 1: epoch 2's loss is NaN, the built-in check
    # stops the fit there
    sae = TopKSAE(8, 2, max_epochs=4, random_state=0, callbacks=[_PoisonSAE(1)])
    with pytest.raises(DivergenceError, match="epoch 2.*nan"):
        sae.fit(X)
    # poisoned at the last epoch: the loss was finite, the exported state is
    # not; no model with non-finite state is returned either way
    sae = TopKSAE(8, 2, max_epochs=2, random_state=0, callbacks=[_PoisonSAE(2)])
    with pytest.raises(DivergenceError, match="non-finite"):
        sae.fit(X)
    # a diverged partial_fit drops its session: the next call restarts from
    # the fitted state of before, not from the NaN weights
    sae = TopKSAE(8, 2, max_epochs=4, random_state=0).fit(X)
    before = sae.components_.copy()
    sae.set_params(callbacks=[_PoisonSAE(5)])
    with pytest.raises(DivergenceError):
        sae.partial_fit(X)
    np.testing.assert_allclose(sae.components_, before)
    sae.set_params(callbacks=None).partial_fit(X)
    assert np.isfinite(sae.components_).all()


@pytest.mark.parametrize("cls", [NMFConcepts, SemiNMFConcepts, ConvexNMFConcepts])
def test_nan_in_an_nmf_solver_raises(cls, monkeypatch):
    from skconcepts.decomposition import _solvers

    X = _X()
    est = cls(3, max_iter=30, random_state=0).fit(X)
    assert est.interrupted_ is False
    calls = []

    def poisoned(step):
        def step_(self, *args, **kwargs):
            out = step(self, *args, **kwargs)
            calls.append(1)
            if len(calls) == 3:
                self.W = self.W * float("nan")
            return out

        return step_

    for name in ("NonnegHALS", "NonnegMU", "SignedLS", "ConvexMU"):
        update = getattr(_solvers, name, None)
        if update is not None:
            monkeypatch.setattr(update, "step", poisoned(update.step))
    with pytest.raises(DivergenceError, match="diverged at epoch 3"):
        cls(3, max_iter=30, random_state=0).fit(X)


class _FlipDictionary:
    """Fault injection: the dictionary negated after the last epoch."""

    def on_train_end(self, est, session):
        import torch

        with torch.no_grad():
            session.module.dictionary.atoms.mul_(-1)


def test_far_from_converged_warns():
    from sklearn.exceptions import ConvergenceWarning

    X = _X()
    # a model worse than the mean (R^2 < 0) but finite: a ConvergenceWarning
    sae = TopKSAE(8, 2, max_epochs=3, random_state=0, callbacks=[_FlipDictionary()])
    with pytest.warns(ConvergenceWarning, match="far from converged"):
        sae.fit(X)
    assert R2_FLOOR < sae.reconstruction_r2_ < 0
    # a fit that converged: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        TopKSAE(8, 2, max_epochs=3, random_state=0).fit(X)


# -------------------------------------------------------------- interrupt


class _RaiseAt:
    """Fault injection: ``KeyboardInterrupt`` from a callback at epoch ``at``."""

    def __init__(self, at):
        self.at = at

    def on_epoch_end(self, est, session, record):
        if session.epoch == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize(
    "make",
    [
        lambda cb: TopKSAE(8, 2, max_epochs=10, random_state=0, callbacks=cb),
        lambda cb: NMFConcepts(3, max_iter=50, tol=0, random_state=0, callbacks=cb),
        lambda cb: SemiNMFConcepts(3, max_iter=50, tol=0, random_state=0, callbacks=cb),
        lambda cb: ConvexNMFConcepts(
            3, max_iter=50, tol=0, random_state=0, callbacks=cb
        ),
    ],
    ids=["TopKSAE", "NMFConcepts", "SemiNMFConcepts", "ConvexNMFConcepts"],
)
def test_keyboard_interrupt_keeps_what_was_learnt(make):
    X = _X()
    est = make([_RaiseAt(3)])
    with pytest.warns(UserWarning, match="interrupted.*learnt so far"):
        est.fit(X)  # no KeyboardInterrupt escapes
    assert est.interrupted_ is True and est.n_iter_ == 3
    # fitted with the state of epoch 3: the same as a fit a callback stopped
    # there (same schedule)
    ref = make([_StopAt(3)]).fit(X)
    np.testing.assert_allclose(est.components_, ref.components_, rtol=1e-6, atol=1e-9)
    assert np.isfinite(est.transform(X)).all()
    assert est.score(X) == pytest.approx(ref.score(X), rel=1e-6)
    if hasattr(est, "history_"):
        assert est.history_[-1]["interrupted"] is True
        assert "interrupted" not in est.history_[0]
    # a fit that is not interrupted says so
    assert ref.interrupted_ is False


class _StopAt:
    def __init__(self, at):
        self.at = at

    def on_epoch_end(self, est, session, record):
        return session.epoch == self.at


_SIGINT_CHILD = r"""
import json, signal, sys, time, warnings
import numpy as np
# a shell that starts the suite in the background makes SIGINT ignored in
# its children (the library then rightly leaves it ignored): restore Python's
# handler so that the parent's SIGINT reaches the fit
signal.signal(signal.SIGINT, signal.default_int_handler)
from skconcepts import NMFConcepts, TopKSAE

class Ready:
    def on_epoch_end(self, est, session, record):
        if session.epoch == 2:
            print("ready", flush=True)
        time.sleep(0.02)

X = np.random.RandomState(0).rand(300, 8)
if sys.argv[1] == "sae":
    est = TopKSAE(8, 2, max_epochs=100000, random_state=0, callbacks=[Ready()])
else:
    est = NMFConcepts(3, max_iter=100000, tol=0, random_state=0, callbacks=[Ready()])
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    est.fit(X)
hist = getattr(est, "history_", None)
print(json.dumps({
    "interrupted": est.interrupted_,
    "n_iter": est.n_iter_,
    "finite": bool(np.isfinite(est.transform(X)).all()),
    "last": None if hist is None else hist[-1].get("interrupted"),
    "warned": any("interrupted" in str(x.message) for x in w),
}), flush=True)
"""


@pytest.mark.parametrize("kind", ["sae", "nmf"])
def test_sigint_stops_the_fit_at_the_end_of_a_step(kind, tmp_path):
    import json
    import os
    import signal
    import subprocess
    import sys

    script = tmp_path / "child.py"
    script.write_text(_SIGINT_CHILD)
    env = dict(
        os.environ,
        PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), kind],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert res["interrupted"] and res["warned"] and res["finite"]
    assert 2 <= res["n_iter"] < 100000
    if kind == "sae":
        assert res["last"] is True


def test_sae_partial_fit_interrupted():
    X = _X()
    sae = TopKSAE(8, 2, random_state=0, callbacks=[_RaiseAt(1)])
    with pytest.warns(UserWarning, match="partial_fit was interrupted"):
        sae.partial_fit(X)
    assert sae.interrupted_ and sae.history_[-1]["interrupted"]
    sae.set_params(callbacks=None).partial_fit(X)
    assert not sae.interrupted_ and np.isfinite(sae.components_).all()


# ------------------------------------------------------------- checkpoint


def test_checkpoint_every_seconds_and_nmf(tmp_path):
    import joblib

    from skconcepts.sae import Checkpoint

    X = _X()
    # every_seconds=0: due at every epoch end; a huge interval: never
    ck = Checkpoint(str(tmp_path / "a-{epoch}.joblib"), every=None, every_seconds=0)
    TopKSAE(8, 2, max_epochs=3, random_state=0, callbacks=[ck]).fit(X)
    assert [p[-8:] for p in ck.saved_] == ["1.joblib", "2.joblib", "3.joblib"]
    ck = Checkpoint(str(tmp_path / "b.joblib"), every=None, every_seconds=1e9)
    TopKSAE(8, 2, max_epochs=3, random_state=0, callbacks=[ck]).fit(X)
    assert ck.saved_ == []
    with pytest.raises(ValueError, match="every"):
        TopKSAE(8, 2, max_epochs=1, callbacks=[Checkpoint("x", every=None)]).fit(X)
    # NMF: the checkpoint of iteration 4 transforms as a fit stopped there and
    # partial_fit continues from it
    ck = Checkpoint(str(tmp_path / "nmf-{epoch}.joblib"), every=4)
    NMFConcepts(3, max_iter=8, tol=0, random_state=0, callbacks=[ck]).fit(X)
    saved = joblib.load(ck.saved_[0])
    ref = NMFConcepts(3, max_iter=8, tol=0, random_state=0, callbacks=[_StopAt(4)])
    ref.fit(X)
    assert saved.n_iter_ == 4
    np.testing.assert_allclose(saved.components_, ref.components_, rtol=1e-6)
    np.testing.assert_allclose(saved.transform(X), ref.transform(X), rtol=1e-5)
    saved.partial_fit(X)
    assert np.isfinite(saved.components_).all() and saved.n_iter_ == 5


def test_failed_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    import joblib

    from skconcepts.sae import Checkpoint, _callbacks

    X = _X()
    path = tmp_path / "sae.joblib"
    ck = Checkpoint(str(path))
    TopKSAE(8, 2, max_epochs=2, random_state=0, callbacks=[ck]).fit(X)
    good = path.read_bytes()

    def broken(obj, f):  # a write that dies half-way (disk full, kill, ...)
        f.write(good[: len(good) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(_callbacks.joblib, "dump", broken)
    with pytest.raises(OSError, match="space"):
        TopKSAE(8, 2, max_epochs=2, random_state=1, callbacks=[ck]).fit(X)
    assert path.read_bytes() == good  # untouched, still loads
    assert joblib.load(path).n_iter_ == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae.joblib"]


_KILL_CHILD = r"""
import io, sys, time, types
import joblib
import numpy as np
from skconcepts.sae import Checkpoint, TopKSAE, _callbacks

data, path, mode = sys.argv[1:4]
X = np.load(data, mmap_mode="r")

if mode == "slow-save":  # every save takes a while, announced when it starts
    def slow_dump(obj, f):
        buf = io.BytesIO()
        joblib.dump(obj, buf)
        raw = buf.getvalue()
        print("saving", flush=True)
        step = len(raw) // 8 + 1
        for i in range(0, len(raw), step):
            f.write(raw[i : i + step])
            f.flush()
            time.sleep(0.05)
    _callbacks.joblib = types.SimpleNamespace(dump=slow_dump)

class Progress:
    def on_epoch_end(self, est, session, record):
        print("epoch", session.epoch, flush=True)
        time.sleep(0.02)

est = TopKSAE(16, 4, max_epochs=40, batch_size=128, random_state=0,
              callbacks=[Checkpoint(path), Progress()])
est.fit(X)
print("done", flush=True)
"""


def _child(tmp_path, data, path, mode):
    import os
    import subprocess
    import sys

    script = tmp_path / "kill_child.py"
    script.write_text(_KILL_CHILD)
    env = dict(
        os.environ,
        PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    return subprocess.Popen(
        [sys.executable, str(script), str(data), str(path), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _kill_at(proc, line, count=1):
    """SIGKILL ``proc`` once it printed ``line`` ``count`` times."""
    seen = 0
    try:
        for out in proc.stdout:
            if out.strip() == line:
                seen += 1
                if seen == count:
                    break
        else:
            raise AssertionError(f"the child ended first: {proc.stderr.read()}")
    finally:
        proc.kill()
        proc.wait()


def _memmap(tmp_path, n=2000, d=12, seed=0):
    rng = np.random.RandomState(seed)
    atoms = rng.randn(16, d)
    codes = rng.rand(n, 16) * (rng.rand(n, 16) < 0.25)
    X = (codes @ atoms + 0.01 * rng.randn(n, d)).astype(np.float32)
    path = tmp_path / "X.npy"
    np.save(path, X)
    return path, np.load(path, mmap_mode="r")


def test_sigkill_mid_fit_resumes_from_the_last_checkpoint(tmp_path):
    import joblib

    data, X = _memmap(tmp_path)
    ckpt = tmp_path / "sae.joblib"
    proc = _child(tmp_path, data, ckpt, "normal")
    _kill_at(proc, "epoch 8")
    sae = joblib.load(ckpt)  # the last complete save
    assert 8 <= sae.n_iter_ < sae.max_epochs
    sae.set_params(callbacks=None)
    for _ in range(sae.max_epochs - sae.n_iter_):
        sae.partial_fit(X)
    assert sae.n_iter_ == sae.max_epochs
    full = TopKSAE(16, 4, max_epochs=40, batch_size=128, random_state=0).fit(X)
    # at least the quality of the uninterrupted fit (measured: 0.924 resumed,
    # 0.872 uninterrupted: partial_fit keeps the learning rate constant where
    # fit decays it)
    assert sae.score(X) >= full.score(X) - 0.02
    assert full.score(X) > 0.8


def test_sigkill_during_a_save_never_leaves_a_half_written_checkpoint(tmp_path):
    import joblib

    data, X = _memmap(tmp_path, n=200)
    ckpt = tmp_path / "sae.joblib"
    # killed during the first save: no checkpoint at all (a hidden .tmp file)
    _kill_at(_child(tmp_path, data, ckpt, "slow-save"), "saving", 1)
    assert not ckpt.exists()
    assert [p.name for p in tmp_path.glob("sae.joblib*")] == []
    # killed during the third save: the second one, complete
    _kill_at(_child(tmp_path, data, ckpt, "slow-save"), "saving", 3)
    sae = joblib.load(ckpt)
    assert sae.n_iter_ == 2 and np.isfinite(sae.transform(X)).all()
