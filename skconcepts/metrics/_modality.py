"""Two modalities: modality gap, cross-modal retrieval, in-distribution distance."""

import numbers

import numpy as np
from sklearn.utils.validation import check_array

from ._dictionary import _cosines, _unit

__all__ = [
    "atom_label_accuracy",
    "knn_distance",
    "modality_gap",
    "retrieval_recall_at_k",
    "shared_concept_capture",
]


# ---------------------------------------------------------------------------
# Two modalities: modality gap, cross-modal retrieval, in-distribution distance


def _two_clouds(X_a, X_b, name_a="X_a", name_b="X_b"):
    X_a = check_array(X_a, dtype=[np.float64, np.float32], input_name=name_a)
    X_b = check_array(X_b, dtype=[np.float64, np.float32], input_name=name_b)
    if X_a.shape[1] != X_b.shape[1]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same number of features; got "
            f"{X_a.shape[1]} and {X_b.shape[1]}."
        )
    return X_a.astype(np.float64, copy=False), X_b.astype(np.float64, copy=False)


def modality_gap(X_a, X_b, *, method="mean", max_samples=1000, random_state=None):
    """Distance between the clouds of two modalities (the modality gap).

    ``method="mean"``: ``||mean(X_a) - mean(X_b)||_2``, the distance between
    the two centroids (Liang et al. 2022).

    ``method="ot"``: the optimal transport (2-Wasserstein) cost between the
    two clouds, ``sqrt(min_sigma mean_i ||a_i - b_sigma(i)||^2)``. Both
    clouds are subsampled to the same size ``m = min(len(X_a), len(X_b),
    max_samples)`` (without replacement, seeded by ``random_state``) and the
    best one-to-one matching is found exactly with
    :func:`scipy.optimize.linear_sum_assignment` (cubic in ``m``). Stricter
    than the mean: it is zero only when the two (sub)samples coincide as
    sets, so it also counts differences of shape, and it is not zero for two
    finite samples of the same distribution.

    Parameters
    ----------
    X_a : array-like of shape (n_a, n_features)
        Rows of the first modality.
    X_b : array-like of shape (n_b, n_features)
        Rows of the second modality.
    method : {"mean", "ot"}, default="mean"
        Distance of the means, or optimal transport cost.
    max_samples : int, default=1000
        Largest subsample size for ``method="ot"``.
    random_state : int, RandomState instance or None, default=None
        Seeds the subsamples of ``method="ot"``.

    Returns
    -------
    gap : float

    References
    ----------
    W. Liang et al., "Mind the Gap: Understanding the Modality Gap in
    Multi-modal Contrastive Representation Learning", NeurIPS 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import modality_gap
    >>> A = np.array([[0.0, 0.0], [2.0, 0.0]])
    >>> modality_gap(A, A + [0.0, 3.0])
    3.0
    >>> modality_gap(A, A[::-1] + [0.0, 3.0], method="ot")
    3.0
    """
    from sklearn.utils import check_random_state

    X_a, X_b = _two_clouds(X_a, X_b)
    if method == "mean":
        return float(np.linalg.norm(X_a.mean(axis=0) - X_b.mean(axis=0)))
    if method != "ot":
        raise ValueError(f"method must be 'mean' or 'ot'; got {method!r}.")
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    if not isinstance(max_samples, numbers.Integral) or max_samples < 1:
        raise ValueError(f"max_samples must be an int >= 1; got {max_samples!r}.")
    rng = check_random_state(random_state)
    m = min(X_a.shape[0], X_b.shape[0], int(max_samples))
    if X_a.shape[0] > m:
        X_a = X_a[np.sort(rng.choice(X_a.shape[0], m, replace=False))]
    if X_b.shape[0] > m:
        X_b = X_b[np.sort(rng.choice(X_b.shape[0], m, replace=False))]
    cost = cdist(X_a, X_b, "sqeuclidean")
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


