"""NMFInterpreter (Listen to Interpret) on synthetic audio: does it find the tone?

Six seeds (data, classifier and interpreter) of the setting of
``tests/test_interpreter.py``: 240 clips of ``make_synthetic_audio`` (180 to
fit, 60 held out), a small convolutional classifier trained on their log
spectrograms, ``NMFInterpreter(8, max_iter=60)`` on its frame-wise hidden
layer. For each setting (the default, ``fidelity=1.0``, the paper's ReLU, and
the two ablations) it prints, per seed, how many of the 3 classes have the
class tone's atom as their most important component, then the held-out
fidelity, the training reconstruction R^2 and the share of near-zero codes
(mean ± std over seeds). Quality figures only (deterministic), no timings.

Run: ``PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_interpreter.py``
(a few minutes on one CPU thread). The table is in ``docs/guide/interpreter.md``.
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_interpreter as T  # noqa: E402

SETTINGS = {
    "default (softplus, fidelity=0.2)": {},
    "fidelity=1.0": dict(fidelity=1.0),
    "activation='relu'": dict(activation="relu"),
    "activation='relu', fidelity=1.0": dict(activation="relu", fidelity=1.0),
    "fidelity=0 (ablation)": dict(fidelity=0.0),
    "sparsity=0 (ablation)": dict(sparsity=0.0),
}


def main(seeds=range(6)):
    torch.set_num_threads(1)
    rows = {name: [] for name in SETTINGS}
    for seed in seeds:
        audio = T._audio_and_classifier(seed)
        data, H, logits = audio
        test = slice(T.N_TRAIN, None)
        acc = np.mean(logits[test].argmax(1) == data.target[test])
        for name, kw in SETTINGS.items():
            interp = T._fit(audio, random_state=seed, **kw)
            peaks = interp.components_.argmax(axis=1)
            top = [
                np.argmax(interp.component_importance(H[test], c, y=logits[test]))
                for c in range(3)
            ]
            found = sum(peaks[top[c]] == data.class_bins[c] for c in range(3))
            codes = interp.transform(H[: T.N_TRAIN]) / interp.input_scale_
            row = (
                int(found),
                interp.score(H[test], logits[test]),
                interp.reconstruction_r2_,
                float(np.mean(codes < 0.01)),
            )
            rows[name].append(row)
            print(f"seed {seed} classifier {acc:.3f} | {name} | {row}", flush=True)
    print(
        "\n| setting | tones found (of 3) per seed | held-out fidelity | "
        "train R2 (min) | share of codes < 0.01 |"
    )
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        a = np.array(r, dtype=float)
        print(
            f"| {name} | {a[:, 0].astype(int).tolist()} | "
            f"{a[:, 1].mean():.3f} ± {a[:, 1].std():.3f} | "
            f"{a[:, 2].mean():.3f} ± {a[:, 2].std():.3f} ({a[:, 2].min():.3f}) | "
            f"{a[:, 3].mean():.3f} ± {a[:, 3].std():.3f} |"
        )


if __name__ == "__main__":
    main()
