"""UniversalSAE: one concept space for several models, against ground truth.

The synthetic "models" are random linear maps, of different widths, of one
set of sparse non-negative codes (the universal concepts), each plus codes of
its own (model-specific concepts) with their own directions: the concepts
and which models hold them are known.
"""

import joblib
import numpy as np
import pytest
import torch

from skconcepts.sae import TopKSAE, UniversalSAE

WIDTHS = (16, 24)
N_UNIVERSAL, N_PRIVATE = 6, 2
# 6 universal + 2 x 2 specific concepts; 6 spare atoms
PARAMS = dict(
    n_concepts=16,
    top_k=3,
    feature_groups=list(WIDTHS),
    max_epochs=40,
    batch_size=128,
    learning_rate=1e-2,
    device="cpu",
)


def make_models(seed, n=2000, n_private=N_PRIVATE, p=0.2, noise=0.01):
    """``X = [A_0 | A_1]``, the unit directions and each block's shared share.

    ``A_j = S U_j + P_j V_j + noise + offset_j``: ``S`` the universal codes
    (shared by the models), ``P_j`` model ``j``'s own codes; codes are
    non-zero with probability ``p``, uniform in [1, 2] when they fire.
    """
    rng = np.random.RandomState(seed)
    S = rng.uniform(1, 2, (n, N_UNIVERSAL)) * (rng.rand(n, N_UNIVERSAL) < p)
    blocks, dirs, shared = [], [], []
    for d in WIDTHS:
        U = rng.randn(N_UNIVERSAL, d)
        U /= np.linalg.norm(U, axis=1, keepdims=True)
        P = rng.uniform(1, 2, (n, n_private)) * (rng.rand(n, n_private) < p)
        V = rng.randn(n_private, d)
        V /= np.linalg.norm(V, axis=1, keepdims=True)
        A = S @ U + P @ V + noise * rng.randn(n, d) + rng.randn(d)
        blocks.append(A)
        dirs.append((U, V))
        shared.append((S @ U).var(0).sum() / A.var(0).sum())
    return np.hstack(blocks).astype(np.float32), dirs, np.array(shared)


def best_match(directions, decoder):
    """Per true direction: the best cosine with a decoder row and its atom."""
    norms = np.linalg.norm(decoder, axis=1, keepdims=True)
    cos = directions @ (decoder / np.maximum(norms, 1e-12)).T
    return cos.max(axis=1), cos.argmax(axis=1)


@pytest.fixture(scope="module")
def shared_only():
    X, dirs, _ = make_models(0, n_private=0)
    params = dict(PARAMS, n_concepts=8)  # 6 concepts, 2 spare atoms
    return X, dirs, UniversalSAE(random_state=0, **params).fit(X)


@pytest.fixture(scope="module")
def with_private():
    X, dirs, shared = make_models(1)
    return X, dirs, shared, UniversalSAE(random_state=1, **PARAMS).fit(X)


# ------------------------------------------------------------- the method
def test_cross_reconstruction_from_every_model(shared_only):
    # everything is shared: the codes read from either model reconstruct
    # both. Fails when each step reconstructs only its source model (the
    # codes of the two encoders are then not index-aligned: 0.2-0.5 off
    # the diagonal)
    X, dirs, est = shared_only
    assert est.cross_r2_.shape == (2, 2)
    assert est.cross_r2_.min() >= 0.9, est.cross_r2_
    for j, (U, _) in enumerate(dirs):
        cos, atoms = best_match(U, est.decoders_[j])
        assert cos.min() >= 0.9
        # no concept comes out specific to one model
        assert (est.concept_scope_[atoms] == "universal").sum() >= N_UNIVERSAL - 1
        assert not any(s.startswith("model") for s in est.concept_scope_[atoms])


