"""Where and what: concept maps, top inputs per concept, recursive concepts.

- Positions: :func:`positions_to_rows` / :func:`rows_to_positions` turn
  activations with positions (feature maps, patch tokens, frames) into the
  rows a concept extractor takes, and codes back onto the grid.
- Concept maps (CRAFT): :func:`concept_maps`, :func:`upsample_maps`,
  :func:`importance_weighted_maps`.
- Top inputs per concept: :func:`top_exemplars`.
- Recursive concepts (CRAFT): :func:`ambiguity_scores` and
  :class:`RecursiveConcepts`.
- Concepts rendered in input space (Listen to Interpret):
  :class:`NMFInterpreter`, :func:`spectrogram_to_audio`.
"""

from ._exemplars import top_exemplars
from ._interpreter import NMFInterpreter, spectrogram_to_audio
from ._maps import concept_maps, importance_weighted_maps, upsample_maps
from ._positions import positions_to_rows, rows_to_positions
from ._recursive import RecursiveConcepts, ambiguity_scores

__all__ = [
    "RecursiveConcepts",
    "ambiguity_scores",
    "concept_maps",
    "importance_weighted_maps",
    "positions_to_rows",
    "rows_to_positions",
    "top_exemplars",
    "upsample_maps",
    "NMFInterpreter",
    "spectrogram_to_audio",
]

# differentiable NMF codes (issue 18, optional point: CRAFT's KKT gradient)
from ._diffnmf import nmf_codes_torch  # noqa: E402

__all__ += ["nmf_codes_torch"]
