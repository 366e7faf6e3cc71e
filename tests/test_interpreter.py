"""NMFInterpreter (Listen to Interpret) on synthetic audio with known answers.

The clips of ``make_synthetic_audio`` are labelled by one tone (its STFT bin
is ``class_bins[c]``); a small convolutional classifier is trained on their
log spectrograms and its frame-wise hidden layer is what the interpreter
reads. The known answer: the component that matters most for class ``c`` is
a dictionary atom whose spectral peak is the tone's bin.
"""

import numpy as np
import pytest
import torch
from scipy.signal import stft

from skconcepts.datasets import make_synthetic_audio
from skconcepts.inspection import NMFInterpreter, spectrogram_to_audio

N_TRAIN = 180


def _audio_and_classifier(seed=0):
    """Clips, the frame-wise hidden layer (n, frames, 32) and the logits."""
    data = make_synthetic_audio(240, random_state=seed)
    S = torch.from_numpy(np.log1p(data.spectrograms).astype(np.float32))
    target = torch.from_numpy(data.target)
    gen = torch.Generator().manual_seed(seed)
    f = S.shape[1]
    conv = torch.nn.Conv1d(f, 32, 3, padding=1)
    lin = torch.nn.Linear(32, 3)
    for p in [*conv.parameters(), *lin.parameters()]:  # seeded initial weights
        with torch.no_grad():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    opt = torch.optim.Adam([*conv.parameters(), *lin.parameters()], lr=1e-2)
    for _ in range(60):
        out = lin(torch.relu(conv(S[:N_TRAIN])).amax(-1))
        loss = torch.nn.functional.cross_entropy(out, target[:N_TRAIN])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        hidden = torch.relu(conv(S))
        logits = lin(hidden.amax(-1)).numpy().astype(np.float64)
    H = hidden.transpose(1, 2).numpy().astype(np.float64)  # (n, frames, 32)
    assert np.mean(logits[N_TRAIN:].argmax(1) == data.target[N_TRAIN:]) > 0.95
    return data, H, logits


@pytest.fixture(scope="module")
def audio():
    return _audio_and_classifier()


def _fit(audio, **kw):
    data, H, logits = audio
    params = dict(n_components=8, max_iter=60, n_positions=H.shape[1])
    params.update(device="cpu", random_state=0)
    params.update(kw)
    return NMFInterpreter(**params).fit(
        H[:N_TRAIN], logits[:N_TRAIN], inputs=data.spectrograms[:N_TRAIN]
    )


@pytest.fixture(scope="module")
def fitted(audio):
    return _fit(audio)


def test_the_important_component_is_the_class_tone(audio, fitted):
    data, H, logits = audio
    test = slice(N_TRAIN, None)
    peaks = fitted.components_.argmax(axis=1)
    for c in range(3):
        imp = fitted.component_importance(H[test], c, y=logits[test])
        assert peaks[np.argmax(imp)] == data.class_bins[c], (c, imp, peaks)
    # output fidelity on held-out clips, input fidelity on the training clips
    assert fitted.score(H[test], logits[test]) >= 0.95
    assert fitted.score(H[test], data.target[test]) >= 0.95
    assert fitted.reconstruction_r2_ > 0.5
    assert fitted.history_[-1]["loss"] < fitted.history_[0]["loss"]


def _near_zero_share(interp, H):
    codes = interp.transform(H) / interp.input_scale_
    return np.mean(codes < 0.01), codes.mean()


def test_the_l1_term_makes_codes_sparse(audio, fitted):
    # removing the L1 term (sparsity=0) leaves fewer near-zero codes
    _, H, _ = audio
    dense = _fit(audio, sparsity=0.0)
    share, mean = _near_zero_share(fitted, H[:N_TRAIN])
    share0, mean0 = _near_zero_share(dense, H[:N_TRAIN])
    assert share > share0 + 0.1, (share, share0)
    assert mean < 0.95 * mean0, (mean, mean0)
    assert fitted.reconstruction_r2_ > dense.reconstruction_r2_ - 0.05


def test_relevance_adds_up_to_the_heads_logit(audio, fitted):
    _, H, _ = audio
    R = fitted.relevance(H[:20], label=1)
    g = fitted.decision_function(H[:20])
    sums = R.sum(axis=1) + fitted.head_intercept_[1]
    np.testing.assert_allclose(sums, g[:, 1], rtol=1e-5, atol=1e-5)
    # default: each row's predicted class
    pred = g.argmax(axis=1)
    R_pred = fitted.relevance(H[:20])
    for c in np.unique(pred):
        np.testing.assert_allclose(
            R_pred[pred == c], fitted.relevance(H[:20][pred == c], label=c)
        )
    np.testing.assert_array_equal(fitted.predict(H[:20]), fitted.classes_[pred])


