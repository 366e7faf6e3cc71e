"""The one evaluation engine behind every concept-importance estimator.

For a sample with concept codes ``u`` (``k``,), a dictionary ``W``
(``k x d``) and a residual row ``r`` (``d``,), a concept mask ``m`` gives the
activation ``x(m) = (m * u) @ W + r`` and the model output
``f(m) = head(x(m))[target]``. Sobol' indices, occlusion, gradient x input,
integrated gradients and the fidelity metrics are all functions of ``f`` on
sets of masks; :func:`evaluate_masks` computes ``f`` (and, for torch heads,
its gradient with respect to the mask) for many samples and masks in large
batched head calls.
"""

import numpy as np

from .._backend import (
    _torch,
    default_batch_size,
    resolve_device,
    to_tensor,
    torch_dtype,
)
from ._heads import as_head

__all__ = ["affine_decoder", "evaluate_masks", "head_outputs"]

_MAX_ROWS = 2**16

# Memory budgets of the importance family, as fractions of scikit-learn's
# ``working_memory`` (``sklearn.get_config()["working_memory"]``, MiB; 1024 by
# default, where they are the former constants: 64 MiB of activations per head
# call, 2**22 float64 values of per-sample outputs held at once).
_HEAD_BATCH_FRACTION = 1 / 16
_CHUNK_FRACTION = 1 / 32


def _budget_bytes(fraction):
    from sklearn import get_config

    return int(get_config()["working_memory"] * 2**20 * fraction)


