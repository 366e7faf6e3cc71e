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

# class name -> zero-argument callable returning a list of instances
CHECK_FACTORIES = {}

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
