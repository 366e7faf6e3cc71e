"""pytest parameters for every public estimator (the common checks' instances)."""

import pytest

from skconcepts.utils import all_estimators
from skconcepts.utils._test_common import check_instances


def estimator_params():
    """One ``pytest.param`` per instance; a broken factory becomes one failure."""
    params = []
    for name, cls in all_estimators():
        try:
            instances = check_instances(name, cls)
        except Exception as exc:  # surfaced by the tests that use it
            params.append(pytest.param(exc, id=f"{name}-factory"))
            continue
        for i, est in enumerate(instances):
            params.append(pytest.param(est, id=f"{name}-{i}"))
    return params