def test_renderings_add_up(audio, fitted):
    data, H, _ = audio
    Hs, V = H[:10], data.spectrograms[:10]
    K, t = fitted.n_components_, fitted.input_shape_[1]
    codes = fitted.transform(Hs)
    assert codes.shape == (10, K * t) and np.all(codes >= 0)
    whole = fitted.inverse_transform(codes)
    parts = [fitted.render(Hs, k) for k in range(K)]
    # the components' spectrograms add up to the rendering W Psi
    np.testing.assert_allclose(np.sum(parts, axis=0), whole, atol=1e-10)
    C = codes.reshape(10, K, t)
    atom = fitted.components_[2][None, :, None]
    np.testing.assert_allclose(parts[2], atom * C[:, None, 2])
    # L2I's soft masks split the input: they add up to V where W Psi > 0
    masked = np.sum([fitted.render(Hs, k, inputs=V) for k in range(K)], axis=0)
    covered = whole > 1e-9
    np.testing.assert_allclose(masked[covered], V[covered], rtol=1e-9)
    assert np.all(masked <= V + 1e-12)


def test_a_rendered_tone_sounds_at_its_frequency(audio, fitted):
    data, H, logits = audio
    c = 2
    k = int(np.argmax(fitted.component_importance(H, c, y=logits)))
    i = int(np.flatnonzero(data.target == c)[0])
    spec = fitted.render(H[i : i + 1], k, inputs=data.spectrograms[i : i + 1])[0]
    wave = spectrogram_to_audio(
        spec, data.phases[i], sample_rate=data.sample_rate, nperseg=data.nperseg
    )
    power = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(wave.size, 1 / data.sample_rate)
    assert abs(freqs[np.argmax(power)] - data.class_frequencies[c]) < 20.0


def test_spectrogram_to_audio_inverts_the_stft():
    rng = np.random.RandomState(0)
    x = rng.standard_normal(2000)
    _, _, Z = stft(x, fs=4000, nperseg=128)
    y = spectrogram_to_audio(np.abs(Z), np.angle(Z), sample_rate=4000, nperseg=128)
    np.testing.assert_allclose(y[: x.size], x, atol=1e-10)
    kw = dict(sample_rate=4000, nperseg=128)
    with pytest.raises(ValueError, match="same shape"):
        spectrogram_to_audio(np.abs(Z), np.angle(Z)[:, :-1], **kw)
    with pytest.raises(ValueError, match="non-negative"):
        spectrogram_to_audio(-np.abs(Z), np.angle(Z), **kw)


def test_synthetic_audio_tone_decides_the_class():
    data = make_synthetic_audio(60, random_state=1)
    energy = data.spectrograms[:, data.class_bins, :].sum(axis=2)  # (n, classes)
    assert np.array_equal(energy.argmax(axis=1), data.target)
    again = make_synthetic_audio(60, random_state=1)
    np.testing.assert_array_equal(again.waveforms, data.waveforms)
    assert np.bincount(data.target).tolist() == [20, 20, 20]


def test_rows_of_activations_and_labels():
    # (n, d) activations (an MLP interpreter) and labels as the outputs
    data = make_synthetic_audio(90, random_state=2)
    V = data.spectrograms
    X = V[:, data.class_bins, :].max(axis=2)  # a "hidden layer" that sees the tones
    X = np.hstack([X, np.random.RandomState(0).rand(90, 5)])
    interp = NMFInterpreter(6, max_iter=60, device="cpu", random_state=0)
    interp.fit(X, data.target, inputs=V)
    assert interp.transform(X).shape == (90, 6 * V.shape[2])
    assert interp.score(X, data.target) >= 0.9
    np.testing.assert_array_equal(interp.classes_, [0, 1, 2])


