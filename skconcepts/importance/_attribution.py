"""Local concept attributions: occlusion, gradient x input, integrated gradients.

All three are functions of ``f(m) = head((m * u) @ W + r)[target]`` on
concept masks ``m`` (see :func:`skconcepts.importance.evaluate_masks`), so they
share the Sobol' estimator's engine:

- occlusion: ``phi_i = f(1) - f(1 - e_i)`` (concept ``i`` set to zero);
- gradient x input: ``phi_i = u_i * dh/du_i = df/dm_i`` at ``m = 1``;
- integrated gradients (baseline ``u = 0``):
  ``phi_i = u_i * int_0^1 dh/du_i(alpha u) d alpha = int_0^1 df/dm_i(alpha 1)``,
  by the midpoint rule on ``n_steps`` points; ``sum_i phi_i`` approximates
  ``f(1) - f(0)`` (completeness).

Gradients come from autograd for a torch ``nn.Module`` head, and from central
differences in mask space, ``(f(m + eps e_i) - f(m - eps e_i)) / (2 eps)``,
for any other head (the step ``eps`` is relative to each code ``u_i``).
"""

import numpy as np

from ._engine import _decoder_and_residual, evaluate_masks
from ._heads import as_head

__all__ = [
    "concept_gradient_input",
    "concept_integrated_gradients",
    "concept_occlusion",
]


def concept_occlusion(head, codes, components, *, residual=None, target=None, **kw):
    """Occlusion in concept space: ``f(1) - f(1 - e_i)`` per sample and concept.

    Parameters
    ----------
    head : callable, torch.nn.Module or fitted scikit-learn model
        Maps activations to outputs.
    codes : ndarray of shape (n_samples, n_concepts)
        Concept codes ``u``.
    components : ndarray of shape (n_concepts, n_features) or fitted extractor
        Dictionary (decoder ``u @ components``), or the fitted extractor
        (its decoder ``W``, ``b`` read off it; ``b`` is the residual when
        ``residual`` is None).
    residual : ndarray of shape (n_samples, n_features) or (n_features,), default=None
        Added to every decoded row.
    target : ndarray of shape (n_samples,) of int, default=None
        Output column per sample (heads with several outputs).
    **kw : dict
        ``batch_size`` and ``device``, passed to the engine.

    Returns
    -------
    phi : ndarray of shape (n_samples, n_concepts), float64

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.importance import concept_occlusion
    >>> concept_occlusion(lambda x: x @ [3.0, 1.0], np.array([[1.0, 2.0]]), np.eye(2))
    array([[3., 2.]])
    """
    k = np.shape(codes)[1]
    masks = np.vstack([np.ones((1, k)), 1.0 - np.eye(k)])
    f = evaluate_masks(
        head, codes, components, masks, residual=residual, target=target, **kw
    )
    return f[:, :1] - f[:, 1:]


def _mask_gradients(head, codes, components, points, *, residual, target, eps, **kw):
    """``df/dm`` at each mask in ``points`` (n_points, k) -> (n, n_points, k)."""
    head = as_head(head)
    codes = np.asarray(codes)
    components, residual = _decoder_and_residual(components, residual, codes)
    if head.is_torch:
        _, grads = evaluate_masks(
            head,
            codes,
            components,
            points,
            residual=residual,
            target=target,
            grad=True,
            **kw,
        )
        return grads
    # central differences in mask space, computed in float64
    n_points, k = points.shape
    eye = np.eye(k)
    plus = points[:, None, :] + eps * eye[None]
    minus = points[:, None, :] - eps * eye[None]
    masks = np.concatenate([plus, minus], axis=1).reshape(n_points * 2 * k, k)
    f = evaluate_masks(
        head,
        codes.astype(np.float64),
        np.asarray(components, dtype=np.float64),
        masks,
        residual=None if residual is None else np.asarray(residual, np.float64),
        target=target,
        **kw,
    ).reshape(-1, n_points, 2, k)
    return (f[:, :, 0] - f[:, :, 1]) / (2.0 * eps)


def concept_gradient_input(
    head, codes, components, *, residual=None, target=None, eps=1e-3, **kw
):
    """Gradient x input in concept space: ``u_i * dh/du_i`` at the sample.

    Autograd for a torch ``nn.Module`` head; central differences (relative
    step ``eps`` on each code) for any other head.

    Parameters
    ----------
    head, codes, components, residual, target
        As in :func:`concept_occlusion`.
    eps : float, default=1e-3
        Relative finite-difference step (heads without autograd).
    **kw : dict
        ``batch_size`` and ``device``, passed to the engine.

    Returns
    -------
    phi : ndarray of shape (n_samples, n_concepts), float64

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.importance import concept_gradient_input
    >>> phi = concept_gradient_input(lambda x: x[:, 0] * x[:, 1],
    ...                              np.array([[1.0, 2.0]]), np.eye(2))
    >>> np.round(phi, 6)
    array([[2., 2.]])
    """
    k = np.shape(codes)[1]
    g = _mask_gradients(
        head,
        codes,
        components,
        np.ones((1, k)),
        residual=residual,
        target=target,
        eps=eps,
        **kw,
    )
    return g[:, 0, :]


def concept_integrated_gradients(
    head, codes, components, *, residual=None, target=None, n_steps=32, eps=1e-3, **kw
):
    """Integrated gradients in concept space from the baseline ``u = 0``.

    ``phi_i = int_0^1 df/dm_i(alpha 1) d alpha`` by the midpoint rule on
    ``n_steps`` points, so that ``sum_i phi_i ~ f(1) - f(0)``.

    Parameters
    ----------
    head, codes, components, residual, target
        As in :func:`concept_occlusion`.
    n_steps : int, default=32
        Points of the midpoint rule on the path.
    eps : float, default=1e-3
        Relative finite-difference step (heads without autograd).
    **kw : dict
        ``batch_size`` and ``device``, passed to the engine.

    Returns
    -------
    phi : ndarray of shape (n_samples, n_concepts), float64

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.importance import concept_integrated_gradients
    >>> phi = concept_integrated_gradients(lambda x: x[:, 0] * x[:, 1],
    ...                                    np.array([[1.0, 2.0]]), np.eye(2))
    >>> np.round(phi, 3)  # sums to f(1) - f(0) = 2
    array([[1., 1.]])
    """
    k = np.shape(codes)[1]
    alphas = (np.arange(n_steps) + 0.5) / n_steps
    points = alphas[:, None] * np.ones((1, k))
    g = _mask_gradients(
        head,
        codes,
        components,
        points,
        residual=residual,
        target=target,
        eps=eps,
        **kw,
    )
    return g.mean(axis=1)
