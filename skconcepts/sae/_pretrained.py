"""Load and save sparse autoencoders trained by other libraries.

:func:`load_pretrained` reads local files written by SAELens, sparsify,
dictionary_learning or overcomplete and returns a fitted
:class:`~skconcepts.sae.TopKSAE` (or :class:`_GatedSAE` for SAELens gated
SAEs) whose ``transform`` / ``inverse_transform`` reproduce the source
library's forward pass; :func:`save_pretrained` writes an SAE of this package
in SAELens format. Nothing is downloaded and nothing is executed from a file:
safetensors are read as tensors, and PyTorch pickles with
``torch.load(weights_only=True)``.

Every source SAE is brought to the form ``z = s * sigma(E (x - b_pre) +
b_enc)`` and ``x_hat = z D + b_pre`` with unit-norm rows of ``D``
(``components_``) and ``s`` the source decoder row norms (``code_scale_``):
the sparsity rule sees the source pre-activations (same selection, same
thresholds) and the reconstruction is the source's. An encoder that does not
subtract ``b_pre`` from its input gets the equivalent bias
``b_enc + E b_pre``.
"""

import json
import os
import pickle

import numpy as np
import torch

from ._topk import TopKSAE

_FORMATS = ("saelens", "sparsify", "dictionary_learning", "overcomplete")


# --------------------------------------------------------------------------
# file reading


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot be read as a JSON config ({exc}).") from exc
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: the config must be a JSON object.")
    return cfg


def _read_safetensors(path):
    """Tensors of a safetensors file as float NumPy arrays (bf16 widened)."""
    from safetensors import SafetensorError, safe_open

    try:
        out = {}
        with safe_open(path, framework="pt") as f:
            for name in f.keys():
                out[name] = f.get_tensor(name)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(
            f"{path}: not a safetensors file ({exc}); the format expects "
            "tensors saved with safetensors, not a pickle."
        ) from exc
    return out


