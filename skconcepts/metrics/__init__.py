"""Metrics for concept dictionaries, codes, importances and erasure.

One leaf module per family, each importing only from the layers below it:

- ``_reconstruction``: :func:`reconstruction_r2`, :func:`relative_error`;
- ``_dictionary``: sparse codes and dictionaries (:func:`mean_l0`,
  :func:`dead_fraction`, :func:`dictionary_stability`, :func:`atom_recovery`);
- ``_modality``: two modalities (:func:`modality_gap`,
  :func:`retrieval_recall_at_k`, :func:`knn_distance`,
  :func:`atom_label_accuracy`, :func:`shared_concept_capture`);
- ``_erasure``: :func:`leakage` and the default probes;
- ``_ground_truth``: synthetic data with known features
  (:func:`feature_mcc`, :func:`feature_f1`, :func:`absorption_score`);
- the fidelity of importances (:func:`c_deletion`, :func:`c_insertion`,
  :func:`c_mufidelity`) lives beside the importance engine it runs on,
  in ``skconcepts.importance._fidelity``, and is re-exported here.
- ``_evaluation``: the SAE evaluation suite for any extractor
  (:func:`fraction_variance_unexplained`, :func:`latent_density`,
  :func:`latent_density_histogram`, :func:`dense_fraction`,
  :func:`k_sparse_probing`, :func:`cross_seed_stability`,
  :func:`evaluate_sae`).
"""

from ..importance._fidelity import c_deletion, c_insertion, c_mufidelity
from ._dictionary import atom_recovery, dead_fraction, dictionary_stability, mean_l0
from ._erasure import leakage
from ._evaluation import (
    cross_seed_stability,
    dense_fraction,
    evaluate_sae,
    fraction_variance_unexplained,
    k_sparse_probing,
    latent_density,
    latent_density_histogram,
)
from ._ground_truth import absorption_score, feature_f1, feature_mcc
from ._modality import (
    atom_label_accuracy,
    knn_distance,
    modality_gap,
    retrieval_recall_at_k,
    shared_concept_capture,  # noqa: F401 (public, not in __all__ as before)
)
from ._reconstruction import reconstruction_r2, relative_error

__all__ = [
    "c_deletion",
    "c_insertion",
    "c_mufidelity",
    "atom_label_accuracy",
    "atom_recovery",
    "dead_fraction",
    "dictionary_stability",
    "knn_distance",
    "mean_l0",
    "leakage",
    "modality_gap",
    "reconstruction_r2",
    "relative_error",
    "retrieval_recall_at_k",
    "absorption_score",
    "feature_f1",
    "feature_mcc",
    "cross_seed_stability",
    "dense_fraction",
    "evaluate_sae",
    "fraction_variance_unexplained",
    "k_sparse_probing",
    "latent_density",
    "latent_density_histogram",
]
