"""Synthetic activations with known atoms: sparse combinations, two modalities."""

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["make_sparse_atoms", "make_two_modality"]


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