def test_bad_input_errors(audio, fitted):
    data, H, logits = audio
    X, y, V = H[:30], logits[:30], data.spectrograms[:30]
    small = dict(n_components=3, max_iter=1, nmf_max_iter=5, device="cpu")
    small3 = dict(small, n_positions=X.shape[1])
    with pytest.raises(ValueError, match="non-negative"):
        NMFInterpreter(**small3).fit(X, y, inputs=V - V.mean())
    with pytest.raises(ValueError, match="29 rows but X has 30"):
        NMFInterpreter(**small3).fit(X, y, inputs=V[:29])
    with pytest.raises(ValueError, match="needs inputs=V"):
        NMFInterpreter(**small3).fit(X, y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        NMFInterpreter(**small3).fit(X, y[:20], inputs=V)
    with pytest.raises(ValueError, match="n_freqs, n_frames"):
        NMFInterpreter(**small3).fit(X, y, inputs=V[..., None])
    with pytest.raises(ValueError, match="sum to 1"):
        NMFInterpreter(target="probabilities", **small3).fit(X, y, inputs=V)
    with pytest.raises(ValueError, match="non-negative components_"):
        from sklearn.decomposition import PCA

        NMFInterpreter(dictionary=PCA(3), **small3).fit(X, y, inputs=V)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        NMFInterpreter(kernel_size=2, **small3).fit(X, y, inputs=V)
    # after fit: shapes that do not match what was fitted
    with pytest.raises(ValueError, match="X has 32 positions but n_positions=33"):
        fitted.transform(X[:, :-1])
    with pytest.raises(ValueError, match="dim 3.*n_positions"):
        NMFInterpreter(**small).fit(X, y, inputs=V)
    with pytest.raises(ValueError, match="not a multiple of n_positions"):
        NMFInterpreter(n_positions=7, **small).fit(X.reshape(30, -1), y, inputs=V)
    with pytest.raises(ValueError, match="overflow"):
        NMFInterpreter(**small).fit(X[:, 0], y, inputs=V.astype(np.float32) * 1e37)
    with pytest.raises(ValueError, match="codes must have shape"):
        fitted.inverse_transform(np.ones((2, 5)))
    with pytest.raises(ValueError, match="component must be an int"):
        fitted.render(X, fitted.n_components_)
    with pytest.raises(ValueError, match="frames of shape"):
        fitted.render(X, 0, inputs=V[:, :-1])
    with pytest.raises(ValueError, match="not one of the classes"):
        fitted.relevance(X, label=7)
    # nothing the caller passed is modified
    V_copy = V.copy()
    fitted.render(X, 0, inputs=V)
    np.testing.assert_array_equal(V, V_copy)


def test_other_dictionary_and_float32(audio):
    from sklearn.decomposition import NMF

    data, H, logits = audio
    interp = NMFInterpreter(
        dictionary=NMF(4, max_iter=300, random_state=0),
        n_positions=H.shape[1],
        max_iter=2,
        device="cpu",
        random_state=0,
    )
    X32 = H[:40].astype(np.float32)
    interp.fit(X32, logits[:40], inputs=data.spectrograms[:40].astype(np.float32))
    assert interp.n_components_ == 4
    np.testing.assert_allclose(np.linalg.norm(interp.components_, axis=1), 1.0)
    assert interp.transform(X32).dtype == np.float32


def test_logits_probabilities_and_labels_are_read_alike(audio):
    # the same classifier outputs as logits or as probabilities give the same
    # fit; hard labels are the one-hot probabilities
    data, H, logits = audio
    X, V = H[:40], data.spectrograms[:40]
    proba = np.exp(logits[:40] - logits[:40].max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    kw = dict(n_components=3, n_positions=H.shape[1], max_iter=3, nmf_max_iter=20)
    kw.update(device="cpu", random_state=0)
    rng_state = torch.get_rng_state()
    a = NMFInterpreter(**kw).fit(X, logits[:40], inputs=V)
    assert torch.equal(torch.get_rng_state(), rng_state)  # global RNG untouched
    b = NMFInterpreter(**kw).fit(X, proba, inputs=V)
    np.testing.assert_allclose(a.transform(X), b.transform(X), rtol=1e-5, atol=1e-6)
    onehot = np.eye(3)[data.target[:40]]
    c = NMFInterpreter(**kw).fit(X, data.target[:40], inputs=V)
    d = NMFInterpreter(**kw).fit(X, onehot, inputs=V)
    np.testing.assert_allclose(c.transform(X), d.transform(X), rtol=1e-5, atol=1e-6)
    assert not np.allclose(a.transform(X), c.transform(X))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fitted_on_cuda_runs_on_cpu(audio):
    import pickle

    data, H, logits = audio
    kw = dict(n_components=4, n_positions=H.shape[1], max_iter=5, random_state=0)
    gpu = NMFInterpreter(device="cuda", **kw).fit(
        H[:60], logits[:60], inputs=data.spectrograms[:60]
    )
    cpu = pickle.loads(pickle.dumps(gpu)).set_params(device="cpu")
    np.testing.assert_allclose(
        cpu.transform(H[60:80]), gpu.transform(H[60:80]), rtol=1e-4, atol=1e-5
    )


def test_by_design_on_a_frozen_trunk(audio):
    """Fitted on the true labels, the interpreter is a classifier by design.

    L2I's by-design variant makes the decision pass through the NMF codes:
    here the trunk (the conv layer) is frozen and the head on the pooled
    codes is trained on the ground-truth classes, so ``predict`` is the
    decision and its evidence is the components. Its held-out accuracy is
    the trunk's, and each class's most important component is still its tone.
    """
    data, H, _ = audio
    test = slice(N_TRAIN, None)
    params = dict(n_components=8, max_iter=60, n_positions=H.shape[1])
    model = NMFInterpreter(target="labels", device="cpu", random_state=0, **params)
    model.fit(H[:N_TRAIN], data.target[:N_TRAIN], inputs=data.spectrograms[:N_TRAIN])
    assert np.mean(model.predict(H[test]) == data.target[test]) >= 0.95
    assert model.score(H[test], data.target[test]) >= 0.95
    peaks = model.components_.argmax(axis=1)
    for c in range(3):
        imp = model.component_importance(H[test], c, y=data.target[test])
        assert peaks[np.argmax(imp)] == data.class_bins[c], (c, imp, peaks)