def _read_torch(path):
    """A state dict from ``torch.load(weights_only=True)`` (no code runs)."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise ValueError(
            f"{path}: cannot be read as a state dict of tensors with "
            f"torch.load(weights_only=True) ({type(exc).__name__}: {exc}). "
            "Save the model's state_dict(), not the model object."
        ) from exc
    if not isinstance(sd, dict) or not all(isinstance(k, str) for k in sd):
        raise ValueError(f"{path}: expected a state dict (a dict of named tensors).")
    return sd


def _get(tensors, name, path, shape=None):
    """``tensors[name]`` as a float64 array, checked against ``shape``."""
    if name not in tensors:
        raise ValueError(f"{path}: missing tensor {name!r} (found {sorted(tensors)}).")
    t = tensors[name]
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{path}: {name!r} is not a tensor.")
    a = t.detach().to(torch.float64).cpu().numpy()
    if shape is not None and a.shape != tuple(shape):
        raise ValueError(
            f"{path}: tensor {name!r} has shape {a.shape}, expected {tuple(shape)} "
            "(from the config and the other tensors)."
        )
    return a


def _dtype_of(tensors):
    for t in tensors.values():
        if isinstance(t, torch.Tensor) and t.dtype == torch.float64:
            return np.float64
    return np.float32


def _cfg_int(cfg, key, path, default=None):
    v = cfg.get(key, default)
    if v is None:
        raise ValueError(f"{path}: config field {key!r} is missing.")
    if isinstance(v, bool) or not float(v).is_integer() or int(v) < 1:
        raise ValueError(f"{path}: config field {key!r}={v!r} must be an int >= 1.")
    return int(v)


# --------------------------------------------------------------------------
# building the estimator


def _build(
    *,
    W_enc,
    b_enc,
    W_dec,
    b_pre,
    activation,
    top_k=None,
    threshold=None,
    center_input=True,
    dtype=np.float32,
    cls=TopKSAE,
    extra=None,
):
    """A fitted estimator from source weights (``W_enc`` is ``(k, d)``).

    ``center_input=False``: the source encodes ``x`` itself, not
    ``x - b_pre``; the bias is folded so that the pre-activations match.
    """
    k, d = W_enc.shape
    if not center_input:
        b_enc = b_enc + W_enc @ b_pre
    norms = np.linalg.norm(W_dec, axis=1)
    D = W_dec / np.where(norms > 0, norms, 1.0)[:, None]
    if top_k is None:
        top_k = min(8, k)
    est = cls(n_concepts=k, top_k=int(top_k), activation=activation, device="cpu")
    est.components_ = D.astype(dtype)
    est._code_scale = norms.astype(dtype)  # read as code_scale_
    est.encoder_weights_ = np.ascontiguousarray(W_enc, dtype=dtype)
    est.encoder_bias_ = np.asarray(b_enc, dtype=dtype)
    est.pre_bias_ = np.asarray(b_pre, dtype=dtype)
    est.threshold_ = None if threshold is None else np.asarray(threshold, dtype=dtype)
    for name, value in (extra or {}).items():
        setattr(est, name, np.asarray(value, dtype=dtype))
    est.n_features_in_ = d
    est.history_ = []
    est.n_iter_ = 0
    est.n_steps_ = 0
    return est


class _GatedSAE(TopKSAE):
    """A gated SAE (Rajamanoharan et al., 2024) loaded from SAELens.

    ``z = s * 1[E xc + b_gate > 0] * relu((E * m) xc + b_mag)`` with
    ``xc = x - b_pre`` and ``m = exp(r_mag)`` per atom; decoding is that of
    :class:`TopKSAE`. ``encoder_weights_`` / ``encoder_bias_`` hold the gate
    path, ``magnitude_scale_`` (``m``) and ``magnitude_bias_`` (``b_mag``) the
    magnitude path. Inference only: ``fit`` would train a plain ReLU SAE and
    is refused.
    """

    def fit(self, X, y=None):
        raise NotImplementedError(
            "A gated SAE loaded with load_pretrained cannot be refitted; fit a "
            "TopKSAE(activation='relu') instead."
        )

    def partial_fit(self, X, y=None):
        return self.fit(X, y)

    def _device_state(self, device, dtype):
        state = super()._device_state(device, dtype)
        for name in ("magnitude_scale_", "magnitude_bias_"):
            state[name] = torch.as_tensor(
                np.asarray(getattr(self, name)), dtype=dtype, device=device
            )
        return state

    def _encode(self, Xb, state):
        module = state["module"]
        xc = Xb - module.b_pre
        lin = xc @ module.enc_weight.t()
        gate = (lin + module.enc_bias) > 0
        mag = torch.relu(lin * state["magnitude_scale_"] + state["magnitude_bias_"])
        codes = mag * gate
        scale = state.get("scale")
        return codes if scale is None else codes * scale


# --------------------------------------------------------------------------
# SAELens


def _load_saelens(folder):
    cfg_path = os.path.join(folder, "cfg.json")
    w_path = os.path.join(folder, "sae_weights.safetensors")
    cfg = _read_json(cfg_path)
    tensors = _read_safetensors(w_path)
    arch = cfg.get("architecture", "standard")
    d_in = _cfg_int(cfg, "d_in", cfg_path)
    d_sae = _cfg_int(cfg, "d_sae", cfg_path)
    norm = cfg.get("normalize_activations", "none") or "none"
    if norm in ("constant_norm_rescale", "layer_norm"):
        raise ValueError(
            f"{cfg_path}: normalize_activations={norm!r} rescales every row "
            "before encoding and after decoding, which a linear decoder cannot "
            "represent. Normalise the rows of X yourself and load a copy of the "
            "config with normalize_activations='none'."
        )
    if norm not in ("none", "expected_average_only_in"):
        raise ValueError(
            f"{cfg_path}: unknown normalize_activations={norm!r} (expected "
            "'none', 'expected_average_only_in', 'constant_norm_rescale' or "
            "'layer_norm')."
        )
    if cfg.get("rescale_acts_by_decoder_norm"):
        raise ValueError(
            f"{cfg_path}: rescale_acts_by_decoder_norm=True is not supported."
        )
    if cfg.get("reshape_activations", "none") not in ("none", None):
        raise ValueError(
            f"{cfg_path}: reshape_activations={cfg['reshape_activations']!r} is "
            "not supported; flatten the heads of X and use 'none'."
        )
    center = bool(cfg.get("apply_b_dec_to_input", True))
    dtype = _dtype_of(tensors)
    W_dec = _get(tensors, "W_dec", w_path, (d_sae, d_in))
    b_dec = _get(tensors, "b_dec", w_path, (d_in,))
    if "scaling_factor" in tensors:  # SAELens 3-5 finetuning scaling factor
        W_dec = W_dec * _get(tensors, "scaling_factor", w_path, (d_sae,))[:, None]
    if arch == "standard":  # SAELens < 6 put top-k SAEs under "standard"
        fn = cfg.get("activation_fn_str", cfg.get("activation_fn")) or "relu"
        if fn == "topk":
            arch = "topk"
            cfg = {**cfg, "k": (cfg.get("activation_fn_kwargs") or {}).get("k")}
        elif fn != "relu":
            raise ValueError(
                f"{cfg_path}: activation_fn={fn!r} is not supported (expected "
                "'relu' or 'topk')."
            )
    W_enc = _get(tensors, "W_enc", w_path, (d_in, d_sae)).T
    common = dict(W_dec=W_dec, b_pre=b_dec, center_input=center, dtype=dtype)
    if arch == "gated":
        b_gate = _get(tensors, "b_gate", w_path, (d_sae,))
        r_mag = _get(tensors, "r_mag", w_path, (d_sae,))
        b_mag = _get(tensors, "b_mag", w_path, (d_sae,))
        if not center:
            b_mag = b_mag + np.exp(r_mag) * (W_enc @ b_dec)
        return _build(
            W_enc=W_enc,
            b_enc=b_gate,
            activation="relu",
            cls=_GatedSAE,
            extra={"magnitude_scale_": np.exp(r_mag), "magnitude_bias_": b_mag},
            **common,
        )
    b_enc = _get(tensors, "b_enc", w_path, (d_sae,))
    if arch in ("standard", "relu"):
        return _build(W_enc=W_enc, b_enc=b_enc, activation="relu", **common)
    if arch == "topk":
        k = _cfg_int(cfg, "k", cfg_path)
        if k > d_sae:
            raise ValueError(f"{cfg_path}: k={k} exceeds d_sae={d_sae}.")
        return _build(W_enc=W_enc, b_enc=b_enc, activation="topk", top_k=k, **common)
    if arch in ("jumprelu", "batchtopk"):
        thr = _get(tensors, "threshold", w_path, None)
        thr = np.broadcast_to(thr, (d_sae,)) if thr.size in (1, d_sae) else None
        if thr is None:
            raise ValueError(
                f"{w_path}: tensor 'threshold' must have 1 or d_sae={d_sae} values."
            )
        # relu(pre) * (pre > t) equals pre * (pre > max(t, 0))
        return _build(
            W_enc=W_enc,
            b_enc=b_enc,
            activation="jumprelu",
            threshold=np.maximum(thr, 0.0),
            **common,
        )
    raise ValueError(
        f"{cfg_path}: unknown architecture={arch!r} (supported: 'standard', "
        "'topk', 'jumprelu', 'batchtopk' with a threshold, 'gated')."
    )


# --------------------------------------------------------------------------
# sparsify


def _load_sparsify(folder):
    cfg_path = os.path.join(folder, "cfg.json")
    w_path = os.path.join(folder, "sae.safetensors")
    cfg = _read_json(cfg_path)
    tensors = _read_safetensors(w_path)
    for key in ("skip_connection", "transcode"):
        if cfg.get(key):
            raise ValueError(
                f"{cfg_path}: {key}=True (a transcoder / skip connection) is not "
                "supported: its output is not a reconstruction of its input."
            )
    if cfg.get("activation", "topk") != "topk":
        raise ValueError(
            f"{cfg_path}: activation={cfg['activation']!r} is not supported "
            "(only sparsify's 'topk')."
        )
    if "W_skip" in tensors:
        raise ValueError(
            f"{w_path}: tensor 'W_skip' (skip connection) is not supported."
        )
    if "encoder.weight" not in tensors:
        raise ValueError(f"{w_path}: missing tensor 'encoder.weight'.")
    k_lat, d_in = tuple(tensors["encoder.weight"].shape)
    d_cfg = cfg.get("d_in")
    if d_cfg is not None and int(d_cfg) != d_in:
        raise ValueError(
            f"{cfg_path}: d_in={d_cfg} but tensor 'encoder.weight' of {w_path} has "
            f"{d_in} columns."
        )
    n_cfg = cfg.get("num_latents") or 0
    if n_cfg and int(n_cfg) != k_lat:
        raise ValueError(
            f"{cfg_path}: num_latents={n_cfg} but tensor 'encoder.weight' of "
            f"{w_path} has {k_lat} rows."
        )
    k = _cfg_int(cfg, "k", cfg_path)
    if k > k_lat:
        raise ValueError(f"{cfg_path}: k={k} exceeds num_latents={k_lat}.")
    return _build(
        W_enc=_get(tensors, "encoder.weight", w_path, (k_lat, d_in)),
        b_enc=_get(tensors, "encoder.bias", w_path, (k_lat,)),
        W_dec=_get(tensors, "W_dec", w_path, (k_lat, d_in)),
        b_pre=_get(tensors, "b_dec", w_path, (d_in,)),
        activation="topk",
        top_k=k,
        dtype=_dtype_of(tensors),
    )


# --------------------------------------------------------------------------
# dictionary_learning (ae.pt)

_DL_CLASSES = {
    "AutoEncoder": "standard",
    "AutoEncoderTopK": "topk",
    "BatchTopKSAE": "batchtopk",
    "JumpReluAutoEncoder": "jumprelu",
}


def _load_dictionary_learning(path, architecture=None):
    sd = _read_torch(path)
    if architecture is None:
        conf = os.path.join(os.path.dirname(path), "config.json")
        if os.path.exists(conf):
            cls = (_read_json(conf).get("trainer") or {}).get("dict_class")
            if cls is not None:
                if cls not in _DL_CLASSES:
                    raise ValueError(
                        f"{conf}: unknown trainer.dict_class={cls!r} (supported: "
                        f"{sorted(_DL_CLASSES)})."
                    )
                architecture = _DL_CLASSES[cls]
    if architecture is None:
        if "threshold" in sd and "W_enc" in sd:
            architecture = "jumprelu"
        elif "k" in sd:
            architecture = "topk"
        elif "bias" in sd:
            architecture = "standard"
        else:
            raise ValueError(
                f"{path}: unknown dictionary_learning state dict (keys "
                f"{sorted(sd)}); pass architecture=."
            )
    dtype = _dtype_of(sd)
    if architecture == "jumprelu":
        W_enc = _get(sd, "W_enc", path)
        if W_enc.ndim != 2:
            raise ValueError(f"{path}: tensor 'W_enc' must be 2-d (d_in, d_sae).")
        d, k = W_enc.shape
        thr = _get(sd, "threshold", path, (k,))
        # relu(pre * (pre > t)) equals pre * (pre > max(t, 0)); no centring
        return _build(
            W_enc=W_enc.T,
            b_enc=_get(sd, "b_enc", path, (k,)),
            W_dec=_get(sd, "W_dec", path, (k, d)),
            b_pre=_get(sd, "b_dec", path, (d,)),
            activation="jumprelu",
            threshold=np.maximum(thr, 0.0),
            center_input=False,
            dtype=dtype,
        )
    W_enc = _get(sd, "encoder.weight", path)
    if W_enc.ndim != 2:
        raise ValueError(f"{path}: tensor 'encoder.weight' must be 2-d (d_sae, d_in).")
    k, d = W_enc.shape
    b_enc = _get(sd, "encoder.bias", path, (k,))
    W_dec = _get(sd, "decoder.weight", path, (d, k)).T
    if architecture == "standard":
        return _build(
            W_enc=W_enc,
            b_enc=b_enc,
            W_dec=W_dec,
            b_pre=_get(sd, "bias", path, (d,)),
            activation="relu",
            dtype=dtype,
        )
    if architecture not in ("topk", "batchtopk"):
        raise ValueError(
            f"unknown architecture={architecture!r} for dictionary_learning "
            "(expected 'standard', 'topk', 'batchtopk' or 'jumprelu')."
        )
    b_dec = _get(sd, "b_dec", path, (d,))
    top_k = int(_get(sd, "k", path).reshape(-1)[0])
    if not 1 <= top_k <= k:
        raise ValueError(f"{path}: tensor 'k'={top_k} must be in [1, {k}].")
    if architecture == "topk":
        return _build(
            W_enc=W_enc,
            b_enc=b_enc,
            W_dec=W_dec,
            b_pre=b_dec,
            activation="topk",
            top_k=top_k,
            dtype=dtype,
        )
    thr = float(_get(sd, "threshold", path).reshape(-1)[0])
    if thr < 0:
        raise ValueError(
            f"{path}: tensor 'threshold'={thr} is negative: the BatchTopK "
            "threshold was never set during training."
        )
    return _build(
        W_enc=W_enc,
        b_enc=b_enc,
        W_dec=W_dec,
        b_pre=b_dec,
        activation="batchtopk",
        top_k=top_k,
        threshold=np.float64(thr),
        dtype=dtype,
    )


# --------------------------------------------------------------------------
# overcomplete (state dict)


def _load_overcomplete(path, architecture=None, top_k=None, threshold=None):
    sd = _read_torch(path)
    w_key, b_key = "encoder.final_block.0.weight", "encoder.final_block.0.bias"
    if w_key not in sd:
        raise ValueError(
            f"{path}: missing tensor {w_key!r}; only overcomplete's default "
            "linear encoder is supported."
        )
    W_enc = _get(sd, w_key, path)
    if W_enc.ndim != 2:
        raise ValueError(f"{path}: tensor {w_key!r} must be 2-d (nb_concepts, d).")
    k, d = W_enc.shape
    b_enc = _get(sd, b_key, path, (k,)) if b_key in sd else np.zeros(k)
    mult = np.exp(float(_get(sd, "dictionary.multiplier", path).reshape(-1)[0]))
    if "dictionary._weights" in sd:
        W = _get(sd, "dictionary._weights", path, (k, d))
        # overcomplete's default "l2" normalisation of the dictionary
        W = W / (np.linalg.norm(W, axis=1, keepdims=True) + 1e-8)
        D = W * mult
    elif "dictionary.C" in sd:
        C = _get(sd, "dictionary.C", path)
        if C.ndim != 2 or C.shape[1] != d:
            raise ValueError(f"{path}: tensor 'dictionary.C' must be (n, {d}).")
        Wa = _get(sd, "dictionary.W", path, (k, C.shape[0]))
        Wa = np.maximum(Wa, 0.0)
        Wa = Wa / (Wa.sum(axis=1, keepdims=True) + 1e-8)
        D = (Wa @ C + _get(sd, "dictionary.Relax", path, (k, d))) * mult
    else:
        raise ValueError(
            f"{path}: missing tensor 'dictionary._weights' (or 'dictionary.C' "
            "of a relaxed archetypal dictionary)."
        )
    if architecture is None:
        architecture = "jumpsae" if "thresholds" in sd else "topk"
    architecture = {"topksae": "topk", "ratopksae": "topk"}.get(
        architecture.lower(), architecture.lower()
    )
    common = dict(
        W_enc=W_enc,
        b_enc=b_enc,
        W_dec=D,
        b_pre=np.zeros(d),
        dtype=_dtype_of(sd),
    )
    # overcomplete keeps codes >= threshold, this package codes > threshold:
    # the next representable value below makes the two agree on exact ties
    # (BatchTopK's threshold is one of the codes of its last training batch)
    below = common["dtype"]
    if architecture in ("jumpsae", "jumprelu"):
        thr = np.exp(_get(sd, "thresholds", path, (k,))).astype(below)
        thr = np.nextafter(thr, below(-np.inf))
        return _build(activation="jumprelu", threshold=thr, **common)
    if top_k is None:
        raise ValueError(
            f"{path}: overcomplete does not store top_k in its state dict; pass "
            "top_k= (the top_k the SAE was built with)."
        )
    if architecture == "topk":
        return _build(activation="topk", top_k=top_k, **common)
    if architecture == "batchtopksae" or architecture == "batchtopk":
        if threshold is None:
            raise ValueError(
                f"{path}: overcomplete keeps the BatchTopK running_threshold "
                "outside its state dict; pass threshold=model.running_threshold."
            )
        return _build(
            activation="batchtopk",
            top_k=top_k,
            threshold=np.nextafter(below(threshold), below(-np.inf)),
            **common,
        )
    raise ValueError(
        f"unknown overcomplete architecture={architecture!r} (expected 'TopKSAE', "
        "'BatchTopKSAE', 'JumpSAE' or 'RATopKSAE')."
    )


# --------------------------------------------------------------------------
# public API


def _detect(path):
    """``(format, location)`` of ``path`` (a folder or a weights file)."""
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "sae_weights.safetensors")):
            return "saelens", path
        if os.path.exists(os.path.join(path, "sae.safetensors")):
            return "sparsify", path
        if os.path.exists(os.path.join(path, "ae.pt")):
            return "dictionary_learning", os.path.join(path, "ae.pt")
        raise ValueError(
            f"{path}: no sae_weights.safetensors (SAELens), sae.safetensors "
            "(sparsify) or ae.pt (dictionary_learning) in this folder; pass "
            "format= and the weights file."
        )
    name = os.path.basename(path)
    if name == "sae_weights.safetensors":
        return "saelens", os.path.dirname(path)
    if name == "sae.safetensors":
        return "sparsify", os.path.dirname(path)
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file or folder.")
    sd = _read_torch(path)
    if any(k.startswith(("encoder.final_block", "dictionary.")) for k in sd):
        return "overcomplete", path
    return "dictionary_learning", path


def load_pretrained(
    path, format="auto", *, architecture=None, top_k=None, threshold=None
):
    """Load a sparse autoencoder saved by another library (local files only).

    The result is a fitted :class:`~skconcepts.sae.TopKSAE` with the source's
    sparsity rule (a gated SAE gives a subclass with the gated encoder):
    ``transform``, ``inverse_transform`` and ``score`` reproduce the source
    forward pass, and it plugs into ``Pipeline``, the importance and erasure
    estimators (``prefit``) and the plots like any fitted SAE.

    Scale convention: ``components_`` has unit-norm rows and the codes carry
    the magnitude. When the source decoder rows ``W_dec[j]`` are not unit
    norm, ``transform(X)[:, j]`` is the source code of latent ``j`` times
    ``code_scale_[j] = ||W_dec[j]||`` (the reconstruction is the source's
    unchanged); ``transform(X) / code_scale_`` gives the source codes (0 for a
    zero row).

    Parameters
    ----------
    path : str or path-like
        A folder or a weights file: SAELens (``cfg.json`` +
        ``sae_weights.safetensors``), sparsify (``cfg.json`` +
        ``sae.safetensors``), dictionary_learning (``ae.pt``, with its
        ``config.json`` when present) or overcomplete (a ``state_dict()``
        saved with ``torch.save``).
    format : {"auto", "saelens", "sparsify", "dictionary_learning", \
"overcomplete"}, default="auto"
        "auto" decides from the file names (and, for a ``.pt`` file, from the
        tensor names).
    architecture : str or None, default=None
        dictionary_learning: ``"standard"``, ``"topk"``, ``"batchtopk"`` or
        ``"jumprelu"`` (default: from ``config.json``, else the tensors; a
        state dict with ``k`` is read as top-k). overcomplete: ``"TopKSAE"``,
        ``"BatchTopKSAE"``, ``"JumpSAE"`` or ``"RATopKSAE"`` (default: JumpSAE
        when ``thresholds`` is stored, else TopK).
    top_k : int or None, default=None
        overcomplete only: the ``top_k`` of the TopK / BatchTopK SAE (its
        state dict does not store it).
    threshold : float or None, default=None
        overcomplete BatchTopKSAE only: its ``running_threshold`` (not part of
        its state dict).

    Returns
    -------
    estimator : TopKSAE
        Fitted; ``code_scale_`` holds the source decoder row norms.

    Raises
    ------
    ValueError
        A missing file, tensor or config field, a shape that does not match
        the config, an unknown architecture or setting, or a file that is not
        what the format expects (the message names the file and the field).

    See Also
    --------
    save_pretrained : write an SAE of this package in SAELens format.

    Notes
    -----
    SAELens < 6 files are read too: a top-k SAE stored as ``"standard"``
    with ``activation_fn_str="topk"`` (``k`` in ``activation_fn_kwargs``),
    and the finetuning ``scaling_factor`` (folded into ``W_dec``, so
    ``code_scale_`` holds the norms of the scaled rows).
    SAELens ``normalize_activations="expected_average_only_in"`` is the
    identity at inference, as in SAELens (a norm scaling factor is not part
    of the files); ``"constant_norm_rescale"`` and ``"layer_norm"``
    (per-row rescaling) and ``rescale_acts_by_decoder_norm`` are refused.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from skconcepts.sae import TopKSAE, load_pretrained, save_pretrained
    >>> X = np.random.RandomState(0).rand(200, 10).astype(np.float32)
    >>> sae = TopKSAE(16, 3, max_epochs=2, random_state=0).fit(X)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = save_pretrained(sae, d)
    ...     loaded = load_pretrained(d)
    >>> bool(np.allclose(loaded.transform(X), sae.transform(X), atol=1e-5))
    True
    """
    path = os.fspath(path)
    if format not in ("auto",) + _FORMATS:
        raise ValueError(
            f"format={format!r}; expected 'auto' or one of {list(_FORMATS)}."
        )
    if format == "auto":
        format, path = _detect(path)
    elif format in ("saelens", "sparsify") and not os.path.isdir(path):
        path = os.path.dirname(path)
    elif format == "dictionary_learning" and os.path.isdir(path):
        path = os.path.join(path, "ae.pt")
    if format == "overcomplete":
        return _load_overcomplete(path, architecture, top_k, threshold)
    if format == "dictionary_learning":
        return _load_dictionary_learning(path, architecture)
    return _load_saelens(path) if format == "saelens" else _load_sparsify(path)


def save_pretrained(estimator, path, format="saelens"):
    """Write a fitted SAE of this package in SAELens format.

    Writes ``cfg.json`` and ``sae_weights.safetensors`` in the folder
    ``path`` (created if needed): ``W_enc`` = ``encoder_weights_.T``,
    ``b_enc``, ``W_dec`` = ``components_`` times the code scale (so that
    SAELens's codes are this package's codes divided by the decoder row
    norms, and its reconstruction is the same), ``b_dec`` = ``pre_bias_``
    with ``apply_b_dec_to_input=True``. ``"topk"`` is saved as SAELens
    ``topk``, ``"relu"`` as ``standard``, ``"jumprelu"`` and ``"batchtopk"``
    as ``jumprelu`` (its inference rule), a loaded gated SAE as ``gated``.
    :func:`load_pretrained` reads it back with equal ``transform``.

    Parameters
    ----------
    estimator : TopKSAE, ArchetypalSAE or AlignedSAE
        A fitted SAE of this package.
    path : str or path-like
        Output folder.
    format : {"saelens"}, default="saelens"
        The only format written.

    Returns
    -------
    path : str
        The folder written.

    See Also
    --------
    load_pretrained : read SAELens, sparsify, dictionary_learning and
        overcomplete files.

    Examples
    --------
    >>> import json, os, tempfile
    >>> import numpy as np
    >>> from skconcepts.sae import TopKSAE, save_pretrained
    >>> X = np.random.RandomState(0).rand(200, 10).astype(np.float32)
    >>> sae = TopKSAE(16, 3, max_epochs=2, random_state=0).fit(X)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     folder = save_pretrained(sae, d)
    ...     cfg = json.load(open(os.path.join(folder, "cfg.json")))
    ...     files = sorted(os.listdir(folder))
    >>> cfg["architecture"], cfg["k"], cfg["d_sae"], files
    ('topk', 3, 16, ['cfg.json', 'sae_weights.safetensors'])
    """
    from safetensors.torch import save_file

    from ._engine import _BaseSAE

    if format != "saelens":
        raise ValueError(f"format={format!r}; only 'saelens' is written.")
    if not isinstance(estimator, _BaseSAE):
        raise TypeError(
            f"save_pretrained expects a skconcepts SAE, got {type(estimator).__name__}."
        )
    if not hasattr(estimator, "components_"):
        raise ValueError("save_pretrained expects a fitted SAE; call fit first.")
    D = np.asarray(estimator.components_)
    k, d = D.shape
    scale = getattr(estimator, "_code_scale", None)
    scale = np.ones(k, dtype=D.dtype) if scale is None else np.asarray(scale)
    dtype = torch.float64 if D.dtype == np.float64 else torch.float32

    def t(a):
        return torch.from_numpy(np.array(a, copy=True)).to(dtype).contiguous()

    E = np.asarray(estimator.encoder_weights_)
    tensors = {
        "W_enc": t(E.T),
        "W_dec": t(D * scale[:, None]),
        "b_dec": t(estimator.pre_bias_),
    }
    cfg = {
        "d_in": int(d),
        "d_sae": int(k),
        "dtype": "float64" if dtype == torch.float64 else "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
    }
    act = estimator.activation
    if isinstance(estimator, _GatedSAE):
        cfg["architecture"] = "gated"
        tensors["b_gate"] = t(estimator.encoder_bias_)
        tensors["r_mag"] = t(np.log(estimator.magnitude_scale_))
        tensors["b_mag"] = t(estimator.magnitude_bias_)
    else:
        tensors["b_enc"] = t(estimator.encoder_bias_)
        if act == "topk":
            cfg["architecture"] = "topk"
            cfg["k"] = int(estimator.top_k)
        elif act == "relu":
            cfg["architecture"] = "standard"
        else:
            cfg["architecture"] = "jumprelu"
            thr = np.broadcast_to(np.asarray(estimator.threshold_), (k,))
            tensors["threshold"] = t(thr)
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    save_file(tensors, os.path.join(path, "sae_weights.safetensors"))
    with open(os.path.join(path, "cfg.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
    return path
