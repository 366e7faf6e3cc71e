"""Concept importance: Sobol' indices and other attributions in concept space.

Public estimators: :class:`SobolConceptImportance` (CRAFT's Sobol' indices)
and :class:`ConceptAttribution` (occlusion, gradient x input, integrated
gradients). The functions below are the engine they share (the TaCo eraser
reuses the Sobol' part).
"""

from ._attribution import (
    concept_gradient_input,
    concept_integrated_gradients,
    concept_occlusion,
)
from ._engine import affine_decoder, evaluate_masks, head_outputs
from ._estimators import ConceptAttribution, SobolConceptImportance
from ._sobol import concept_sobol_indices, sobol_design, sobol_indices

__all__ = [
    "ConceptAttribution",
    "SobolConceptImportance",
    "affine_decoder",
    "concept_gradient_input",
    "concept_integrated_gradients",
    "concept_occlusion",
    "concept_sobol_indices",
    "evaluate_masks",
    "head_outputs",
    "sobol_design",
    "sobol_indices",
]
