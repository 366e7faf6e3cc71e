"""
Listen to Interpret: the sounds a classifier decides with
=========================================================

Parekh et al. (NeurIPS 2022, "Listen to Interpret") explain an audio
classifier with concepts one can *listen to*: an NMF dictionary is learnt on
the magnitude spectrograms of the data (each atom a spectral shape), and an
interpreter network maps the classifier's hidden layer to time activations
of those atoms, trained to reconstruct the spectrogram, to be sparse, and to
reproduce the classifier's output through a linear head. The components with
the largest head weight times activation are the sounds the classifier used;
each can be rendered as a spectrogram and, with the input's phase, as audio.

Everything here is made offline with SciPy: clips mixing a class tone (the
only sound that depends on the label), a distractor tone, a chirp and a
noise burst; a small convolutional classifier trained on their log
spectrograms; :class:`~skconcepts.inspection.NMFInterpreter` on its
frame-wise hidden layer. The top components' WAV files are written to a
temporary folder (printed below).
"""

# %%
# Clips and their spectrograms
# ----------------------------
# 300 half-second clips at 4 kHz, three classes. The class tones sit at STFT
# bins 12, 26 and 44 (375, 812.5 and 1375 Hz); the distractor tones at bins
# 19, 35 and 50 appear independently of the label.
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy.io import wavfile

from skconcepts.datasets import make_synthetic_audio
from skconcepts.inspection import NMFInterpreter, spectrogram_to_audio

data = make_synthetic_audio(300, random_state=0)
V = data.spectrograms  # (n, 65 bins, 33 frames), non-negative
print("spectrograms", V.shape, "class tones (Hz):", data.class_frequencies)
train, test = np.arange(200), np.arange(200, 300)

# %%
# A small classifier trained here
# -------------------------------
# A 1-D convolution over time (65 frequency bins in, 32 channels out), ReLU,
# max over time, linear layer. Its hidden layer, ``(n, 33 frames, 32)``, is
# what the interpreter reads; its logits are what it must reproduce.
torch.manual_seed(0)
S = torch.from_numpy(np.log1p(V).astype(np.float32))
target = torch.from_numpy(data.target)
conv = torch.nn.Conv1d(V.shape[1], 32, 3, padding=1)
linear = torch.nn.Linear(32, 3)
opt = torch.optim.Adam([*conv.parameters(), *linear.parameters()], lr=1e-2)
for _ in range(100):
    logits = linear(torch.relu(conv(S[train])).amax(-1))
    loss = torch.nn.functional.cross_entropy(logits, target[train])
    opt.zero_grad()
    loss.backward()
    opt.step()
with torch.no_grad():
    hidden = torch.relu(conv(S))
    logits = linear(hidden.amax(-1)).numpy().astype(np.float64)
H = hidden.transpose(1, 2).numpy().astype(np.float64)
print("classifier test accuracy:", np.mean(logits[test].argmax(1) == data.target[test]))

# %%
# The interpreter
# ---------------
# An NMF dictionary of 8 spectral atoms on the 6,600 training frames, then
# the interpreter (1-D convolutions over the hidden layer's frames) and its
# head, trained for 60 epochs on reconstruction + L1 + cross-entropy to the
# classifier's probabilities.
interp = NMFInterpreter(
    8, n_positions=H.shape[1], max_iter=60, device="cpu", random_state=0
)
interp.fit(H[train], logits[train], inputs=V[train])
print(f"reconstruction R2 (train): {interp.reconstruction_r2_:.3f}")
print(f"fidelity to the classifier (test): {interp.score(H[test], logits[test]):.3f}")
peaks = data.frequencies[interp.components_.argmax(axis=1)]
print("atoms' spectral peaks (Hz):", peaks)

# %%
# Which components decide each class
# ----------------------------------
# L2I's relevance of component ``k`` for class ``c``: the head weight times
# the time-pooled activation, averaged over the test clips the classifier
# assigns to ``c``. The top component of each class peaks at its tone.
importance = np.array(
    [interp.component_importance(H[test], c, y=logits[test]) for c in range(3)]
)
top = importance.argmax(axis=1)
for c in range(3):
    print(
        f"class {c} (tone {data.class_frequencies[c]:.1f} Hz): top component "
        f"{top[c]}, peak {peaks[top[c]]:.1f} Hz"
    )

fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
axes[0].imshow(
    importance,
    cmap="RdBu_r",
    vmin=-abs(importance).max(),
    vmax=abs(importance).max(),
    aspect="auto",
)
axes[0].set(xlabel="component", ylabel="class", title="relevance (test mean)")
axes[0].set_yticks(range(3))
for k in range(interp.n_components_):
    axes[1].plot(
        data.frequencies,
        interp.components_[k],
        lw=2 if k in top else 0.7,
        label=f"{k}" if k in top else None,
    )
axes[1].set(xlabel="frequency (Hz)", title="dictionary atoms (top ones bold)")
axes[1].legend(title="component")
fig.tight_layout()

# %%
# The top concepts of one clip per class, as spectrograms and as sound
# --------------------------------------------------------------------
# For a test clip of each class: its spectrogram, and the part the class's
# top component takes under L2I's soft mask ``V * (W_k Psi_k) / (W Psi)``.
# With the clip's phase, :func:`~skconcepts.inspection.spectrogram_to_audio`
# turns that part back into a waveform, written as a WAV file.
out_dir = tempfile.mkdtemp(prefix="skconcepts_l2i_")
fig, axes = plt.subplots(2, 3, figsize=(9, 5), sharex=True, sharey=True)
extent = [data.times[0], data.times[-1], data.frequencies[0], data.frequencies[-1]]
for c in range(3):
    i = int(test[np.flatnonzero(data.target[test] == c)[0]])
    part = interp.render(H[i : i + 1], int(top[c]), inputs=V[i : i + 1])[0]
    wave = spectrogram_to_audio(
        part, data.phases[i], sample_rate=data.sample_rate, nperseg=data.nperseg
    )
    peak = np.fft.rfftfreq(wave.size, 1 / data.sample_rate)[
        np.argmax(np.abs(np.fft.rfft(wave)))
    ]
    path = os.path.join(out_dir, f"class{c}_component{top[c]}.wav")
    wavfile.write(
        path, data.sample_rate, (wave / np.abs(wave).max()).astype(np.float32)
    )
    wavfile.write(
        os.path.join(out_dir, f"class{c}_clip.wav"),
        data.sample_rate,
        (data.waveforms[i] / np.abs(data.waveforms[i]).max()).astype(np.float32),
    )
    print(f"class {c}: {path} (its strongest frequency: {peak:.1f} Hz)")
    for row, img, name in ((0, V[i], "clip"), (1, part, f"component {top[c]}")):
        axes[row, c].imshow(
            np.log1p(10 * img),
            origin="lower",
            aspect="auto",
            extent=extent,
            cmap="magma",
        )
        axes[row, c].set_title(f"class {c}: {name}")
axes[1, 0].set(xlabel="time (s)", ylabel="frequency (Hz)")
fig.tight_layout()
print("WAV files written to", out_dir)
plt.show()
