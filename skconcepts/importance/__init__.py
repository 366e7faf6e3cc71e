"""Concept importance: Sobol' indices and other attributions in concept space."""

from ._engine import affine_decoder, evaluate_masks, head_outputs
from ._sobol import concept_sobol_indices, sobol_design, sobol_indices

__all__ = [
    "affine_decoder",
    "concept_sobol_indices",
    "evaluate_masks",
    "head_outputs",
    "sobol_design",
    "sobol_indices",
]