def test_universal_and_specific_concepts_labelled(with_private):
    X, dirs, shared, est = with_private
    # a model's own concepts cannot be read from the other model: the cross
    # R^2 is bounded by the shared share of the target; it reaches 90% of it
    off = np.array([est.cross_r2_[0, 1], est.cross_r2_[1, 0]])
    assert np.all(off >= 0.9 * shared[[1, 0]]), (est.cross_r2_, shared)
    assert np.all(off <= shared[[1, 0]] + 0.02)  # nothing beyond the shared part
    assert np.diag(est.cross_r2_).min() >= 0.9
    for j, (U, V) in enumerate(dirs):
        cos_u, atoms_u = best_match(U, est.decoders_[j])
        cos_v, atoms_v = best_match(V, est.decoders_[j])
        assert cos_u.min() >= 0.9 and cos_v.min() >= 0.9
        # a universal concept can be split into two atoms that both decode
        # it everywhere but are each read by one model ("partial"): on 2 of
        # 5 seeds (0-4), 1 or 2 of the 6 concepts; never labelled specific
        scope_u = est.concept_scope_[atoms_u]
        assert (scope_u == "universal").sum() >= N_UNIVERSAL - 2
        assert set(scope_u) <= {"universal", "partial"}
        assert set(est.concept_scope_[atoms_v]) == {f"model{j}"}
        # a specific concept writes (almost) nothing into the other model
        assert est.concept_decoder_share_[j, atoms_v].min() >= 0.9
        # ... and the other model's encoder cannot read it
        assert est.concept_source_share_[j, atoms_v].min() >= 0.9
    # the paper's firing entropy: ~0 for the specific concepts, high for the
    # universal ones read from both
    _, atoms_v0 = best_match(dirs[0][1], est.decoders_[0])
    assert np.nanmax(est.firing_entropy_[atoms_v0]) <= 0.5


