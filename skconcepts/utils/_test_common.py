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
