"""Instances and expected failures for the scikit-learn common checks.

``tests/test_common.py`` runs ``parametrize_with_checks`` over every public
estimator found by :func:`skconcepts.utils.all_estimators`. Estimators are
built with their defaults, updated with ``CHECK_PARAMS`` (cheap settings for
the checks' tiny arrays), or by a factory in ``CHECK_FACTORIES`` for
meta-estimators whose constructor needs arguments.

Edit one entry at a time; every estimator family adds its own lines.
"""

# class name -> keyword arguments that keep the checks fast
CHECK_PARAMS = {
    "NMFConcepts": {"n_concepts": 2, "max_iter": 50},
    "SemiNMFConcepts": {"n_concepts": 2, "max_iter": 50},
    "ConvexNMFConcepts": {"n_concepts": 2, "max_iter": 50},
}


def _sae_instances(name):
    # a small dictionary and few epochs; the learned-threshold rules too, since
    # their inference path (threshold, not batch statistics) differs
    from skconcepts import sae

    cls = getattr(sae, name)
    common = dict(n_concepts=4, top_k=2, max_epochs=4, batch_size=16)
    if name == "ArchetypalSAE":
        extra = [
            dict(activation="batchtopk"),
            dict(activation="jumprelu", relaxation=0.0),
        ]
    else:
        extra = [dict(activation="batchtopk"), dict(activation="relu")]
    return [cls(**common)] + [cls(**common, **e) for e in extra]


def _aligned_instances():
    # the Iso-Energy form (the checks' targets are not paired data) with the
    # TopK and the learned-threshold rules
    from skconcepts.sae import AlignedSAE

    common = dict(n_concepts=4, top_k=2, max_epochs=4, batch_size=16)
    return [AlignedSAE(**common), AlignedSAE(activation="batchtopk", **common)]


def _matryoshka_instances():
    # nested prefixes of 1, 2 and 4 atoms with the default BatchTopK rule, and
    # the TopK fast path (its own prefix terms)
    from skconcepts.sae import MatryoshkaSAE

    common = dict(n_concepts=4, top_k=2, max_epochs=4, batch_size=16)
    return [MatryoshkaSAE(**common), MatryoshkaSAE(activation="topk", **common)]


def _taco_instances():
    # a tiny probe and few Sobol' designs; both the automatic stopping rule
    # (residual dropped) and a fixed number of removed concepts (residual kept)
    from sklearn.neural_network import MLPClassifier

    from skconcepts.erasure import TaCoEraser

    common = dict(n_concepts=2, n_designs=4, max_samples=16, cv=2)
    return [
        TaCoEraser(probe=MLPClassifier(hidden_layer_sizes=(4,), max_iter=30), **common),
        TaCoEraser(n_remove=1, residual=True, **common),
    ]


# --- importance family: a head that takes any number of features (picklable)
class _ImportanceCheckHead:
    """Head for the common checks: one non-linear output, any n_features.

    A class with a fixed ``repr`` rather than a function, so that the test ids
    (built from the estimator's repr) are the same in every pytest-xdist worker.
    """

    def __call__(self, X):
        import numpy as np

        return np.tanh(X).sum(axis=1)

    def __repr__(self):
        return "_ImportanceCheckHead()"


_importance_check_head = _ImportanceCheckHead()


def _importance_instances(name):
    from sklearn.decomposition import PCA

    import skconcepts.importance as imp

    common = {"extractor": PCA(), "head": _importance_check_head, "random_state": 0}
    if name == "SobolConceptImportance":
        return [imp.SobolConceptImportance(n_designs=8, n_replicates=2, **common)]
    return [
        imp.ConceptAttribution(method=m, n_steps=4, **common)
        for m in ("occlusion", "integrated_gradients")
    ]


# class name -> zero-argument callable returning a list of instances
CHECK_FACTORIES = {"TaCoEraser": _taco_instances}
CHECK_FACTORIES["SobolConceptImportance"] = lambda: _importance_instances(
    "SobolConceptImportance"
)
CHECK_FACTORIES["ConceptAttribution"] = lambda: _importance_instances(
    "ConceptAttribution"
)
CHECK_FACTORIES["TopKSAE"] = lambda: _sae_instances("TopKSAE")
CHECK_FACTORIES["ArchetypalSAE"] = lambda: _sae_instances("ArchetypalSAE")
CHECK_FACTORIES["AlignedSAE"] = lambda: _aligned_instances()
CHECK_FACTORIES["MatryoshkaSAE"] = lambda: _matryoshka_instances()


def _universal_instances():
    # feature_groups=None: one model (the checks feed arrays of any width);
    # TopK and a learned-threshold rule
    from skconcepts.sae import UniversalSAE

    common = dict(n_concepts=4, top_k=2, max_epochs=4, batch_size=16)
    return [UniversalSAE(**common), UniversalSAE(activation="batchtopk", **common)]


CHECK_FACTORIES["UniversalSAE"] = _universal_instances

CHECK_PARAMS["RecursiveConcepts"] = {
    "n_concepts": 2,
    "n_top": 0.5,
    "n_designs": 4,
    "random_state": 0,
}

# class name -> {check name: reason a reviewer would accept}
EXPECTED_FAILED_CHECKS = {}


def check_instances(name, cls):
    """The instances of ``cls`` the common checks run on."""
    if name in CHECK_FACTORIES:
        return list(CHECK_FACTORIES[name]())
    params = dict(CHECK_PARAMS.get(name, {}))
    return [cls(**params)]


def expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


# --- compositions: each meta-estimator around each extractor family
class PlainRotationExtractor:
    """A fitted third-party extractor: no ``fit``, no scikit-learn base class.

    What a user brings from elsewhere (a pretrained model with ``transform``
    and ``inverse_transform``), made to work for any number of features so
    that scikit-learn's common checks, which feed arrays of several widths,
    can run on a meta-estimator around it with ``prefit=True``: the codes are
    the orthonormal DCT-II coefficients of the centred, scaled activations,
    ``u = (x - offset) Q^T * scale`` (one concept per feature, ``Q`` the
    ``d x d`` DCT matrix), decoded by ``x = u Q / scale + offset``. Picklable
    (a module-level class), deterministic and stateless.
    """

    def __init__(self, offset=0.5, scale=2.0):
        self.offset = offset
        self.scale = scale

    @staticmethod
    def _basis(d):
        import numpy as np
        from scipy.fft import dct

        return dct(np.eye(d), norm="ortho", axis=0)  # rows: orthonormal atoms

    def transform(self, X):
        import numpy as np

        X = np.asarray(X)
        return (X - self.offset) @ self._basis(X.shape[1]).T * self.scale

    def inverse_transform(self, U):
        import numpy as np

        U = np.asarray(U)
        return U @ self._basis(U.shape[1]) / self.scale + self.offset

    def __repr__(self):
        return "PlainRotationExtractor()"


def composition_extractors():
    """(name, extractor, prefit) for each extractor family of the checks."""
    from sklearn.decomposition import NMF, PCA

    from skconcepts import NMFConcepts, SemiNMFConcepts
    from skconcepts.sae import ArchetypalSAE, TopKSAE

    sae = dict(n_concepts=2, top_k=1, max_epochs=2, batch_size=16, random_state=0)
    return [
        ("NMFConcepts", NMFConcepts(n_concepts=2, max_iter=30, random_state=0), False),
        (
            "SemiNMFConcepts",
            SemiNMFConcepts(n_concepts=2, max_iter=30, random_state=0),
            False,
        ),
        ("TopKSAE", TopKSAE(**sae), False),
        ("ArchetypalSAE", ArchetypalSAE(**sae), False),
        ("PCA", PCA(), False),
        # sklearn NMF solves for the codes iteratively: a tight tolerance makes
        # its transform row-independent to the checks' precision
        (
            "NMF",
            NMF(n_components=2, tol=1e-12, max_iter=2000, random_state=0),
            False,
        ),
        ("plain", PlainRotationExtractor(), True),
    ]


def composition_instances():
    """Every meta-estimator around every extractor family, cheap settings."""
    from sklearn.linear_model import RidgeClassifier

    from skconcepts.erasure import TaCoEraser
    from skconcepts.importance import ConceptAttribution, SobolConceptImportance

    head = _importance_check_head
    out = []
    for _, ext, prefit in composition_extractors():
        kw = dict(prefit=prefit, random_state=0)
        out.append(SobolConceptImportance(ext, head, n_designs=4, n_replicates=2, **kw))
        out.append(ConceptAttribution(ext, head, method="occlusion", **kw))
        out.append(
            TaCoEraser(
                decomposition=ext,
                n_remove=1,
                n_designs=4,
                max_samples=16,
                # a closed-form probe (with decision_function) keeps it fast
                probe=RidgeClassifier(),
                **kw,
            )
        )
    return out


# --- concept shift: the checks' targets have another width than X, so the
# least-squares mapping; k-means (default) and an extractor's signed codes
def _shift_instances():
    from sklearn.decomposition import PCA

    from skconcepts.shift import ConceptShift

    return [
        ConceptShift(n_concepts=2, mapping="linear", random_state=0),
        ConceptShift(PCA(), mapping="linear", random_state=0),
    ]


CHECK_FACTORIES["ConceptShift"] = _shift_instances


# --- NMFInterpreter: fit needs a third input (inputs=V, the input-space
# representation), which the checks cannot give. The checks run on a subclass
# whose only change is that a missing ``inputs`` is |X| read as one frame of
# n_features bins (``(n, n_features, 1)``): every other path (validation,
# dictionary, training, transform, pickling, set_output) is the estimator's.
def _nmf_interpreter_class():
    import numpy as np

    from skconcepts.inspection import NMFInterpreter

    class NMFInterpreterOnRows(NMFInterpreter):
        def _check_inputs(self, inputs, X, *, reset):
            if inputs is None:
                inputs = np.abs(np.asarray(X, dtype=np.float64))
                inputs = inputs.reshape(X.shape[0], -1, 1)
            return super()._check_inputs(inputs, X, reset=reset)

    NMFInterpreterOnRows.__module__ = __name__
    NMFInterpreterOnRows.__qualname__ = "NMFInterpreterOnRows"
    return NMFInterpreterOnRows


def __getattr__(name):  # the checks' subclass, built once, picklable by name
    if name == "NMFInterpreterOnRows":
        cls = _nmf_interpreter_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def _nmf_interpreter_instances():
    cls = globals().get("NMFInterpreterOnRows") or __getattr__("NMFInterpreterOnRows")
    common = dict(n_components=2, max_iter=3, nmf_max_iter=20, batch_size=16)
    return [cls(hidden_layer_sizes=(8,), **common)]


CHECK_FACTORIES["NMFInterpreter"] = _nmf_interpreter_instances
