"""load_pretrained / save_pretrained on files written here in each format.

Codes and reconstructions are compared with the source library's forward
pass: overcomplete's own ``encode`` / ``decode`` (installed in the test
environment), and for SAELens, sparsify and dictionary_learning (which do not
import without their model-hooking dependencies) a NumPy re-implementation of
their published forward pass, written below from their source.
"""

import json
import os
import pickle
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skconcepts.sae import TopKSAE, load_pretrained, save_pretrained

D_IN, D_SAE, K = 12, 24, 4


def _rng(seed=0):
    return np.random.RandomState(seed)


def _X(seed=0, n=64):
    return _rng(seed + 100).normal(size=(n, D_IN)).astype(np.float32)


def _weights(seed=0):
    """Random weights; decoder rows with norms far from 1 (0.2 .. 3)."""
    r = _rng(seed)
    W_dec = r.normal(size=(D_SAE, D_IN))
    W_dec *= (r.uniform(0.2, 3.0, size=D_SAE) / np.linalg.norm(W_dec, axis=1))[:, None]
    return {
        "W_enc": r.normal(size=(D_IN, D_SAE)) / np.sqrt(D_IN),
        "b_enc": r.normal(size=D_SAE) * 0.3,
        "W_dec": W_dec,
        "b_dec": r.normal(size=D_IN) * 0.5,
        "threshold": r.uniform(-0.2, 0.8, size=D_SAE),  # some <= 0
    }


def _f32(a):
    return torch.as_tensor(np.ascontiguousarray(a, dtype=np.float32))


def _relu(a):
    return np.maximum(a, 0.0)


def _topk_relu(pre, k):
    """Keep the k largest entries of each row, then ReLU."""
    out = np.zeros_like(pre)
    idx = np.argsort(-pre, axis=1)[:, :k]
    np.put_along_axis(out, idx, _relu(np.take_along_axis(pre, idx, 1)), 1)
    return out


def _check(est, X, codes, recon, norms, atol=1e-4):
    """Our codes = source codes * decoder norms; same reconstruction."""
    U = est.transform(X)
    np.testing.assert_allclose(U, codes * norms, atol=atol, rtol=1e-4)
    np.testing.assert_allclose(est.code_scale_, norms, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(est.components_, axis=1), 1, atol=1e-5)
    safe = np.where(est.code_scale_ > 0, est.code_scale_, 1)
    np.testing.assert_allclose(U / safe, codes, atol=atol, rtol=1e-4)
    np.testing.assert_allclose(est.inverse_transform(U), recon, atol=atol, rtol=1e-4)
    # the test is not vacuous: codes are sparse but not all zero
    assert 0 < (U != 0).mean() < 1


# --------------------------------------------------------------------------
# SAELens


def _write_saelens(folder, arch, w, **cfg_extra):
    os.makedirs(folder, exist_ok=True)
    cfg = {
        "architecture": arch,
        "d_in": D_IN,
        "d_sae": D_SAE,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "hook_name": "blocks.0.hook_resid_pre",
        **cfg_extra,
    }
    with open(os.path.join(folder, "cfg.json"), "w") as f:
        json.dump(cfg, f)
    save_file(
        {k: _f32(v) for k, v in w.items()},
        os.path.join(folder, "sae_weights.safetensors"),
    )
    return folder


def _saelens_forward(w, X, arch, k=None, apply_b_dec=True):
    """SAELens's SAE.encode / decode (sae_lens/saes/*_sae.py), in NumPy."""
    x = X.astype(np.float64)
    sae_in = x - w["b_dec"] * apply_b_dec
    if arch == "gated":
        gate = (sae_in @ w["W_enc"] + w["b_gate"]) > 0
        mag = _relu(sae_in @ (w["W_enc"] * np.exp(w["r_mag"])) + w["b_mag"])
        z = gate * mag
    else:
        pre = sae_in @ w["W_enc"] + w["b_enc"]
        if arch == "standard":
            z = _relu(pre)
        elif arch == "topk":
            z = _topk_relu(pre, k)
        else:  # jumprelu: relu(pre) * (pre > threshold)
            z = _relu(pre) * (pre > w["threshold"])
    return z, z @ w["W_dec"] + w["b_dec"]


