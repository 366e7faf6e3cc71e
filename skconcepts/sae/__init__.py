"""Sparse autoencoders on one training engine.

:class:`TopKSAE` is the plain SAE (TopK, BatchTopK, JumpReLU or ReLU + L1
sparsity, AuxK dead-atom revival); :class:`ArchetypalSAE` anchors its atoms in
the data (A-SAE / RA-SAE). Both are trained by the engine in
:mod:`skconcepts.sae._engine`, whose module docstring documents the plug-in
interface for new SAEs.
"""

from ._aligned import AlignedSAE
from ._archetypal import ArchetypalSAE
from ._callbacks import Checkpoint, LearningRateSchedule
from ._topk import TopKSAE

__all__ = [
    "AlignedSAE",
    "ArchetypalSAE",
    "Checkpoint",
    "LearningRateSchedule",
    "TopKSAE",
]