def retrieval_recall_at_k(Q, G, k=1, *, batch_size=4096):
    """Share of queries whose match is among their ``k`` nearest gallery items.

    The match of query ``Q[i]`` is gallery item ``G[i]`` (e.g. the text of
    image ``i``); items are ranked by cosine similarity. The rank of the
    match counts every other item at least as similar (ties count against
    the query), so a constant embedding scores at most ``k / n``.

    Parameters
    ----------
    Q : array-like of shape (n, n_features)
        Queries (e.g. image embeddings).
    G : array-like of shape (n, n_features)
        Gallery, in the order of the queries (e.g. text embeddings).
    k : int, default=1
        Cut-off rank.
    batch_size : int, default=4096
        Queries compared with the gallery at once.

    Returns
    -------
    recall : float
        In ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import retrieval_recall_at_k
    >>> Q = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    >>> retrieval_recall_at_k(Q, Q)
    1.0
    >>> retrieval_recall_at_k(Q, Q[[1, 0, 2]])  # queries 0 and 1 swapped
    0.3333333333333333
    >>> retrieval_recall_at_k(Q, Q[[1, 0, 2]], k=2)
    1.0
    """
    Q, G = _two_clouds(Q, G, "Q", "G")
    if Q.shape[0] != G.shape[0]:
        raise ValueError(
            f"Q and G must have the same number of rows (query i matches gallery "
            f"item i); got {Q.shape[0]} and {G.shape[0]}."
        )
    if int(k) < 1:
        raise ValueError(f"k must be >= 1; got {k}.")
    Qn, Gn = _unit(Q), _unit(G)
    hits = 0
    for s in range(0, Q.shape[0], batch_size):
        S = Qn[s : s + batch_size] @ Gn.T
        rows = np.arange(S.shape[0])
        true = S[rows, s + rows]
        rank = (S >= true[:, None]).sum(axis=1) - 1  # others at least as close
        hits += int(np.sum(rank < k))
    return hits / Q.shape[0]


def knn_distance(Q, reference, k=10):
    """Distance from each query to its ``k``-th nearest reference row.

    An in-distribution measure: a composed query (e.g. image + text) that
    stays among the real images is close to its ``k``-th nearest real image;
    one pushed off the image cloud (e.g. by the text's modality offset) is
    far from it. Euclidean distance, exact search.

    Parameters
    ----------
    Q : array-like of shape (n_queries, n_features)
        Queries.
    reference : array-like of shape (n_reference, n_features)
        The reference distribution (e.g. real image embeddings).
    k : int, default=10
        Which neighbour; ``k <= n_reference``.

    Returns
    -------
    distances : ndarray of shape (n_queries,)

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import knn_distance
    >>> ref = np.array([[0.0], [1.0], [3.0]])
    >>> knn_distance([[0.0], [10.0]], ref, k=2).tolist()
    [1.0, 9.0]
    """
    from sklearn.neighbors import NearestNeighbors

    Q, R = _two_clouds(Q, reference, "Q", "reference")
    if not 1 <= int(k) <= R.shape[0]:
        raise ValueError(f"k must be in [1, {R.shape[0]}]; got {k}.")
    nn = NearestNeighbors(n_neighbors=int(k)).fit(R)
    dist, _ = nn.kneighbors(Q)
    return dist[:, -1]


def atom_label_accuracy(true_atoms, true_labels, D, labels):
    """Share of true atoms whose best-matching learned atom has the right label.

    For every true atom the learned atom of largest cosine is found (as in
    :func:`atom_recovery`) and its label (e.g. ``AlignedSAE.atom_modality_``:
    ``"bimodal"`` or the modality that owns it) is compared with the true
    one (e.g. ``truth.atom_labels`` of
    :func:`skconcepts.datasets.make_two_modality`). Labels are compared as
    strings, as ``atom_modality_`` holds them: the modality ``0`` of the
    truth matches the label ``"0"`` of an ``AlignedSAE`` fitted with
    ``y`` in ``{0, 1}``.

    Parameters
    ----------
    true_atoms : array-like of shape (n_true, n_features)
        Ground-truth atoms.
    true_labels : array-like of shape (n_true,)
        Their labels.
    D : array-like of shape (n_atoms, n_features)
        Learned dictionary.
    labels : array-like of shape (n_atoms,)
        Labels of the learned atoms.

    Returns
    -------
    accuracy : float

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import atom_label_accuracy
    >>> true = np.eye(2)
    >>> D = np.array([[0.0, 2.0], [1.0, 0.1]])
    >>> atom_label_accuracy(true, ["bimodal", 0], D, ["0", "bimodal"])
    1.0
    """
    true_labels = np.asarray(true_labels, dtype=object)
    labels = np.asarray(labels, dtype=object)
    cos = _cosines(true_atoms, D)
    if true_labels.shape[0] != cos.shape[0] or labels.shape[0] != cos.shape[1]:
        raise ValueError("One label per atom is needed in true_labels and labels.")
    best = cos.argmax(axis=1)
    hits = [str(t) == str(p) for t, p in zip(true_labels, labels[best], strict=True)]
    return float(np.mean(hits))