@pytest.mark.parametrize("apply_b_dec", [True, False])
@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu", "gated"])
def test_saelens_matches_forward_pass(tmp_path, arch, apply_b_dec):
    w = _weights(1)
    if arch != "jumprelu":
        w.pop("threshold")
    if arch == "gated":
        r = _rng(2)
        w.pop("b_enc")
        w.update(
            b_gate=r.normal(size=D_SAE) * 0.3,
            r_mag=r.normal(size=D_SAE) * 0.5,
            b_mag=r.normal(size=D_SAE) * 0.3,
        )
    extra = {"k": K} if arch == "topk" else {}
    folder = _write_saelens(
        tmp_path / "sae", arch, w, apply_b_dec_to_input=apply_b_dec, **extra
    )
    est = load_pretrained(folder)
    X = _X(1)
    z, rec = _saelens_forward(w, X, arch, K, apply_b_dec)
    _check(est, X, z, rec, np.linalg.norm(w["W_dec"], axis=1))
    if arch == "topk":
        assert est.activation == "topk" and est.top_k == K
        assert ((est.transform(X) != 0).sum(1) <= K).all()
    # the file itself (not the folder) and an explicit format load the same
    same = load_pretrained(folder / "sae_weights.safetensors", format="saelens")
    np.testing.assert_array_equal(same.transform(X), est.transform(X))


def test_saelens_expected_average_only_in_is_identity(tmp_path):
    # SAELens applies no run-time normalisation for this setting at inference
    w = _weights(3)
    w.pop("threshold")
    folder = _write_saelens(
        tmp_path / "s", "standard", w, normalize_activations="expected_average_only_in"
    )
    X = _X(3)
    z, rec = _saelens_forward(w, X, "standard")
    _check(load_pretrained(folder), X, z, rec, np.linalg.norm(w["W_dec"], axis=1))


def test_saelens_legacy_topk_and_scaling_factor(tmp_path):
    # SAELens < 6: top-k under "standard" with activation_fn_str, and the
    # finetuning scaling factor that multiplies the codes before W_dec
    w = _weights(14)
    w.pop("threshold")
    scaling = _rng(15).uniform(0.5, 2.0, size=D_SAE)
    folder = _write_saelens(
        tmp_path / "old",
        "standard",
        {**w, "scaling_factor": scaling},
        activation_fn_str="topk",
        activation_fn_kwargs={"k": K},
        finetuning_scaling_factor=True,
    )
    X = _X(14)
    z, _ = _saelens_forward(w, X, "topk", K)
    rec = (z * scaling) @ w["W_dec"] + w["b_dec"]
    norms = np.linalg.norm(w["W_dec"] * scaling[:, None], axis=1)
    est = load_pretrained(folder)
    assert est.activation == "topk" and est.top_k == K
    _check(est, X, z, rec, norms)
    _write_saelens(folder, "standard", w, activation_fn_str="tanh-relu")
    with pytest.raises(ValueError, match="activation_fn='tanh-relu'"):
        load_pretrained(folder)


def test_saelens_bfloat16_file(tmp_path):
    # many published SAEs are stored in bfloat16: read as float32 state
    w = _weights(18)
    w.pop("threshold")
    folder = _write_saelens(tmp_path / "bf", "topk", w, k=K, dtype="bfloat16")
    bf = {k: _f32(v).to(torch.bfloat16) for k, v in w.items()}
    save_file(bf, folder / "sae_weights.safetensors")
    est = load_pretrained(folder)
    assert est.components_.dtype == np.float32
    w16 = {k: v.double().numpy() for k, v in bf.items()}
    X = _X(18)
    z, rec = _saelens_forward(w16, X, "topk", K)
    _check(est, X, z, rec, np.linalg.norm(w16["W_dec"], axis=1))


@pytest.mark.parametrize("activation", ["topk", "relu", "jumprelu", "batchtopk"])
def test_save_load_round_trip(tmp_path, activation):
    X = _X(4, n=300)
    sae = TopKSAE(16, 3, activation=activation, max_epochs=3, random_state=0)
    sae.fit(X)
    sae._code_scale = sae._code_scale * np.linspace(0.5, 2, 16).astype(np.float32)
    save_pretrained(sae, tmp_path / "out")
    cfg = json.loads((tmp_path / "out" / "cfg.json").read_text())
    assert cfg["d_in"] == D_IN and cfg["d_sae"] == 16
    loaded = load_pretrained(tmp_path / "out")
    np.testing.assert_allclose(loaded.transform(X), sae.transform(X), atol=1e-5)
    np.testing.assert_allclose(loaded.score(X), sae.score(X), atol=1e-6)
    # the written file is a SAELens SAE: its forward pass gives our decoding
    from safetensors.torch import load_file

    w = {
        k: v.double().numpy()
        for k, v in load_file(tmp_path / "out" / "sae_weights.safetensors").items()
    }
    arch = cfg["architecture"]
    z, rec = _saelens_forward(w, X, arch, cfg.get("k"))
    np.testing.assert_allclose(rec, sae.inverse_transform(sae.transform(X)), atol=1e-4)


