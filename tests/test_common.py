"""scikit-learn's common checks over every public estimator of skconcepts."""

import pytest
from sklearn.utils.estimator_checks import (
    check_dataframe_column_names_consistency,
    check_get_feature_names_out_error,
    check_param_validation,
    check_set_output_transform,
    check_set_output_transform_pandas,
    check_transformer_get_feature_names_out,
    check_transformer_get_feature_names_out_pandas,
    parametrize_with_checks,
)

from skconcepts.utils import all_estimators
from skconcepts.utils._test_common import check_instances, expected_failed_checks

ESTIMATORS = [
    est for name, cls in all_estimators() for est in check_instances(name, cls)
]


def test_estimators_found():
    names = {type(e).__name__ for e in ESTIMATORS}
    assert "NMFConcepts" in names


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def _ids(est):
    return type(est).__name__


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=_ids)
def test_param_validation(estimator):
    check_param_validation(type(estimator).__name__, estimator)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=_ids)
def test_dataframe_column_names_consistency(estimator):
    check_dataframe_column_names_consistency(type(estimator).__name__, estimator)


TRANSFORMERS = [e for e in ESTIMATORS if hasattr(e, "transform")]


@pytest.mark.parametrize("estimator", TRANSFORMERS, ids=_ids)
def test_set_output_transform(estimator):
    name = type(estimator).__name__
    check_set_output_transform(name, estimator)
    pytest.importorskip("pandas")
    check_set_output_transform_pandas(name, estimator)


@pytest.mark.parametrize("estimator", TRANSFORMERS, ids=_ids)
def test_transformer_get_feature_names_out(estimator):
    name = type(estimator).__name__
    check_transformer_get_feature_names_out(name, estimator)
    pytest.importorskip("pandas")
    check_transformer_get_feature_names_out_pandas(name, estimator)


@pytest.mark.parametrize("estimator", TRANSFORMERS, ids=_ids)
def test_get_feature_names_out_error(estimator):
    check_get_feature_names_out_error(type(estimator).__name__, estimator)
