"""Synthetic activations with known atoms: sparse, two modalities, hierarchies."""

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["make_hierarchical_features", "make_sparse_atoms", "make_two_modality"]


# ---------------------------------------------------------------------------
# Sparse non-negative combinations of known atoms, for dictionary recovery.


def make_sparse_atoms(
    n_samples=20000,
    n_features=128,
    n_atoms=64,
    n_active=3,
    *,
    noise=0.0,
    dtype=np.float32,
    random_state=None,
):
    """Rows that are non-negative combinations of a few unit atoms.

    ``X = codes @ atoms + noise * N(0, 1)``: ``atoms`` are ``n_atoms`` random
    unit vectors in ``n_features`` dimensions; each row of ``codes`` has
    ``n_active`` non-zero entries at distinct random atoms, with magnitudes
    drawn uniformly in ``[0.5, 1.5]``. The ground truth for dictionary
    recovery (sparse autoencoders).

    Parameters
    ----------
    n_samples : int, default=20000
        Number of rows.
    n_features : int, default=128
        Dimension of the rows.
    n_atoms : int, default=64
        Number of true atoms.
    n_active : int, default=3
        Atoms per row.
    noise : float, default=0.0
        Standard deviation of the Gaussian noise added to ``X``.
    dtype : dtype, default=np.float32
        dtype of ``X``, ``atoms`` and ``codes``.
    random_state : int, RandomState instance or None, default=None
        Seed.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    atoms : ndarray of shape (n_atoms, n_features)
        Unit-norm rows.
    codes : ndarray of shape (n_samples, n_atoms)
        Non-negative, ``n_active`` non-zeros per row.

    Examples
    --------
    >>> from skconcepts.datasets import make_sparse_atoms
    >>> X, atoms, codes = make_sparse_atoms(100, 16, 8, 2, random_state=0)
    >>> X.shape, atoms.shape, codes.shape, int((codes > 0).sum(axis=1).max())
    ((100, 16), (8, 16), (100, 8), 2)
    """
    rng = check_random_state(random_state)
    if n_active > n_atoms:
        raise ValueError(f"n_active={n_active} must be <= n_atoms={n_atoms}.")
    atoms = rng.standard_normal((n_atoms, n_features))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    support = np.argsort(rng.random_sample((n_samples, n_atoms)), axis=1)
    support = support[:, :n_active]
    codes = np.zeros((n_samples, n_atoms))
    rows = np.repeat(np.arange(n_samples), n_active)
    codes[rows, support.ravel()] = rng.uniform(0.5, 1.5, size=n_samples * n_active)
    X = codes @ atoms
    if noise:
        X += noise * rng.standard_normal(X.shape)
    return X.astype(dtype), atoms.astype(dtype), codes.astype(dtype)


# ---------------------------------------------------------------------------
# Two modalities with shared and modality-specific atoms (Iso-Energy SAE).