def test_codes_read_one_block_and_decode_all(with_private):
    X, _, _, est = with_private
    d0 = WIDTHS[0]
    Z1 = est.transform(X, source=1)
    # source 1 reads only model 1's block
    X_noisy = X.copy()
    X_noisy[:, :d0] = np.random.RandomState(0).randn(len(X), d0)
    np.testing.assert_array_equal(est.transform(X_noisy, source=1), Z1)
    assert np.all((Z1 != 0).sum(axis=1) <= est.top_k)
    # the default is model 0; "mean" averages the sources' codes
    np.testing.assert_array_equal(est.transform(X), est.transform(X, source=0))
    Zm = est.transform(X, source="mean")
    np.testing.assert_allclose(Zm, (est.transform(X, source=0) + Z1) / 2, atol=1e-6)
    # inverse_transform decodes every model; the scale convention holds
    Xh = est.inverse_transform(Z1)
    assert Xh.shape == X.shape
    np.testing.assert_allclose(
        Xh, Z1 @ est.components_ + est.pre_bias_, rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(np.linalg.norm(est.components_, axis=1), 1, atol=1e-5)
    blocks = est.decoders_
    assert [b.shape for b in blocks] == [(16, w) for w in WIDTHS]
    np.testing.assert_array_equal(np.hstack(blocks), est.components_)
    # cross_r2_ is the R^2 of each block decoded from each source's codes
    A1, A1h = X[:, d0:], Xh[:, d0:]
    r2 = 1 - ((A1 - A1h) ** 2).sum() / ((A1 - A1.mean(0)) ** 2).sum()
    assert r2 == pytest.approx(est.cross_r2_[1, 1], abs=1e-4)
    assert est.reconstruction_r2_ == pytest.approx(est.score(X), abs=1e-6)
    assert est.encoder_bias_.shape == (2, 16)
    np.testing.assert_array_equal(est.feature_groups_, WIDTHS)
    assert est.n_models_ == 2


def test_persistence_round_trip(with_private, tmp_path):
    X, _, _, est = with_private
    path = tmp_path / "usae.joblib"
    joblib.dump(est, path)
    loaded = joblib.load(path)
    for source in (0, 1, "mean"):
        np.testing.assert_array_equal(
            loaded.transform(X, source=source), est.transform(X, source=source)
        )
    np.testing.assert_array_equal(loaded.cross_r2_, est.cross_r2_)
    # partial_fit after loading resumes from the fitted state (one epoch)
    loaded.partial_fit(X[:512])
    assert loaded.n_iter_ == est.n_iter_ + 1
    assert loaded.cross_r2_[0, 0] >= est.cross_r2_[0, 0] - 0.05


def test_one_group_is_a_topk_sae():
    # feature_groups=None: one model, the loss and step of TopKSAE
    X, _, _ = make_models(2, n=600)
    X = X.astype(np.float64)
    params = dict(n_concepts=12, top_k=3, max_epochs=3, batch_size=64, device="cpu")
    u = UniversalSAE(random_state=0, **params).fit(X)
    t = TopKSAE(random_state=0, **params).fit(X)
    np.testing.assert_allclose(u.components_, t.components_, atol=1e-6)
    np.testing.assert_allclose(u.transform(X), t.transform(X), atol=1e-6)
    assert u.cross_r2_[0, 0] == pytest.approx(t.reconstruction_r2_, abs=1e-9)
    assert set(u.concept_scope_) <= {"universal", "dead"}


def test_source_sampling_reproducible_and_cycle():
    X, _, _ = make_models(3, n=600)
    params = dict(PARAMS, max_epochs=2)
    a = UniversalSAE(random_state=5, **params).fit(X)
    b = UniversalSAE(random_state=5, **params).fit(X)
    np.testing.assert_array_equal(a.components_, b.components_)
    c = UniversalSAE(random_state=5, source_sampling="cycle", **params).fit(X)
    assert not np.array_equal(a.components_, c.components_)
    # early stopping: the validation R^2 encodes from every model
    e = UniversalSAE(random_state=5, early_stopping=True, **params).fit(X)
    assert np.isfinite(e.history_[-1]["val_r2"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_then_cpu_inference():
    # fitted on the GPU, the NumPy state gives the same codes on the CPU
    X, _, _ = make_models(5, n=600)
    est = UniversalSAE(random_state=0, **dict(PARAMS, device="cuda", max_epochs=3))
    est.fit(X)
    Z, cross = est.transform(X, source=1), est.cross_r2_
    est.set_params(device="cpu")
    np.testing.assert_allclose(est.transform(X, source=1), Z, atol=1e-4)
    assert isinstance(est.components_, np.ndarray) and np.all(np.isfinite(cross))


# -------------------------------------------------------------- bad input
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_bad_feature_groups_and_source():
    X, _, _ = make_models(4, n=200)
    params = dict(n_concepts=8, top_k=2, max_epochs=1, device="cpu")
    with pytest.raises(ValueError, match="sums to 39, but X has 40 features"):
        UniversalSAE(feature_groups=[16, 23], **params).fit(X)
    with pytest.raises(ValueError, match="must be >= 1"):
        UniversalSAE(feature_groups=[40, 0], **params).fit(X)
    with pytest.raises(ValueError, match="integers"):
        UniversalSAE(feature_groups=[15.5, 24.5], **params).fit(X)
    with pytest.raises(ValueError, match="1-D"):
        UniversalSAE(feature_groups=[[16, 24]], **params).fit(X)
    groups = [16, 24]
    est = UniversalSAE(feature_groups=groups, random_state=0, **params).fit(X)
    assert groups == [16, 24]  # the parameter is not modified
    with pytest.raises(ValueError, match=r"source=2 is out of range.*0\.\.1"):
        est.transform(X, source=2)
    with pytest.raises(ValueError, match="out of range"):
        est.transform(X, source=-1)
    with pytest.raises(ValueError, match="'mean'"):
        est.transform(X, source="all")
    with pytest.raises(ValueError, match="'mean'"):
        est.transform(X, source=True)
    est.set_params(feature_groups=[20, 20])
    with pytest.raises(ValueError, match="differ from those of the fitted"):
        est.partial_fit(X)
