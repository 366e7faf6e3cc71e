"""The NMF family of concept extractors.

:class:`NMFConcepts` (non-negative data, CRAFT / COCKATIEL),
:class:`SemiNMFConcepts` and :class:`ConvexNMFConcepts` (signed data). All
three share one torch solver module (``_solvers``) and one row-independent
non-negative least-squares ``transform``.
"""

from ._nmf import NMFConcepts
from ._signed import ConvexNMFConcepts, SemiNMFConcepts

__all__ = ["ConvexNMFConcepts", "NMFConcepts", "SemiNMFConcepts"]