def make_two_modality(
    n_pairs=5000,
    n_features=64,
    n_shared=16,
    n_specific=8,
    *,
    sparsity=0.99,
    iso_energy=True,
    modality_offset=2.0,
    noise=0.01,
    violation=3.0,
    shared_cosine=1.0,
    frequency_decay=0.0,
    dtype=np.float32,
    random_state=None,
):
    """Paired rows of two modalities built from shared and specific atoms.

    Pair ``i`` is ``x_a_i = Phi_S z_S_i + Phi_A z_A_i + eps + offset_a`` (a row
    of modality ``0``) and ``x_b_i = Phi_S z'_S_i + Phi_B z_B_i + eps +
    offset_b`` (a row of modality ``1``). The atoms (rows of ``Phi_S``,
    ``Phi_A``, ``Phi_B``) are random unit vectors; every code is zero with
    probability ``sparsity`` and otherwise an Exp(1) magnitude. The shared
    codes of a pair have the same support. ``offset_a`` and ``offset_b`` are
    random directions of norm ``modality_offset`` (the modality gap) and
    ``eps`` is Gaussian noise of standard deviation ``noise`` per feature.

    When ``iso_energy`` holds, ``z'_S = z_S``: every shared atom carries the
    same energy in both modalities. When it is violated, the shared codes of
    each modality are rescaled per atom, ``z_S[:, k] * s_a[k]`` and
    ``z_S[:, k] * s_b[k]``, with factors drawn log-uniformly in
    ``[1 / violation, violation]`` independently for each modality and atom.

    Three regimes separate the alignment methods (see the user guide page
    ``docs/guide/alignment.md``):

    - ``shared_cosine < 1`` tilts the shared concepts per modality: modality
      ``1`` uses ``Phi_S'`` instead of ``Phi_S``, each row
      ``phi'_k = c phi_k + sqrt(1 - c^2) u_k`` with ``u_k`` a random unit
      vector orthogonal to ``phi_k``, so that ``cos(phi_k, phi'_k) = c``
      (the image and the text direction of one concept differ, as in a
      vision-language model);
    - ``iso_energy=False`` (see above) breaks the equal energy of a shared
      concept in the two modalities;
    - ``frequency_decay > 0`` makes concept frequencies unequal: within each
      group of atoms (shared, specific to ``0``, specific to ``1``) atom
      ``j`` is active with probability proportional to
      ``(j + 1) ** -frequency_decay``, scaled so that the mean probability
      stays ``1 - sparsity`` (and clipped to 1).

    The defaults (``shared_cosine=1``, ``iso_energy=True``,
    ``frequency_decay=0``) give the same rows as before these options.

    Parameters
    ----------
    n_pairs : int, default=5000
        Number of pairs; ``X`` has ``2 * n_pairs`` rows.
    n_features : int, default=64
        Dimension of the rows.
    n_shared : int, default=16
        Number of shared (bimodal) atoms.
    n_specific : int, default=8
        Number of atoms specific to each modality.
    sparsity : float, default=0.99
        Probability that a code is zero.
    iso_energy : bool, default=True
        Whether the shared atoms carry the same energy in both modalities.
    modality_offset : float, default=2.0
        Norm of each modality's offset vector.
    noise : float, default=0.01
        Standard deviation of the Gaussian noise.
    violation : float, default=3.0
        Largest rescaling factor of a shared atom when ``iso_energy=False``.
    shared_cosine : float, default=1.0
        Cosine in ``[-1, 1]`` between the direction of a shared concept in
        modality ``0`` and in modality ``1``. 1 means one direction for both.
    frequency_decay : float, default=0.0
        Exponent of the power law of the activation probabilities within each
        group of atoms; 0 gives every atom the probability ``1 - sparsity``.
    dtype : dtype, default=np.float32
        dtype of ``X`` and of the arrays of the ground truth.
    random_state : int, RandomState instance or None, default=None
        Seed.

    Returns
    -------
    X : ndarray of shape (2 * n_pairs, n_features)
        The ``n_pairs`` rows of modality 0 followed by the ``n_pairs`` rows of
        modality 1, in the same pair order (row ``i`` pairs with row
        ``n_pairs + i``).
    y : ndarray of shape (2 * n_pairs,)
        The modality of each row, 0 or 1.
    truth : :class:`~sklearn.utils.Bunch`
        ``atoms`` (``(n_shared + 2 n_specific, n_features)``: shared atoms,
        then those of modality 0, then those of modality 1), ``atom_labels``
        (object array: ``"bimodal"``, ``0`` or ``1``, the convention of
        ``AlignedSAE.atom_modality_``), ``codes`` (``(2 n_pairs, n_atoms)``),
        ``offsets`` (``(2, n_features)``) and ``energy_scale``
        (``(2, n_shared)``, the factors ``s_a``, ``s_b``; ones when
        ``iso_energy``), ``shared_atoms_b`` (``(n_shared, n_features)``, the
        directions ``Phi_S'`` of the shared concepts in modality ``1``; equal
        to the first ``n_shared`` rows of ``atoms`` when ``shared_cosine=1``)
        and ``frequencies`` (``(n_atoms,)``, the activation probability of
        each atom).

    Examples
    --------
    >>> from skconcepts.datasets import make_two_modality
    >>> X, y, truth = make_two_modality(100, 16, 4, 2, sparsity=0.5, random_state=0)
    >>> X.shape, y.tolist().count(1), truth.atoms.shape
    ((200, 16), 100, (8, 16))
    >>> truth.atom_labels.tolist()
    ['bimodal', 'bimodal', 'bimodal', 'bimodal', 0, 0, 1, 1]
    >>> shared_a, shared_b = truth.codes[:100, :4], truth.codes[100:, :4]
    >>> bool(((shared_a > 0) == (shared_b > 0)).all())
    True
    """
    from sklearn.utils import Bunch

    rng = check_random_state(random_state)
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1); got {sparsity}.")
    if violation < 1.0:
        raise ValueError(f"violation must be >= 1; got {violation}.")
    if not -1.0 <= shared_cosine <= 1.0:
        raise ValueError(f"shared_cosine must be in [-1, 1]; got {shared_cosine}.")
    if frequency_decay < 0:
        raise ValueError(f"frequency_decay must be >= 0; got {frequency_decay}.")
    n, s, p = n_pairs, n_shared, n_specific
    n_atoms = s + 2 * p
    atoms = rng.standard_normal((n_atoms, n_features))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)

    def group_probabilities(size):
        weights = np.arange(1, size + 1, dtype=float) ** -frequency_decay
        return np.minimum((1.0 - sparsity) * weights * size / weights.sum(), 1.0)

    def sparse_codes(shape):
        if frequency_decay == 0:  # the historical draw, bit for bit
            active = rng.random_sample(shape) >= sparsity
        else:
            active = rng.random_sample(shape) < group_probabilities(shape[1])
        return active * rng.exponential(1.0, size=shape)

    z_shared = sparse_codes((n, s))
    scale = np.ones((2, s))
    if not iso_energy:
        log_v = np.log(violation)
        scale = np.exp(rng.uniform(-log_v, log_v, size=(2, s)))
    codes = np.zeros((2 * n, n_atoms))
    codes[:n, :s] = z_shared * scale[0]
    codes[n:, :s] = z_shared * scale[1]
    codes[:n, s : s + p] = sparse_codes((n, p))
    codes[n:, s + p :] = sparse_codes((n, p))
    offsets = rng.standard_normal((2, n_features))
    offsets *= modality_offset / np.linalg.norm(offsets, axis=1, keepdims=True)
    y = np.repeat([0, 1], n)
    X = codes @ atoms + offsets[y]
    if noise:
        X += noise * rng.standard_normal(X.shape)
    shared_b = atoms[:s].copy()
    if shared_cosine != 1.0:
        # drawn after everything else so that the default stream is unchanged
        u = rng.standard_normal((s, n_features))
        u -= np.sum(u * shared_b, axis=1, keepdims=True) * shared_b
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        shared_b = shared_cosine * shared_b + np.sqrt(1 - shared_cosine**2) * u
        X[n:] += codes[n:, :s] @ (shared_b - atoms[:s])
    frequencies = np.full(n_atoms, 1.0 - sparsity)
    if frequency_decay:
        frequencies = np.concatenate(
            [group_probabilities(s), group_probabilities(p), group_probabilities(p)]
        )
    labels = np.array(["bimodal"] * s + [0] * p + [1] * p, dtype=object)
    truth = Bunch(
        atoms=atoms.astype(dtype),
        atom_labels=labels,
        codes=codes.astype(dtype),
        offsets=offsets.astype(dtype),
        energy_scale=scale.astype(dtype),
        shared_atoms_b=shared_b.astype(dtype),
        frequencies=frequencies,
    )
    return X.astype(dtype), y, truth


