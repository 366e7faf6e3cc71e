"""UniversalSAE on synthetic models with known shared and specific concepts.

Five seeds (data and model) of the generator of ``tests/test_universal.py``:
two models (16 and 24 features) that map 6 universal sparse concepts, plus
2 concepts of their own each, with random unit directions. For each seed:

- with the model-specific concepts: the cross-reconstruction R^2 over its
  ceiling (the shared part's share of the target model's variance), and how
  the best-matching atom of each true concept is labelled;
- with universal concepts only: the off-diagonal cross R^2, for the universal
  objective and for the ablation that reconstructs only the source model
  (each step's loss on its own block).

Run: ``PYTHONPATH=. python benchmarks/bench_universal.py`` (about a minute
per seed on one CPU thread).
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_universal import N_UNIVERSAL, PARAMS, best_match, make_models  # noqa: E402

from skconcepts.sae import UniversalSAE  # noqa: E402


class SelfOnlySAE(UniversalSAE):
    """The ablation: each step reconstructs only the model it encoded from."""

    def _loss_terms(self, out, side_b, session):
        full = session.feature_weight
        a, b = session.module.bounds[session.module.source]
        mask = torch.zeros_like(full)
        mask[a:b] = 1
        session.feature_weight = full * mask
        try:
            return super()._loss_terms(out, side_b, session)
        finally:
            session.feature_weight = full


def run(seed):
    X, dirs, shared = make_models(seed)
    est = UniversalSAE(random_state=seed, **PARAMS).fit(X)
    ratio = [est.cross_r2_[0, 1] / shared[1], est.cross_r2_[1, 0] / shared[0]]
    univ = spec = 0
    for j, (U, V) in enumerate(dirs):
        _, au = best_match(U, est.decoders_[j])
        _, av = best_match(V, est.decoders_[j])
        univ += int((est.concept_scope_[au] == "universal").sum())
        spec += int((est.concept_scope_[av] == f"model{j}").sum())
    Xs, _, _ = make_models(seed, n_private=0)
    params = dict(PARAMS, n_concepts=8)
    off = {}
    for name, cls in (("universal", UniversalSAE), ("self only", SelfOnlySAE)):
        e = cls(random_state=seed, **params).fit(Xs)
        off[name] = min(e.cross_r2_[0, 1], e.cross_r2_[1, 0])
    return {
        "diag R2 (min)": float(np.diag(est.cross_r2_).min()),
        "cross R2 / ceiling (min)": float(min(ratio)),
        "universal labelled (of 12)": univ,
        "specific labelled (of 4)": spec,
        "shared-only cross R2, universal": float(off["universal"]),
        "shared-only cross R2, self only": float(off["self only"]),
    }


if __name__ == "__main__":
    torch.set_num_threads(1)
    rows = [run(seed) for seed in range(5)]
    print(f"{N_UNIVERSAL} universal + 2x2 specific concepts, 5 seeds (mean +- std)")
    print("| measure | mean | std | per seed |")
    print("|---|---|---|---|")
    for key in rows[0]:
        v = np.array([r[key] for r in rows], dtype=float)
        per = ", ".join(f"{x:.3g}" for x in v)
        print(f"| {key} | {v.mean():.3f} | {v.std():.3f} | {per} |")