def test_gated_round_trip_and_refit_refused(tmp_path):
    w = _weights(5)
    w.pop("threshold")
    w.pop("b_enc")
    r = _rng(6)
    w.update(
        b_gate=r.normal(size=D_SAE) * 0.3,
        r_mag=r.normal(size=D_SAE) * 0.5,
        b_mag=r.normal(size=D_SAE) * 0.3,
    )
    est = load_pretrained(_write_saelens(tmp_path / "g", "gated", w))
    save_pretrained(est, tmp_path / "g2")
    again = load_pretrained(tmp_path / "g2")
    X = _X(5)
    np.testing.assert_allclose(again.transform(X), est.transform(X), atol=1e-5)
    with pytest.raises(NotImplementedError, match="refitted"):
        est.fit(X)


# --------------------------------------------------------------------------
# sparsify


def _write_sparsify(folder, w, k=K, **cfg_extra):
    os.makedirs(folder, exist_ok=True)
    cfg = {
        "expansion_factor": 2,
        "normalize_decoder": True,
        "num_latents": D_SAE,
        "k": k,
        "multi_topk": False,
        "skip_connection": False,
        "d_in": D_IN,
        **cfg_extra,
    }
    with open(os.path.join(folder, "cfg.json"), "w") as f:
        json.dump(cfg, f)
    tensors = {
        "encoder.weight": _f32(w["W_enc"].T),
        "encoder.bias": _f32(w["b_enc"]),
        "W_dec": _f32(w["W_dec"]),
        "b_dec": _f32(w["b_dec"]),
    }
    save_file(tensors, os.path.join(folder, "sae.safetensors"))
    return folder


def test_sparsify_matches_forward_pass(tmp_path):
    # sparsify's SparseCoder: relu(encoder(x - b_dec)).topk(k), then
    # top_acts @ W_dec[top_indices] + b_dec
    w = _weights(7)
    folder = _write_sparsify(tmp_path / "layers.0", w)
    X = _X(7)
    x = X.astype(np.float64)
    post = _relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"])
    z = _topk_relu(post, K)
    _check(
        load_pretrained(folder),
        X,
        z,
        z @ w["W_dec"] + w["b_dec"],
        np.linalg.norm(w["W_dec"], axis=1),
    )


# --------------------------------------------------------------------------
# dictionary_learning


def _dl_state(arch, w, threshold=0.3):
    if arch == "jumprelu":
        return {
            "W_enc": _f32(w["W_enc"]),
            "b_enc": _f32(w["b_enc"]),
            "W_dec": _f32(w["W_dec"]),
            "b_dec": _f32(w["b_dec"]),
            "threshold": _f32(w["threshold"]),
        }
    sd = {
        "encoder.weight": _f32(w["W_enc"].T),
        "encoder.bias": _f32(w["b_enc"]),
        "decoder.weight": _f32(w["W_dec"].T),
    }
    if arch == "standard":
        sd["bias"] = _f32(w["b_dec"])
    else:
        sd["b_dec"] = _f32(w["b_dec"])
        sd["k"] = torch.tensor(K, dtype=torch.int)
        sd["threshold"] = torch.tensor(threshold, dtype=torch.float32)
    return sd


def _dl_forward(arch, w, X, threshold=0.3):
    """dictionary_learning's encode / decode (dictionary.py, trainers/)."""
    x = X.astype(np.float64)
    if arch == "jumprelu":  # apply_b_dec_to_input=False
        pre = x @ w["W_enc"] + w["b_enc"]
        z = _relu(pre * (pre > w["threshold"]))
    else:
        post = _relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"])
        if arch == "standard":
            z = post
        elif arch == "topk":
            z = _topk_relu(post, K)
        else:  # BatchTopKSAE.encode(use_threshold=True)
            z = post * (post > threshold)
    return z, z @ w["W_dec"] + w["b_dec"]


