"""Concept shift: how the concepts of one model move in a changed model.

:class:`ConceptShift` (Khayatan, Shukor, Parekh, Dapogny and Cord, 2025)
reads paired activations of the same inputs through an original model and a
fine-tuned (or otherwise changed) one as a multi-output regression: concepts
are learnt on the original activations, each gets a shift vector, and the
changed activations of new inputs are predicted from the shifts.
"""

from ._concept_shift import ConceptShift

__all__ = ["ConceptShift"]
