"""skconcepts: concept-based interpretability as scikit-learn estimators.

Public names are loaded lazily so that ``import skconcepts`` is fast and has
no side effects (torch is only imported when an estimator is used).
"""

import importlib

__version__ = "0.1.0.dev0"

# public name -> submodule that defines it
_LAZY = {
    "ConceptExtractor": "skconcepts.base",
    # NMF family
    "NMFConcepts": "skconcepts.decomposition",
    "SemiNMFConcepts": "skconcepts.decomposition",
    "ConvexNMFConcepts": "skconcepts.decomposition",
    # sparse autoencoders
    "TopKSAE": "skconcepts.sae",
    "ArchetypalSAE": "skconcepts.sae",
    "AlignedSAE": "skconcepts.sae",
    "MatryoshkaSAE": "skconcepts.sae",
    # importance
    "SobolConceptImportance": "skconcepts.importance",
    "ConceptAttribution": "skconcepts.importance",
    # erasure
    "TaCoEraser": "skconcepts.erasure",
    # data larger than memory, distributed training
    "as_memmap": "skconcepts._io",
    "fit_chunks": "skconcepts._io",
    "iter_chunks": "skconcepts._io",
    # concept shift between an original and a changed model
    "ConceptShift": "skconcepts.shift",
    # one concept space for several models
    "UniversalSAE": "skconcepts.sae",
    # inspection: where concepts are, recursive concepts
    "RecursiveConcepts": "skconcepts.inspection",
    # concepts rendered in input space (Listen to Interpret)
    "NMFInterpreter": "skconcepts.inspection",
}

_SUBMODULES = [
    "base",
    "datasets",
    "decomposition",
    "distributed",
    "erasure",
    "importance",
    "metrics",
    "plotting",
    "sae",
    "utils",
    "shift",
    "inspection",
]

__all__ = sorted(_LAZY) + _SUBMODULES


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return getattr(module, name)
    if name in _SUBMODULES:
        return importlib.import_module(f"skconcepts.{name}")
    raise AttributeError(f"module 'skconcepts' has no attribute {name!r}")


def __dir__():
    return __all__