_DL_CLASS = {
    "standard": "AutoEncoder",
    "topk": "AutoEncoderTopK",
    "batchtopk": "BatchTopKSAE",
    "jumprelu": "JumpReluAutoEncoder",
}


@pytest.mark.parametrize("arch", ["standard", "topk", "batchtopk", "jumprelu"])
def test_dictionary_learning_matches_forward_pass(tmp_path, arch):
    w = _weights(8)
    folder = tmp_path / "trainer_0"
    folder.mkdir()
    torch.save(_dl_state(arch, w), folder / "ae.pt")
    with open(folder / "config.json", "w") as f:
        json.dump({"trainer": {"dict_class": _DL_CLASS[arch], "k": K}}, f)
    est = load_pretrained(folder)
    X = _X(8)
    z, rec = _dl_forward(arch, w, X)
    _check(est, X, z, rec, np.linalg.norm(w["W_dec"], axis=1))
    # without config.json: the tensors decide (k -> top-k), or architecture=
    os.remove(folder / "config.json")
    guessed = "topk" if arch == "batchtopk" else arch
    est2 = load_pretrained(folder / "ae.pt", architecture=None)
    assert est2.activation == {"standard": "relu"}.get(guessed, guessed)
    est3 = load_pretrained(folder / "ae.pt", architecture=arch)
    np.testing.assert_allclose(est3.transform(X), est.transform(X), atol=1e-6)


# --------------------------------------------------------------------------
# overcomplete: its own encode / decode on the same file


@pytest.fixture(scope="module")
def overcomplete_sae():
    import importlib.util

    if importlib.util.find_spec("overcomplete") is None:
        pytest.skip("overcomplete is not installed")
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    try:
        from bench_sae import _import_overcomplete
    finally:
        sys.path.pop(0)
    stubs = ("torchvision", "torchvision.transforms", "skimage", "skimage.measure")
    before = {name: sys.modules.get(name) for name in stubs}
    _import_overcomplete()  # with the stand-ins of shared/peers.md
    import overcomplete.sae as oc

    # drop the stand-ins again: other libraries probe for torchvision
    for name, mod in before.items():
        if mod is None:
            sys.modules.pop(name, None)

    return oc


def _oc_randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.4)
        if hasattr(model.dictionary, "multiplier"):
            model.dictionary.multiplier.fill_(0.7)  # rows of norm e^0.7


@pytest.mark.parametrize("name", ["TopKSAE", "BatchTopKSAE", "JumpSAE", "RATopKSAE"])
def test_overcomplete_matches_its_encode(tmp_path, overcomplete_sae, name):
    oc = overcomplete_sae
    torch.manual_seed(0)
    kw = {"top_k": K} if name != "JumpSAE" else {}
    if name == "RATopKSAE":
        pts = torch.randn(40, D_IN)
        model = oc.RATopKSAE(D_IN, D_SAE, points=pts, **kw)
    else:
        model = getattr(oc, name)(D_IN, D_SAE, **kw)
    _oc_randomise(model, 3)
    if name == "RATopKSAE":
        with torch.no_grad():
            model.dictionary.W.abs_()
    Xt = torch.as_tensor(_X(9))
    if name == "BatchTopKSAE":
        model.train()
        model.encode(Xt[:16])  # sets running_threshold
    if name == "JumpSAE":
        with torch.no_grad():
            model.thresholds.copy_(torch.linspace(-3, 0, D_SAE))
    model.train()
    model.eval()  # fuses the dictionary, as overcomplete's inference does
    with torch.no_grad():
        _, z = model.encode(Xt)
        rec = model.decode(z)
        D = model.get_dictionary()
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    extra = {"architecture": name}
    if name != "JumpSAE":
        extra["top_k"] = K
    if name == "BatchTopKSAE":
        extra["threshold"] = float(model.running_threshold)
    est = load_pretrained(path, **extra)
    _check(
        est,
        _X(9),
        z.double().numpy(),
        rec.double().numpy(),
        D.detach().norm(dim=1).double().numpy(),
    )


def test_overcomplete_missing_top_k_and_threshold(tmp_path, overcomplete_sae):
    model = overcomplete_sae.TopKSAE(D_IN, D_SAE, top_k=K)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    with pytest.raises(ValueError, match="top_k"):
        load_pretrained(tmp_path / "m.pt")
    with pytest.raises(ValueError, match="running_threshold"):
        load_pretrained(tmp_path / "m.pt", architecture="BatchTopKSAE", top_k=K)


