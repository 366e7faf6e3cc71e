"""scikit-learn's common checks over every meta-estimator around every extractor.

Each of :class:`~skconcepts.SobolConceptImportance`,
:class:`~skconcepts.ConceptAttribution` and :class:`~skconcepts.TaCoEraser`
(its ``decomposition``) is run around ``NMFConcepts``, ``SemiNMFConcepts``,
``TopKSAE``, ``ArchetypalSAE``, scikit-learn's ``PCA`` and ``NMF``, and a
plain prefit object (no ``fit``, no scikit-learn base), with no expected
failure.
"""

import numpy as np
import pytest
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks

from skconcepts import NMFConcepts
from skconcepts.importance import SobolConceptImportance
from skconcepts.utils._test_common import (
    PlainRotationExtractor,
    _importance_check_head,
    composition_instances,
)

COMPOSITIONS = composition_instances()


def _id(est):
    inner = getattr(est, "extractor", None)
    if inner is None:
        inner = est.decomposition
    return f"{type(est).__name__}({type(inner).__name__})"


def test_every_family_is_composed():
    ids = {_id(e) for e in COMPOSITIONS}
    for meta in ("SobolConceptImportance", "ConceptAttribution", "TaCoEraser"):
        for ext in (
            "NMFConcepts",
            "SemiNMFConcepts",
            "TopKSAE",
            "ArchetypalSAE",
            "PCA",
            "NMF",
            "PlainRotationExtractor",
        ):
            assert f"{meta}({ext})" in ids


@parametrize_with_checks(COMPOSITIONS, expected_failed_checks=lambda est: {})
def test_composition_is_conformant(estimator, check):
    check(estimator)


def test_positive_only_taken_from_the_extractor():
    """Issue 11 point 2: the NMF-based meta-estimator passes check_estimator."""
    est = SobolConceptImportance(
        NMFConcepts(n_concepts=2, max_iter=30, random_state=0),
        _importance_check_head,
        n_designs=8,
        n_replicates=2,
        random_state=0,
    )
    assert get_tags(est).input_tags.positive_only
    check_estimator(est)  # raises on the first failing check
    with pytest.raises(ValueError, match="Negative values in data"):
        est.fit(-np.ones((10, 3)))


def test_plain_extractor_has_nothing_of_scikit_learn():
    ext = PlainRotationExtractor()
    assert not hasattr(ext, "fit") and not hasattr(ext, "get_params")
    assert not hasattr(ext, "__sklearn_tags__")
    X = np.random.RandomState(0).normal(size=(5, 4))
    np.testing.assert_allclose(ext.inverse_transform(ext.transform(X)), X)