# ---------------------------------------------------------------------------
# Hierarchical, correlated features with Zipf firing rates (SynthSAEBench).


def _check_unit_interval(name, value, *, low_open=False, high_open=False):
    low_ok = value > 0 if low_open else value >= 0
    high_ok = value < 1 if high_open else value <= 1
    if not (low_ok and high_ok):
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be in {lo}0, 1{hi}; got {value}.")


def make_hierarchical_features(
    n_samples=20000,
    n_features=64,
    n_atoms=256,
    *,
    n_trees=16,
    branching=4,
    depth=1,
    child_rate=0.75,
    mutually_exclusive=True,
    zipf_exponent=0.5,
    p_max=0.4,
    p_min=5e-4,
    correlation=0.2,
    correlation_rank=4,
    magnitude_std=0.2,
    orthogonal=False,
    noise=0.0,
    dtype=np.float32,
    random_state=None,
):
    """Rows built from hierarchical, correlated features of unequal frequency.

    A small version of SynthSAEBench's synthetic model (Chanin et al. 2026):
    ``X = codes @ atoms + noise * N(0, 1)``, where ``atoms`` are ``n_atoms``
    unit directions in ``n_features`` dimensions (random, so in
    superposition when ``n_atoms > n_features``) and every row of
    ``codes`` is sparse, non-negative and obeys a feature hierarchy, so that
    sparse autoencoders show *feature absorption* on it (Chanin et al.
    2024): a child feature fires only when its parent fires.

    Layout of the features (fixed, so the ground truth is easy to read):

    - the first ``n_trees * (1 + branching + ... + branching ** depth)``
      features form ``n_trees`` trees, stored tree after tree in
      breadth-first order (root, its ``branching`` children, their children,
      ...); ``parents[j]`` is the index of the parent of feature ``j``;
    - the remaining features are independent roots (``parents[j] = -1``).

    Firing:

    - *Top-level features* (tree roots and independent features) fire with
      Zipf-like probabilities: the ``r``-th of them (tree roots first, in
      index order) fires with probability
      ``max(p_max * (r + 1) ** -zipf_exponent, p_min)``, exactly, whatever
      the correlation.
    - *Correlated firing* (Gaussian copula, as SynthSAEBench): feature ``i``
      fires when ``z_i < Phi^{-1}(p_i)`` with ``z = L u + sqrt(1 -
      correlation) e``, ``u ~ N(0, I_rank)``, ``e ~ N(0, I)`` and the rows of
      ``L`` random directions of norm ``sqrt(correlation)``: the latent
      Gaussians of two features have correlation ``correlation * cos(L_i,
      L_j)``, and the marginal rates are unchanged.
    - *Hierarchy*: a child never fires unless its parent fires. Given that
      its parent fires, each child fires with probability ``child_rate /
      branching``. With ``mutually_exclusive=True`` (SynthSAEBench's
      setting) at most one child of a parent fires: with probability
      ``child_rate`` one of them, chosen uniformly; otherwise the children
      fire independently of each other. Either way a child's marginal rate
      is its parent's rate times ``child_rate / branching``.
    - *Magnitudes* of firing features are log-normal with mean 1,
      ``exp(magnitude_std * N(0, 1) - magnitude_std ** 2 / 2)``: positive,
      with noise (``magnitude_std=0`` gives 1 exactly).

    Parameters
    ----------
    n_samples : int, default=20000
        Number of rows.
    n_features : int, default=64
        Dimension of the rows.
    n_atoms : int, default=256
        Number of true features (directions).
    n_trees : int, default=16
        Number of feature trees (hierarchies). 0 gives independent features
        only.
    branching : int, default=4
        Children per parent.
    depth : int, default=1
        Levels below each root: 1 gives a root and its children, 2 adds
        grandchildren.
    child_rate : float, default=0.75
        Probability that a firing parent has a firing child (with
        ``mutually_exclusive``), so ``1 - child_rate`` is the share of its
        firings where the parent fires alone. In ``[0, 1]``.
    mutually_exclusive : bool, default=True
        Whether the children of one parent never fire together.
    zipf_exponent : float, default=0.5
        Exponent of the Zipf law of the top-level firing probabilities; 0
        gives every top-level feature the probability ``p_max``.
    p_max : float, default=0.4
        Firing probability of the most frequent top-level feature, in
        ``(0, 1]``.
    p_min : float, default=5e-4
        Floor of the top-level firing probabilities, in ``[0, p_max]``.
    correlation : float, default=0.2
        Strength of the low-rank correlation of the top-level firings, in
        ``[0, 1)``; 0 makes them independent.
    correlation_rank : int, default=4
        Rank of the correlation.
    magnitude_std : float, default=0.2
        Log-scale standard deviation of the firing magnitudes.
    orthogonal : bool, default=False
        Whether the directions are orthonormal (needs ``n_atoms <=
        n_features``); otherwise independent random unit vectors.
    noise : float, default=0.0
        Standard deviation of the Gaussian noise added to ``X``.
    dtype : dtype, default=np.float32
        dtype of ``X``, ``atoms`` and ``codes``.
    random_state : int, RandomState instance or None, default=None
        Seed.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    atoms : ndarray of shape (n_atoms, n_features)
        Unit-norm rows: the direction of each true feature.
    codes : ndarray of shape (n_samples, n_atoms)
        True feature activations: non-negative, zero where a feature does not
        fire.
    parents : ndarray of shape (n_atoms,), dtype=int64
        Index of the parent of each feature, -1 for top-level features.

    See Also
    --------
    make_sparse_atoms : Independent features of equal frequency.
    skconcepts.metrics.feature_f1 : Per-feature detection F1 of SAE latents.
    skconcepts.metrics.absorption_score : Feature absorption on this data.

    References
    ----------
    D. Chanin, T. Dulka, A. Garriga-Alonso, "SynthSAEBench: Evaluating Sparse
    Autoencoders on Scalable Realistic Synthetic Data", arXiv:2602.14687,
    2026.

    D. Chanin, J. Wilken-Smith, T. Dulka, H. Bhatnagar, S. Golechha,
    J. Bloom, "A is for Absorption: Studying Feature Splitting and
    Absorption in Sparse Autoencoders", arXiv:2409.14507, 2024.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.datasets import make_hierarchical_features
    >>> X, atoms, codes, parents = make_hierarchical_features(
    ...     1000, 16, 32, n_trees=2, branching=3, random_state=0)
    >>> X.shape, atoms.shape, codes.shape
    ((1000, 16), (32, 16), (1000, 32))
    >>> parents[:8].tolist()
    [-1, 0, 0, 0, -1, 4, 4, 4]
    >>> child, parent = 1, 0
    >>> bool(np.all(codes[codes[:, child] > 0, parent] > 0))
    True
    """
    from scipy.special import ndtri

    rng = check_random_state(random_state)
    for name, value in [
        ("n_samples", n_samples),
        ("n_features", n_features),
        ("n_atoms", n_atoms),
        ("branching", branching),
        ("depth", depth),
        ("correlation_rank", correlation_rank),
    ]:
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")
    if not isinstance(n_trees, (int, np.integer)) or n_trees < 0:
        raise ValueError(f"n_trees must be an integer >= 0; got {n_trees!r}.")
    _check_unit_interval("child_rate", child_rate)
    _check_unit_interval("p_max", p_max, low_open=True)
    _check_unit_interval("correlation", correlation, high_open=True)
    if not 0 <= p_min <= p_max:
        raise ValueError(f"p_min must be in [0, p_max={p_max}]; got {p_min}.")
    for name, value in [
        ("zipf_exponent", zipf_exponent),
        ("magnitude_std", magnitude_std),
        ("noise", noise),
    ]:
        if value < 0:
            raise ValueError(f"{name} must be >= 0; got {value}.")
    tree_size = sum(branching**level for level in range(depth + 1))
    if n_trees * tree_size > n_atoms:
        raise ValueError(
            f"{n_trees} trees of {tree_size} features (branching={branching}, "
            f"depth={depth}) need n_atoms >= {n_trees * tree_size}; got "
            f"n_atoms={n_atoms}. Raise n_atoms or lower n_trees, branching or "
            "depth."
        )
    if orthogonal and n_atoms > n_features:
        raise ValueError(
            f"orthogonal=True needs n_atoms <= n_features; got n_atoms={n_atoms} "
            f"> n_features={n_features}. Use orthogonal=False for features in "
            "superposition."
        )

    # parents: trees in breadth-first order, then independent roots
    parents = np.full(n_atoms, -1, dtype=np.int64)
    for t in range(n_trees):
        level_start, level_size = t * tree_size, 1
        for _ in range(depth):
            child_start = level_start + level_size
            for k in range(level_size):
                first = child_start + k * branching
                parents[first : first + branching] = level_start + k
            level_start, level_size = child_start, level_size * branching
    top = np.flatnonzero(parents < 0)  # tree roots come first in index order

    if orthogonal:
        q, _ = np.linalg.qr(rng.standard_normal((n_features, n_atoms)))
        atoms = q.T.copy()
    else:
        atoms = rng.standard_normal((n_atoms, n_features))
        atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)

    # top-level firing: Zipf marginals through a low-rank Gaussian copula
    ranks = np.arange(1, top.size + 1, dtype=float)
    probabilities = np.maximum(p_max * ranks**-zipf_exponent, p_min)
    z = rng.standard_normal((n_samples, top.size))
    if correlation > 0:
        loadings = rng.standard_normal((top.size, correlation_rank))
        loadings *= np.sqrt(correlation) / np.linalg.norm(
            loadings, axis=1, keepdims=True
        )
        shared = rng.standard_normal((n_samples, correlation_rank))
        z = shared @ loadings.T + np.sqrt(1.0 - correlation) * z
    fires = np.zeros((n_samples, n_atoms), dtype=bool)
    fires[:, top] = z < ndtri(probabilities)

    # children, parent before child (breadth-first order)
    conditional = child_rate / branching
    for parent in np.unique(parents[parents >= 0]):
        children = np.flatnonzero(parents == parent)
        on = np.flatnonzero(fires[:, parent])
        if mutually_exclusive:
            u = rng.random_sample(on.size)
            chosen = u < child_rate
            which = np.minimum(
                (u[chosen] / child_rate * children.size).astype(np.int64),
                children.size - 1,
            )
            fires[on[chosen], children[which]] = True
        else:
            draws = rng.random_sample((on.size, children.size)) < conditional
            fires[np.ix_(on, children)] = draws

    magnitudes = np.exp(
        magnitude_std * rng.standard_normal((n_samples, n_atoms)) - magnitude_std**2 / 2
    )
    codes = np.where(fires, magnitudes, 0.0)
    X = codes @ atoms
    if noise:
        X += noise * rng.standard_normal(X.shape)
    return X.astype(dtype), atoms.astype(dtype), codes.astype(dtype), parents
