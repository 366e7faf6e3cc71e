"""Imports of scikit-learn internals, and what differs between its versions.

scikit-learn keeps its parameter validation machinery in private modules.
Everything we take from there goes through this module so that a change in
scikit-learn only has to be absorbed in one place. So do the differences
between the supported scikit-learn versions (``pyproject.toml``: 1.6 to 1.10),
each behind an explicit version guard; the tests reach scikit-learn's private
modules only through here.
"""

import contextlib
import os
import tempfile

import numpy as np
import sklearn
from sklearn.base import _fit_context
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import (
    HasMethods,
    Hidden,
    Integral,
    Interval,
    InvalidParameterError,
    Options,
    Real,
    RealNotInt,
    StrOptions,
    validate_params,
)
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_is_fitted,
    validate_data,
)

from ._backend import STREAM_MEMORY_SHARE, default_batch_size

__all__ = [
    "SKLEARN_VERSION",
    "HasMethods",
    "Hidden",
    "Integral",
    "Interval",
    "InvalidParameterError",
    "Options",
    "Real",
    "RealNotInt",
    "StrOptions",
    "_check_feature_names_in",
    "_fit_context",
    "check_is_fitted",
    "probe_fit_input",
    "sklearn_initialize_nmf",
    "validate_data",
    "validate_params",
]


def _major_minor(version):
    """``(major, minor)`` of a version string such as ``"1.6.1"`` or ``"1.9.dev0"``."""
    major, minor = version.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


#: ``(major, minor)`` of the installed scikit-learn.
SKLEARN_VERSION = _major_minor(sklearn.__version__)

# ------------------------------------------------------------- for the tests
#: The name under which ``sklearn.decomposition._nmf`` calls the randomized
#: SVD of its NNDSVD initialisation: the public ``randomized_svd`` up to
#: scikit-learn 1.6, the private ``_randomized_svd`` from 1.7 on.
SKLEARN_NMF_SVD_NAME = (
    "_randomized_svd" if SKLEARN_VERSION >= (1, 7) else "randomized_svd"
)


def sklearn_nmf_module():
    """scikit-learn's private NMF module (tests compare our NNDSVD init to it).

    Its ``_initialize_nmf(X, n_components, init=..., random_state=...)`` and
    the SVD it calls (named :data:`SKLEARN_NMF_SVD_NAME`) exist in every
    supported version.
    """
    from sklearn.decomposition import _nmf

    return _nmf


def sklearn_initialize_nmf(X, n_components, init=None, random_state=None):
    """scikit-learn's NMF initialisation ``(W, H)`` (private; for the tests)."""
    return sklearn_nmf_module()._initialize_nmf(
        X, n_components, init=init, random_state=random_state
    )


# ------------------------------------------------------------------- probes
#: scikit-learn < 1.9: ``LogisticRegression(solver="lbfgs")`` (the default)
#: converts float32 ``X`` to a float64 copy in memory; 1.9 keeps float32.
LBFGS_UPCASTS_FLOAT32 = SKLEARN_VERSION < (1, 9)


def _copies_to_float64(probe):
    return (
        LBFGS_UPCASTS_FLOAT32
        and isinstance(probe, LogisticRegression)
        and probe.get_params()["solver"] == "lbfgs"
    )


@contextlib.contextmanager
def probe_fit_input(probe, X, on_disk, batch_rows=None):
    """``X`` as ``probe.fit`` should be given it: no in-memory copy of on-disk data.

    On scikit-learn < 1.9, ``LogisticRegression(solver="lbfgs")`` converts
    float32 input to float64: for ``X`` on disk (``on_disk``, e.g. a
    :class:`numpy.memmap`) that is an anonymous copy twice the size of the
    file. There, ``X`` is converted by row batches into a float64 memmap in a
    temporary file (removed on exit), which the probe takes without a copy;
    the fitted probe is the one the in-memory conversion gives. Otherwise
    ``X`` itself is yielded. ``batch_rows`` (None: 1/64 of scikit-learn's
    ``working_memory`` in float64 rows) bounds the rows converted at once.
    """
    if not (on_disk and X.dtype == np.float32 and _copies_to_float64(probe)):
        yield X
        return
    if batch_rows is None:
        batch_rows = default_batch_size(X.shape[1], share=STREAM_MEMORY_SHARE)
    with tempfile.TemporaryDirectory(prefix="skconcepts-") as tmp:
        X64 = np.lib.format.open_memmap(
            os.path.join(tmp, "X.npy"), mode="w+", dtype=np.float64, shape=X.shape
        )
        for start in range(0, X.shape[0], batch_rows):
            X64[start : start + batch_rows] = X[start : start + batch_rows]
        X64.flush()
        try:
            yield X64
        finally:
            del X64
