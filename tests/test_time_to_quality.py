"""The defaults reach the quality targets of issue 14 (no timing here).

The benchmark (``benchmarks/bench_sae.py ttq``, ``benchmarks/bench_nmf.py``)
shows the time; these tests check that a user who keeps the defaults gets
the quality: scikit-learn's NMF error within 1%, and an SAE held-out R^2 of
0.9 on a small sparse mixture.
"""

import numpy as np
import pytest
from sklearn.decomposition import NMF

from skconcepts import NMFConcepts
from skconcepts.datasets import make_sparse_atoms
from skconcepts.sae import ArchetypalSAE, TopKSAE
from skconcepts.sae._session import lr_factor


def _low_rank(n, d, rank, seed):
    rng = np.random.RandomState(seed)
    X = (rng.rand(n, rank) ** 4) @ rng.rand(rank, d)
    X += 0.05 * X.mean() * rng.rand(n, d)
    return X


@pytest.mark.parametrize("seed", [0, 1])
def test_nmf_defaults_reach_sklearn_error_and_stop_early(seed):
    X = _low_rank(2000, 128, 16, seed)
    sk = NMF(16, init="nndsvda", solver="cd", max_iter=200, random_state=0)
    U = sk.fit_transform(X)
    sk_err = np.linalg.norm(X - U @ sk.components_)
    ours = NMFConcepts(16, init="nndsvda", random_state=0, device="cpu").fit(X)
    assert ours.reconstruction_err_ <= 1.01 * sk_err
    # scikit-learn's ``cd`` meaning of ``tol``: the fit stops on the
    # violation rule well before max_iter (it used to also wait for the
    # error to stall and ran to ~max_iter)
    assert ours.n_iter_ < 200


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nmf_defaults_on_digits_stop_at_sklearn_quality(seed):
    """Digits (k=16): scikit-learn's ``cd`` runs to ``max_iter`` (its
    violation stays above ``tol``); our defaults stop before, on the
    objective-stall rule, at its error x 1.01 or better. Without that rule
    the fit runs to ``max_iter`` (the violation rule does not fire either)."""
    from sklearn.datasets import load_digits

    X = load_digits().data
    sk = NMF(16, random_state=seed).fit(X)
    ours = NMFConcepts(16, random_state=seed, device="cpu").fit(X)
    assert ours.reconstruction_err_ <= 1.01 * sk.reconstruction_err_
    assert ours.n_iter_ < 150


def test_nmf_larger_tol_stops_earlier():
    """``tol`` is a stopping tolerance: larger stops earlier, at a larger error;
    ``tol=0`` runs to ``max_iter`` (as in scikit-learn)."""
    X = _low_rank(2000, 128, 16, 0)
    tols = (1e-2, 1e-3, 1e-4, 1e-5, 0.0)
    fits = [NMFConcepts(16, tol=t, random_state=0, device="cpu").fit(X) for t in tols]
    its = [f.n_iter_ for f in fits]
    errs = [f.reconstruction_err_ for f in fits]
    assert its == sorted(its)
    assert its[0] < its[2] < its[3] < its[4] == 200
    assert errs == sorted(errs, reverse=True)
    assert errs[0] > 1.05 * errs[-1]


def test_lr_schedule_warmup_constant_final_decay():
    total, warmup = 100, 5
    f = [lr_factor(s, warmup, total) for s in range(total)]
    assert f[0] == pytest.approx(1 / warmup)
    assert f[warmup] == 1.0
    # constant up to the last 20% of the steps (not a cosine over the fit)
    assert all(v == 1.0 for v in f[warmup:80])
    assert f[90] == pytest.approx(0.5)
    assert f[-1] < 0.1
    # partial_fit (total=None): constant after the warm-up
    assert lr_factor(10_000, warmup, None) == 1.0


def _heldout_r2(est, Xtr, Xte):
    est.fit(Xtr)
    Xh = est.inverse_transform(est.transform(Xte))
    return 1 - ((Xte - Xh) ** 2).sum() / ((Xte - Xte.mean(0)) ** 2).sum()


@pytest.fixture(scope="module")
def mixture():
    X, _, _ = make_sparse_atoms(6000, 64, 128, 4, random_state=0)
    return X[:5000], X[5000:]


@pytest.mark.parametrize(
    "make",
    [
        lambda: TopKSAE(256, 8),
        lambda: TopKSAE(256, 8, activation="batchtopk"),
        lambda: ArchetypalSAE(256, 8),
    ],
    ids=["topk", "batchtopk", "archetypal"],
)
def test_sae_defaults_reach_heldout_r2(mixture, make):
    est = make().set_params(random_state=0, device="cpu")
    assert _heldout_r2(est, *mixture) >= 0.9


def test_default_learning_rate_and_schedule_reach_r2_in_few_epochs(mixture):
    """The time-to-quality defaults (issue 14): R^2 0.9 in 15 short epochs.

    5000 rows are 5 steps of 1024 per epoch. Measured held-out R^2 after 15
    epochs: 0.933 with the defaults (learning rate 1.5e-2, warm-up /
    constant / 20% linear decay); 0.588 with the former defaults (4e-3 and a
    cosine decay to 0 over the fit), 0.672 with the new schedule at 4e-3 and
    0.834 with the cosine at 1.5e-2: the test fails without either change.
    """
    est = TopKSAE(256, 8, max_epochs=15, random_state=0, device="cpu")
    assert _heldout_r2(est, *mixture) >= 0.9