# --------------------------------------------------------------------------
# sparsify and dictionary_learning themselves, where they import
#
# Neither imports as a package without its training / model-hooking
# dependencies (HF datasets, nnsight), so their modules that hold the SAE are
# imported from a bare package object. Skipped unless installed (e.g.
# ``pip install --no-deps eai-sparsify natsort simple_parsing
# docstring_parser accelerate dictionary-learning`` in a throwaway venv).


def _bare_import(module, packages):
    import importlib
    import importlib.util
    import types

    for name in packages:
        if name in sys.modules:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None or spec.submodule_search_locations is None:
            pytest.skip(f"{name} is not installed")
        pkg = types.ModuleType(name)
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules[name] = pkg
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pytest.skip(f"{module} does not import: {exc}")


def _randomise(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def test_sparsify_matches_its_encode(tmp_path):
    sc = _bare_import("sparsify.sparse_coder", ["sparsify"])
    cfg_mod = _bare_import("sparsify.config", ["sparsify"])
    if not hasattr(sc, "SparseCoder"):
        pytest.skip("not EleutherAI's sparsify")
    sae = sc.SparseCoder(D_IN, cfg_mod.SparseCoderConfig(num_latents=D_SAE, k=K))
    _randomise(sae, 16)
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.2, 3.0, D_SAE)[:, None])
    sae.save_to_disk(tmp_path)
    X = _X(16)
    with torch.no_grad():
        enc = sae.encode(torch.as_tensor(X))
        out = sae(torch.as_tensor(X)).sae_out
    z = torch.zeros(len(X), D_SAE).scatter(1, enc.top_indices, enc.top_acts)
    norms = sae.W_dec.detach().norm(dim=1).double().numpy()
    _check(load_pretrained(tmp_path), X, z.double().numpy(), out.numpy(), norms)


@pytest.mark.parametrize("arch", ["standard", "topk", "batchtopk", "jumprelu"])
def test_dictionary_learning_matches_its_encode(tmp_path, arch):
    pkgs = ["dictionary_learning", "dictionary_learning.trainers"]
    if arch == "topk":
        cls = _bare_import("dictionary_learning.trainers.top_k", pkgs).AutoEncoderTopK
    elif arch == "batchtopk":
        mod = _bare_import("dictionary_learning.trainers.batch_top_k", pkgs)
        cls = mod.BatchTopKSAE
    else:
        mod = _bare_import("dictionary_learning.dictionary", pkgs[:1])
        name = {"standard": "AutoEncoder", "jumprelu": "JumpReluAutoEncoder"}[arch]
        cls = getattr(mod, name)
    ae = cls(D_IN, D_SAE, K) if arch in ("topk", "batchtopk") else cls(D_IN, D_SAE)
    _randomise(ae, 17)
    with torch.no_grad():
        if arch == "batchtopk":
            ae.threshold.fill_(0.3)
        if arch == "jumprelu":
            ae.threshold.copy_(torch.linspace(-0.1, 0.5, D_SAE))
    torch.save(ae.state_dict(), tmp_path / "ae.pt")
    X = _X(17)
    with torch.no_grad():
        z = ae.encode(torch.as_tensor(X))
        rec = ae.decode(z)
    W_dec = ae.W_dec if arch == "jumprelu" else ae.decoder.weight.T
    norms = W_dec.detach().norm(dim=1).double().numpy()
    est = load_pretrained(tmp_path, architecture=arch)
    _check(est, X, z.double().numpy(), rec.double().numpy(), norms)


# --------------------------------------------------------------------------
# composition


def test_loaded_sae_composes(tmp_path):
    from skconcepts.importance import SobolConceptImportance

    w = _weights(10)
    w.pop("threshold")
    est = load_pretrained(_write_saelens(tmp_path / "s", "topk", w, k=K))
    X = _X(10, n=80)
    pipe = make_pipeline(FunctionTransformer(lambda a: a), est)
    np.testing.assert_allclose(pipe.transform(X), est.transform(X))
    assert clone(est).get_params()["top_k"] == K
    assert len(est.get_feature_names_out()) == D_SAE
    head_w = _rng(11).normal(size=D_IN)
    sobol = SobolConceptImportance(
        est, lambda a: a @ head_w, prefit=True, n_designs=64, random_state=0
    ).fit(X)
    assert sobol.total_indices_.shape == (D_SAE,)
    assert np.isfinite(sobol.total_indices_).all()
    from skconcepts import TaCoEraser

    y = (X[:, 0] > 0).astype(int)
    eraser = TaCoEraser(
        decomposition=est, prefit=True, n_remove=2, n_designs=8, random_state=0
    ).fit(X, y)
    assert eraser.transform(X).shape == X.shape
    # pickling keeps the loaded state
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.transform(X), est.transform(X))


