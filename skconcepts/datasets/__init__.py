"""Datasets: synthetic generators with known ground truth, small real sets.

Every generator here is deterministic given ``random_state`` and needs no
network. Functions that call an optional model (a sentence encoder) say so
and raise an ``ImportError`` naming the extra to install when it is missing.

One module per kind: ``_text`` (word lists, :func:`make_biographies`),
``_embeddings`` (the MiniLM sentence encoder: :func:`embed_texts`,
:func:`make_biography_embeddings`), ``_synthetic``
(:func:`make_sparse_atoms`, :func:`make_two_modality`) and ``_digits``
(:func:`load_digits_activations`, :class:`LinearHead`), ``_audio``
(:func:`make_synthetic_audio`: labelled clips and their STFTs).
"""

from ._audio import make_synthetic_audio
from ._digits import LinearHead, load_digits_activations
from ._embeddings import embed_texts, make_biography_embeddings
from ._synthetic import make_hierarchical_features, make_sparse_atoms, make_two_modality
from ._text import BIOGRAPHY_OCCUPATIONS, make_biographies

__all__ = [
    "BIOGRAPHY_OCCUPATIONS",
    "LinearHead",
    "embed_texts",
    "load_digits_activations",
    "make_biographies",
    "make_biography_embeddings",
    "make_sparse_atoms",
    "make_two_modality",
    "make_hierarchical_features",
    "make_synthetic_audio",
]