def shared_concept_capture(codes_a, codes_b, true_active, bimodal, *, min_rate=0.5):
    """Share of shared concepts that one bimodal atom captures on both sides.

    The rows of ``codes_a`` and ``codes_b`` are the codes of paired rows of
    the two modalities (row ``i`` of each is pair ``i``). A true shared
    concept ``c`` (active on the pairs where ``true_active[:, c]``) is
    captured when the atom ``j`` that fires on both sides of the most of
    those pairs

    - fires on both sides of more than ``min_rate`` of them (recall),
    - has the concept active on more than ``min_rate`` of the pairs where it
      fires on both sides (precision; an atom that fires everywhere does not
      capture anything), and
    - is bimodal (``bimodal[j]``, e.g. ``AlignedSAE.atom_modality_ ==
      "bimodal"``).

    A plain SAE may split a concept whose direction differs per modality into
    one atom per modality: then no atom fires on both sides and the concept
    is not captured.

    Parameters
    ----------
    codes_a, codes_b : array-like of shape (n_pairs, n_atoms)
        Codes of the rows of each modality, in pair order.
    true_active : array-like of shape (n_pairs, n_shared)
        Whether each true shared concept is active in each pair (e.g.
        ``truth.codes[:n_pairs, :n_shared] > 0`` of
        :func:`skconcepts.datasets.make_two_modality`).
    bimodal : array-like of shape (n_atoms,), bool
        Which learned atoms are labelled bimodal.
    min_rate : float, default=0.5
        Recall and precision above which a concept counts as captured.

    Returns
    -------
    capture : float
        Share of the shared concepts (with at least one active pair) that
        are captured.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.metrics import shared_concept_capture
    >>> active = np.array([[1, 0], [0, 1], [1, 1]], dtype=bool)
    >>> za = np.array([[2.0, 0, 0], [0, 1.0, 0], [1.0, 1.0, 0]])
    >>> zb = np.array([[1.0, 0, 0], [0, 0, 3.0], [1.0, 0, 1.0]])
    >>> shared_concept_capture(za, zb, active, [True, True, True])
    0.5
    """
    za = check_array(codes_a) > 0
    zb = check_array(codes_b) > 0
    active = check_array(true_active, dtype=None).astype(bool)
    bimodal = np.asarray(bimodal, dtype=bool)
    if za.shape != zb.shape or active.shape[0] != za.shape[0]:
        raise ValueError(
            "codes_a, codes_b and true_active need one row per pair, and codes_a "
            f"and codes_b the same shape; got {za.shape}, {zb.shape} and "
            f"{active.shape}."
        )
    if bimodal.shape != (za.shape[1],):
        raise ValueError(f"bimodal needs one entry per atom ({za.shape[1]}).")
    both = (za & zb).astype(float)  # (n_pairs, n_atoms)
    hits = active.T.astype(float) @ both  # pairs where c active and j on both
    n_active = active.sum(axis=0)
    n_both = both.sum(axis=0)
    keep = n_active > 0
    if not keep.any():
        raise ValueError("No shared concept is active in any pair.")
    best = hits.argmax(axis=1)
    rows = np.arange(len(best))
    recall = hits[rows, best] / np.maximum(n_active, 1)
    precision = hits[rows, best] / np.maximum(n_both[best], 1)
    captured = (recall > min_rate) & (precision > min_rate) & bimodal[best]
    return float(captured[keep].mean())