# --------------------------------------------------------------------------
# malformed files


def _valid_saelens(tmp_path):
    w = _weights(12)
    w.pop("threshold")
    return _write_saelens(tmp_path / "s", "standard", w), w


def test_missing_tensor(tmp_path):
    folder, w = _valid_saelens(tmp_path)
    w.pop("b_enc")
    _write_saelens(folder, "standard", w)
    with pytest.raises(ValueError, match=r"sae_weights\.safetensors.*'b_enc'"):
        load_pretrained(folder)


def test_wrong_shape(tmp_path):
    folder, w = _valid_saelens(tmp_path)
    w["W_dec"] = w["W_dec"][:, :-1]
    _write_saelens(folder, "standard", w)
    with pytest.raises(ValueError, match=r"'W_dec' has shape \(24, 11\)"):
        load_pretrained(folder)


def test_cfg_tensor_mismatch(tmp_path):
    folder, w = _valid_saelens(tmp_path)
    _write_saelens(folder, "standard", w, d_sae=D_SAE + 1)
    with pytest.raises(ValueError, match="'W_dec' has shape"):
        load_pretrained(folder)
    w2 = _weights(13)
    sp = _write_sparsify(tmp_path / "sp", w2, d_in=D_IN + 2)
    with pytest.raises(ValueError, match=r"cfg\.json: d_in=14"):
        load_pretrained(sp)


def test_unknown_architecture_and_settings(tmp_path):
    folder, w = _valid_saelens(tmp_path)
    _write_saelens(folder, "matryoshka_spiral", w)
    with pytest.raises(ValueError, match=r"cfg\.json: unknown architecture"):
        load_pretrained(folder)
    _write_saelens(folder, "standard", w, normalize_activations="layer_norm")
    with pytest.raises(ValueError, match="normalize_activations='layer_norm'"):
        load_pretrained(folder)
    _write_saelens(folder, "topk", w)  # no k
    with pytest.raises(ValueError, match="'k' is missing"):
        load_pretrained(folder)
    with pytest.raises(ValueError, match="format="):
        load_pretrained(folder, format="hub")


def test_pickle_where_safetensors_expected(tmp_path):
    folder, w = _valid_saelens(tmp_path)
    torch.save({"W_enc": _f32(w["W_enc"])}, folder / "sae_weights.safetensors")
    with pytest.raises(
        ValueError, match=r"sae_weights\.safetensors: not a safetensors"
    ):
        load_pretrained(folder)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_code_is_not_executed(tmp_path):
    path = tmp_path / "ae.pt"
    with open(path, "wb") as f:
        pickle.dump({"encoder.weight": _Evil()}, f)
    with pytest.raises(ValueError, match=r"ae\.pt.*weights_only=True"):
        load_pretrained(path, format="dictionary_learning")


def test_not_a_state_dict_and_empty_folder(tmp_path):
    torch.save([torch.zeros(3)], tmp_path / "x.pt")
    with pytest.raises(ValueError, match="state dict"):
        load_pretrained(tmp_path / "x.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no sae_weights.safetensors"):
        load_pretrained(tmp_path / "empty")


def test_save_refuses_non_sae(tmp_path):
    from sklearn.decomposition import PCA

    with pytest.raises(TypeError, match="skconcepts SAE"):
        save_pretrained(PCA(2).fit(_X()), tmp_path)
    with pytest.raises(ValueError, match="fitted"):
        save_pretrained(TopKSAE(4, 2), tmp_path)


def test_code_scale_follows_the_fitted_state():
    # a loaded SAE refitted in place: code_scale_ is the new decoder norms
    from skconcepts.sae import TopKSAE

    X = np.random.RandomState(0).normal(size=(120, 6))
    est = TopKSAE(8, 2, max_epochs=2, batch_size=40, random_state=0, device="cpu")
    assert not hasattr(est, "code_scale_")
    est.fit(X)
    np.testing.assert_array_equal(est.code_scale_, est._code_scale)
    est._code_scale = est._code_scale * 2
    np.testing.assert_array_equal(est.code_scale_, est._code_scale)
