"""Imports of scikit-learn internals used by our estimators.

scikit-learn keeps its parameter validation machinery in private modules.
Everything we take from there goes through this module so that a change in
scikit-learn only has to be absorbed in one place.
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Hidden,
    Integral,
    Interval,
    Options,
    Real,
    RealNotInt,
    StrOptions,
    validate_params,
)
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = [
    "HasMethods",
    "Hidden",
    "Integral",
    "Interval",
    "Options",
    "Real",
    "RealNotInt",
    "StrOptions",
    "_fit_context",
    "check_is_fitted",
    "validate_data",
    "validate_params",
]
