"""Synthetic labelled audio: a known tone decides the class (SciPy only)."""

import numpy as np
from sklearn.utils import Bunch, check_random_state

__all__ = ["make_synthetic_audio"]


def _tone(t, freq, onset, length, amplitude):
    """A sine at ``freq`` Hz between ``onset`` and ``onset + length`` (Hann edges)."""
    out = np.zeros_like(t)
    on = (t >= onset) & (t < onset + length)
    m = int(on.sum())
    if m:
        out[on] = amplitude * np.sin(2 * np.pi * freq * t[on]) * np.hanning(m)
    return out


def make_synthetic_audio(
    n_samples=300,
    *,
    n_classes=3,
    duration=0.5,
    sample_rate=4000,
    nperseg=128,
    noise=0.02,
    random_state=None,
):
    """Labelled clips where one known tone decides the class, with STFTs.

    Each clip (``duration`` seconds at ``sample_rate`` Hz) mixes:

    - the **class tone**: a sine at ``class_frequencies[target]`` (one
      frequency per class, each at the centre of an STFT bin), lasting 30-60 %
      of the clip from a random onset, amplitude in ``[0.6, 1]``; it is the
      only sound that depends on the label;
    - a **distractor tone** at one of ``distractor_frequencies`` (drawn
      independently of the label), present in half of the clips;
    - a **chirp** (a linear sweep between two random frequencies) and a
      **noise burst** (white noise, 10-25 % of the clip) at random times;
    - white background noise of standard deviation ``noise``.

    The magnitude spectrograms come from :func:`scipy.signal.stft` (Hann
    window of ``nperseg`` samples, hop ``nperseg // 2``); the phases are
    returned too, so that a spectrogram rendered from concepts can be turned
    back into a waveform with the input's phase
    (:func:`skconcepts.inspection.spectrogram_to_audio`).

    Parameters
    ----------
    n_samples : int, default=300
        Number of clips; the classes are balanced (``target = i % n_classes``
        before a random permutation).
    n_classes : int, default=3
        Number of classes (at most 4: each needs its own tone).
    duration : float, default=0.5
        Clip length in seconds.
    sample_rate : int, default=4000
        Samples per second.
    nperseg : int, default=128
        STFT window length (``nperseg // 2 + 1`` frequency bins).
    noise : float, default=0.02
        Standard deviation of the background noise.
    random_state : int, RandomState instance or None, default=None
        Seed of every draw.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``waveforms`` (n_samples, n_times) float64; ``spectrograms``
        (n_samples, n_freqs, n_frames) magnitudes ``|STFT|``; ``phases``
        (n_samples, n_freqs, n_frames) angles of the STFT; ``target``
        (n_samples,) int labels; ``class_frequencies`` (n_classes,) Hz and
        ``class_bins`` (n_classes,) their STFT bins; ``distractor_frequencies``
        and ``distractor_bins``; ``frequencies`` (n_freqs,) Hz;
        ``times`` (n_frames,) s; ``sample_rate``, ``nperseg``, ``noverlap``.

    Examples
    --------
    >>> from skconcepts.datasets import make_synthetic_audio
    >>> data = make_synthetic_audio(30, random_state=0)
    >>> data.spectrograms.shape, data.class_bins.tolist()
    ((30, 65, 33), [12, 26, 44])
    """
    from scipy.signal import stft

    if not 2 <= n_classes <= 4:
        raise ValueError(f"n_classes must be between 2 and 4; got {n_classes}.")
    rng = check_random_state(random_state)
    bin_hz = sample_rate / nperseg
    nyquist_bin = nperseg // 2
    # class tones and distractors at bin centres, spread over the band
    class_bins = np.round(np.array([0.19, 0.41, 0.69, 0.86]) * nyquist_bin).astype(int)
    class_bins = class_bins[:n_classes]
    distractor_bins = np.round(np.array([0.3, 0.55, 0.78]) * nyquist_bin).astype(int)
    class_freqs = class_bins * bin_hz
    distractor_freqs = distractor_bins * bin_hz

    n_times = int(round(duration * sample_rate))
    t = np.arange(n_times) / sample_rate
    target = rng.permutation(np.arange(n_samples) % n_classes)
    waves = np.empty((n_samples, n_times))
    for i in range(n_samples):
        length = rng.uniform(0.3, 0.6) * duration
        x = _tone(
            t,
            class_freqs[target[i]],
            rng.uniform(0, duration - length),
            length,
            rng.uniform(0.6, 1.0),
        )
        length = rng.uniform(0.3, 0.6) * duration
        onset = rng.uniform(0, duration - length)
        freq = distractor_freqs[rng.randint(len(distractor_freqs))]
        if rng.rand() < 0.5:
            x += _tone(t, freq, onset, length, rng.uniform(0.6, 1.0))
        # chirp: instantaneous frequency f0 + (f1 - f0) * s / L
        length = rng.uniform(0.3, 0.6) * duration
        onset = rng.uniform(0, duration - length)
        f0, f1 = rng.uniform(0.05, 0.95, size=2) * sample_rate / 2
        on = (t >= onset) & (t < onset + length)
        s = t[on] - onset
        phase = 2 * np.pi * (f0 * s + (f1 - f0) * s**2 / (2 * length))
        x[on] += rng.uniform(0.4, 0.8) * np.sin(phase) * np.hanning(int(on.sum()))
        # noise burst
        length = rng.uniform(0.1, 0.25) * duration
        onset = rng.uniform(0, duration - length)
        on = (t >= onset) & (t < onset + length)
        x[on] += rng.uniform(0.1, 0.3) * rng.standard_normal(int(on.sum()))
        waves[i] = x + noise * rng.standard_normal(n_times)

    freqs, times, Z = stft(
        waves, fs=sample_rate, nperseg=nperseg, noverlap=nperseg // 2, axis=-1
    )
    return Bunch(
        waveforms=waves,
        spectrograms=np.abs(Z),
        phases=np.angle(Z),
        target=target,
        class_frequencies=class_freqs,
        class_bins=class_bins,
        distractor_frequencies=distractor_freqs,
        distractor_bins=distractor_bins,
        frequencies=freqs,
        times=times,
        sample_rate=sample_rate,
        nperseg=nperseg,
        noverlap=nperseg // 2,
    )