def chunk_values():
    """Float64 values of per-sample outputs held at once while explaining."""
    return max(1, _budget_bytes(_CHUNK_FRACTION) // 8)


def _rows_per_call(batch_size, n_features, itemsize):
    """Rows per head call: ``batch_size``, else sized from ``working_memory``."""
    if batch_size is not None:
        return int(batch_size)
    budget = _budget_bytes(_HEAD_BATCH_FRACTION)
    return max(
        1,
        min(
            _MAX_ROWS,
            default_batch_size(n_features, budget_bytes=budget, itemsize=itemsize),
        ),
    )


def _compute_setup(head, dtype, device):
    """(torch device, torch dtype) for a torch head: its parameters' dtype."""
    dev = resolve_device(device)
    tdtype = head.param_dtype() or torch_dtype(dtype)
    return dev, tdtype


def head_outputs(head, X, *, batch_size=None, device=None):
    """All outputs of ``head`` on the rows of ``X``, shape (n_samples, n_outputs).

    Parameters
    ----------
    head : callable, torch.nn.Module or fitted scikit-learn model
        The head (see :mod:`skconcepts.importance._heads`).
    X : ndarray of shape (n_samples, n_features)
        Activations.
    batch_size : int, default=None
        Rows per head call (None: sized from a memory budget).
    device : str, default=None
        Device for a torch head ("auto" when None).

    Returns
    -------
    out : ndarray of shape (n_samples, n_outputs), float64

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.importance import head_outputs
    >>> head_outputs(lambda x: x.sum(axis=1), np.ones((2, 3)))
    array([[3.],
           [3.]])
    """
    head = as_head(head)
    X = np.asarray(X)
    dev, tdtype = (
        _compute_setup(head, X.dtype, device) if head.is_torch else (None,) * 2
    )
    rows = _rows_per_call(batch_size, X.shape[1], X.dtype.itemsize)
    chunks = []
    with head.prepared(dev) as call:
        for start in range(0, X.shape[0], rows):
            xb = X[start : start + rows]
            if head.is_torch:
                out = call(to_tensor(xb, dev, tdtype)).detach().cpu().numpy()
            else:
                out = call(np.ascontiguousarray(xb))
            chunks.append(np.asarray(out, dtype=np.float64))
    if not chunks:
        return np.empty((0, 0))
    widths = {c.shape[1] for c in chunks}
    if len(widths) != 1:
        raise ValueError(
            f"The head returned a varying number of outputs per call: {widths}."
        )
    return np.concatenate(chunks, axis=0)


def evaluate_masks(
    head,
    codes,
    components,
    masks,
    *,
    residual=None,
    target=None,
    batch_size=None,
    device=None,
    grad=False,
):
    """Model output ``f(m)`` for every sample and every concept mask.

    ``f(m) = head((m * u) @ components + r)[target]`` for each sample's codes
    ``u`` and residual row ``r``. Rows from several samples and masks are
    stacked into one head call of up to ``batch_size`` rows.

    Parameters
    ----------
    head : callable, torch.nn.Module or fitted scikit-learn model
        Maps ``(m, n_features)`` activations to ``(m,)`` or
        ``(m, n_outputs)`` outputs.
    codes : ndarray of shape (n_samples, n_concepts)
        Concept codes ``u`` of the samples.
    components : ndarray of shape (n_concepts, n_features) or fitted extractor
        Dictionary ``W`` (the decoder is ``u @ W``), or the fitted extractor
        itself (anything a meta-estimator accepts, see
        :class:`~skconcepts.importance.SobolConceptImportance`): ``W`` and
        the offset ``b`` are then read off it by :func:`affine_decoder`, and
        ``b`` is the residual when ``residual`` is None.
    masks : ndarray of shape (n_masks, n_concepts) or (n_samples, n_masks, n_concepts)
        Masks shared by all samples, or one set per sample.
    residual : ndarray of shape (n_samples, n_features) or (n_features,), default=None
        Added to every decoded row: the reconstruction residual ``x - u W``
        (so that ``m = 1`` gives back ``head(x)``), a decoder offset (PCA's
        ``mean_``), or None.
    target : ndarray of shape (n_samples,) of int, default=None
        Output column selected for each sample. None requires a head with a
        single output.
    batch_size : int, default=None
        Maximum number of rows per head call; None sizes it from a 64 MiB
        budget (at most 65536 rows).
    device : str, default=None
        Device for a torch head ("auto" when None). Other heads run on the CPU.
    grad : bool, default=False
        Also return ``df/dm`` (torch heads only).

    Returns
    -------
    values : ndarray of shape (n_samples, n_masks), float64
    grads : ndarray of shape (n_samples, n_masks, n_concepts), float64
        Only when ``grad=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.importance import evaluate_masks
    >>> codes = np.array([[1.0, 2.0]])
    >>> masks = np.array([[1.0, 1.0], [0.0, 1.0], [0.5, 0.0]])
    >>> evaluate_masks(lambda x: x.sum(axis=1), codes, np.eye(2), masks)
    array([[3. , 2. , 0.5]])
    """
    head = as_head(head)
    torch = _torch() if head.is_torch else None
    codes = np.asarray(codes)
    components, residual = _decoder_and_residual(components, residual, codes)
    masks = np.asarray(masks)
    n, k = codes.shape
    if components.shape[0] != k:
        raise ValueError(
            f"codes have {k} concepts but components has {components.shape[0]} rows."
        )
    d = components.shape[1]
    shared = masks.ndim == 2
    if (
        masks.ndim not in (2, 3)
        or masks.shape[-1] != k
        or (not shared and masks.shape[0] != n)
    ):
        raise ValueError(
            f"masks of shape {masks.shape} do not fit {n} samples x {k} concepts."
        )
    n_masks = masks.shape[-2]
    if grad and not head.is_torch:
        raise ValueError("Gradients need a torch nn.Module head.")
    if residual is not None:
        residual = np.asarray(residual)
        if (
            residual.shape[-1] != d
            or residual.ndim not in (1, 2)
            or (residual.ndim == 2 and residual.shape[0] != n)
        ):
            raise ValueError(
                f"residual of shape {residual.shape} does not fit {n} samples x "
                f"{d} features."
            )
    tgt = None
    if target is not None:
        tgt = np.asarray(target, dtype=np.int64).reshape(-1)
        if tgt.shape[0] != n:
            raise ValueError(f"target has {tgt.shape[0]} entries for {n} samples.")
    dtype = np.result_type(codes.dtype, np.float32)
    if head.is_torch:
        # decoded rows are built with torch on the head's device
        dev, tdtype = _compute_setup(head, dtype, device)

        def conv(a):
            return None if a is None else to_tensor(a, dev, tdtype)

    else:
        # NumPy heads: build the rows with NumPy (faster than torch on CPU)
        def conv(a):
            return None if a is None else np.asarray(a, dtype=dtype)

    u_all, w_all, m_all, r_all = (conv(a) for a in (codes, components, masks, residual))
    per_sample_r = residual is not None and residual.ndim == 2
    rows = _rows_per_call(batch_size, max(d, k), np.dtype(dtype).itemsize)
    mask_block = min(n_masks, rows)
    sample_block = max(1, rows // mask_block)
    values = np.empty((n, n_masks), dtype=np.float64)
    grads = np.empty((n, n_masks, k), dtype=np.float64) if grad else None
    with head.prepared(dev if head.is_torch else None, grad=grad) as call:
        for s0 in range(0, n, sample_block):
            s1 = min(s0 + sample_block, n)
            u = u_all[s0:s1, None, :]
            for j0 in range(0, n_masks, mask_block):
                j1 = min(j0 + mask_block, n_masks)
                m = m_all[None, j0:j1] if shared else m_all[s0:s1, j0:j1]
                if grad:
                    m = m.expand(s1 - s0, -1, -1).detach().clone()
                    m.requires_grad_(True)
                z = (m * u) @ w_all
                if r_all is not None:
                    z = z + (r_all[s0:s1, None, :] if per_sample_r else r_all)
                nb, mb = s1 - s0, j1 - j0
                out = call(z.reshape(nb * mb, d))
                n_out = out.shape[1]
                out = out.reshape(nb, mb, n_out)
                if tgt is None:
                    if n_out != 1:
                        raise ValueError(
                            f"The head returns {n_out} outputs per row; say which "
                            "one to explain (target=..., or y in fit)."
                        )
                    sel = out[:, :, 0]
                else:
                    t = tgt[s0:s1]
                    if t.min() < 0 or t.max() >= n_out:
                        bad = t[(t < 0) | (t >= n_out)][0]
                        raise ValueError(
                            f"Output column {int(bad)} was asked for, but the head "
                            f"returns only {n_out} output(s) per row."
                        )
                    if head.is_torch:
                        t = torch.as_tensor(t, device=out.device)
                        sel = torch.gather(out, 2, t.view(-1, 1, 1).expand(-1, mb, 1))[
                            :, :, 0
                        ]
                    else:
                        sel = np.take_along_axis(out, t[:, None, None], axis=2)[:, :, 0]
                if head.is_torch:
                    if grad:
                        (g,) = torch.autograd.grad(sel.sum(), m)
                        grads[s0:s1, j0:j1] = g.detach().cpu().double().numpy()
                    sel = sel.detach().cpu().double().numpy()
                values[s0:s1, j0:j1] = sel
    if grad:
        return values, grads
    return values


def _decoder_and_residual(components, residual, codes):
    """``(W, residual)``: an extractor given as ``components`` is decoded.

    The one place where every function of the engine (Sobol', attributions,
    the fidelity metrics) turns a fitted extractor into its affine decoder;
    its offset ``b`` becomes the residual unless one is given (a residual
    ``x - u W`` already holds it).
    """
    if isinstance(components, (np.ndarray, list, tuple)) or not (
        hasattr(components, "inverse_transform") or hasattr(components, "components_")
    ):
        return np.asarray(components), residual
    from .._extractors import check_decoder

    check_decoder(components, "components")
    dtype = np.result_type(np.asarray(codes).dtype, np.float32)
    W, b = affine_decoder(components, np.shape(codes)[1], dtype)
    return W, (b if residual is None else residual)


def affine_decoder(extractor, n_concepts, dtype=np.float64, *, check_codes=None):
    """The affine decoder ``u -> u @ W + b`` of a fitted concept extractor.

    ``W`` and ``b`` are read off the extractor's own ``inverse_transform``
    (``b = inverse_transform(0)``, ``W_i = inverse_transform(e_i) - b``), so
    every convention is respected: PCA adds ``mean_`` (and rescales whitened
    codes), NMF has no offset, an SAE adds its decoder bias. Extractors
    without ``inverse_transform`` decode with ``components_`` and no offset.

    Parameters
    ----------
    extractor : fitted estimator
        Has ``components_`` and, ideally, ``inverse_transform``.
    n_concepts : int
        Number of concepts (columns of the codes).
    dtype : numpy dtype, default=float64
        dtype of the returned arrays.
    check_codes : ndarray of shape (n, n_concepts), default=None
        Codes on which the decoder is checked against ``inverse_transform``;
        a mismatch (a decoder that is not affine) raises ``ValueError``.

    Returns
    -------
    W : ndarray of shape (n_concepts, n_features)
    b : ndarray of shape (n_features,) or None
        None when the offset is exactly zero.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from skconcepts.importance import affine_decoder
    >>> X = np.random.RandomState(0).normal(size=(20, 3)) + 5.0
    >>> pca = PCA(2).fit(X)
    >>> W, b = affine_decoder(pca, 2)
    >>> bool(np.allclose(b, pca.mean_)), W.shape
    (True, (2, 3))
    """
    if not hasattr(extractor, "inverse_transform"):
        return np.asarray(extractor.components_, dtype=dtype), None
    eye = np.vstack([np.zeros((1, n_concepts)), np.eye(n_concepts)]).astype(dtype)
    dec = np.asarray(extractor.inverse_transform(eye), dtype=np.float64)
    b = dec[0]
    W = dec[1:] - b
    if check_codes is not None and len(check_codes):
        codes = np.asarray(check_codes[:8], dtype=dtype)
        ref = np.asarray(extractor.inverse_transform(codes), dtype=np.float64)
        got = codes.astype(np.float64) @ W + b
        tol = 1e-4 if np.dtype(dtype) == np.float32 else 1e-8
        scale = max(1.0, float(np.max(np.abs(ref))))
        if not np.allclose(got, ref, rtol=tol, atol=tol * scale):
            raise ValueError(
                f"{type(extractor).__name__}.inverse_transform is not affine in "
                "the codes; concept importance needs a decoder x = u @ W + b."
            )
    b = None if not np.any(b) else b.astype(dtype)
    return W.astype(dtype), b
