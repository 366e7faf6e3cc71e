"""Sparse autoencoders on one training engine.

:class:`TopKSAE` is the plain SAE (TopK, BatchTopK, JumpReLU or ReLU + L1
sparsity, AuxK dead-atom revival); :class:`ArchetypalSAE` anchors its atoms in
the data (A-SAE / RA-SAE). Both are trained by the engine in
:mod:`skconcepts.sae._engine`, whose module docstring documents the plug-in
interface for new SAEs. :func:`load_pretrained` / :func:`save_pretrained` read
and write SAEs of SAELens, sparsify, dictionary_learning and overcomplete.

:class:`MatryoshkaSAE` trains nested dictionaries on the same engine: every
prefix of its dictionary reconstructs the data on its own.
"""

from ._aligned import AlignedSAE
from ._archetypal import ArchetypalSAE
from ._callbacks import Checkpoint, LearningRateSchedule
from ._matryoshka import MatryoshkaSAE
from ._pretrained import load_pretrained, save_pretrained
from ._topk import TopKSAE
from ._universal import UniversalSAE

__all__ = [
    "AlignedSAE",
    "ArchetypalSAE",
    "Checkpoint",
    "LearningRateSchedule",
    "TopKSAE",
    "UniversalSAE",
    "load_pretrained",
    "save_pretrained",
    "MatryoshkaSAE",
]
