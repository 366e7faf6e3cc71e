"""Listen to Interpret (Parekh et al., NeurIPS 2022): concepts you can hear or see.

An NMF dictionary ``W`` (``n_freqs x K``) is learnt on the frames of a
non-negative input-space representation ``V`` (magnitude spectrograms,
images); an interpreter network maps the classifier's hidden activations to
non-negative time activations ``Psi`` (``K x n_frames``) of that dictionary,
trained so that ``W Psi`` reconstructs ``V`` (input fidelity), ``Psi`` is
sparse, and a linear head on the time-pooled ``Psi`` reproduces the
classifier's output (output fidelity). Each component is then a sound or an
image part: ``W[:, k] Psi_k(t)``, rendered back to audio with the input's
phase.
"""

import numbers
import time

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    clone,
)
from sklearn.utils import check_array

from .._backend import (
    default_batch_size,
    make_generator,
    named_seeds,
    resolve_device,
    to_numpy,
    to_tensor,
)
from .._compat import (
    Integral,
    Interval,
    Real,
    StrOptions,
    _fit_context,
    check_is_fitted,
    validate_data,
)
from .._faults import DivergenceError, VersionedStateMixin, check_overflow
from ..base import DEVICE_CONSTRAINT

__all__ = ["NMFInterpreter", "spectrogram_to_audio"]


def _interpreter_module(
    hidden_shape, n_components, n_frames, hidden, kernel_size, activation, n_outputs
):
    """The interpreter ``Psi`` and the linear head, as one torch module.

    Rows of hidden activations (``hidden_shape == (d,)``) go through an MLP to
    ``K * n_frames`` outputs; activations with positions (``(t_h, d)``, a
    frame-wise layer) through 1-D convolutions over time to ``K`` channels,
    linearly interpolated to ``n_frames`` when ``t_h != n_frames``. A
    softplus (or ReLU) makes the codes non-negative; the head is linear on
    their time mean.
    """
    import torch
    from torch import nn

    class Interpreter(nn.Module):
        def __init__(self):
            super().__init__()
            self.positional = len(hidden_shape) == 2
            layers = []
            if self.positional:
                width = hidden_shape[1]
                for h in hidden:
                    layers += [
                        nn.Conv1d(width, h, kernel_size, padding=kernel_size // 2),
                        nn.ReLU(),
                    ]
                    width = h
                layers.append(
                    nn.Conv1d(
                        width, n_components, kernel_size, padding=kernel_size // 2
                    )
                )
            else:
                width = hidden_shape[0]
                for h in hidden:
                    layers += [nn.Linear(width, h), nn.ReLU()]
                    width = h
                layers.append(nn.Linear(width, n_components * n_frames))
            self.body = nn.Sequential(*layers)
            self.head = nn.Linear(n_components, n_outputs)

        def codes(self, x):
            if self.positional:
                z = self.body(x.transpose(1, 2))  # (b, K, t_h)
                if z.shape[-1] != n_frames:
                    z = nn.functional.interpolate(
                        z, size=n_frames, mode="linear", align_corners=False
                    )
            else:
                z = self.body(x).reshape(x.shape[0], n_components, n_frames)
            if activation == "relu":
                return torch.relu(z)
            return nn.functional.softplus(z)

        def forward(self, x):
            c = self.codes(x)
            return c, self.head(c.mean(dim=-1))

    return Interpreter()


class NMFInterpreter(
    VersionedStateMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    BaseEstimator,
):
    """Listen to Interpret: an NMF dictionary in input space and an interpreter.

    Post-hoc interpretation of a classifier (Parekh et al., "Listen to
    Interpret", NeurIPS 2022). ``fit(X, y, inputs=V)`` takes, for the same
    ``n`` inputs:

    - ``X``: the classifier's **hidden activations**, ``(n, d)`` rows or,
      with ``n_positions=p``, ``(n, p, d)`` vectors per position (e.g. the
      frames of a convolutional layer; or their flattening ``(n, p * d)``);
    - ``y``: the classifier's **outputs** to be reproduced: logits or
      probabilities ``(n, n_classes)``, or its predicted labels ``(n,)``;
    - ``inputs``: a **non-negative input-space representation** ``V`` of
      shape ``(n, n_freqs, n_frames)`` (magnitude spectrograms; an image is
      ``(n, n_pixels, 1)`` or ``(n, height, width)`` with columns as frames),
      or ``(n, n_freqs)`` for one frame.

    Then (1) a dictionary ``W`` (``n_freqs x K``, unit columns,
    ``components_ = W.T``) is learnt by NMF on the frames of ``V`` (the
    columns ``V_i[:, t]`` as rows, :class:`~skconcepts.NMFConcepts` by
    default); (2) an interpreter network ``Psi`` maps ``X`` to non-negative
    time activations ``Psi(x) (K x n_frames)`` and a linear head
    ``g(z) = A z + b`` reads their time mean ``z = mean_t Psi(x)``; both are
    trained with Adam on

    ``mean ||V/s - W Psi(x)||^2 + sparsity * mean Psi(x)
    + fidelity * CE(softmax(g(z)), p(x))``

    where ``s`` is the root mean square of ``V`` on the training set
    (``input_scale_``), ``p(x)`` the classifier's probabilities (softmax of
    the logits; one-hot labels) and CE the cross-entropy (KL divergence up to
    the classifier's constant entropy). ``W`` stays fixed while ``Psi`` is
    trained. Relevance of component ``k`` for class ``c`` on one input:
    ``A[c, k] * z_k`` (L2I's ``relevance``); rendering of component ``k``:
    ``s W[:, k] Psi_k(t)`` or, on the input, the soft mask
    ``V * (W[:, k] Psi_k) / (W Psi)`` (:meth:`render`), which
    :func:`spectrogram_to_audio` turns into a waveform with the input's
    phase.

    Parameters
    ----------
    n_components : int, default=10
        Number of dictionary components ``K`` (used when ``dictionary`` is
        None).
    dictionary : estimator or None, default=None
        Unfitted non-negative factorisation fitted on the frames (rows
        ``n_frames_total x n_freqs``) with a non-negative ``components_`` of
        shape ``(K, n_freqs)`` (e.g. :class:`~skconcepts.NMFConcepts` or
        :class:`sklearn.decomposition.NMF`); cloned. None:
        ``NMFConcepts(n_components, max_iter=nmf_max_iter)``.
    sparsity : float, default=0.1
        Weight of the L1 term on the interpreter's codes (in units of
        ``V / s``).
    fidelity : float, default=0.2
        Weight of the output-fidelity term (cross-entropy of the head to the
        classifier's probabilities). With 0 the head gets no gradient and
        keeps its initial weights (an ablation, not a use). 1.0 found the
        class tone as the top component for 17 of 18 classes of the
        synthetic audio (6 seeds) against 18 of 18 at 0.2, with a lower
        reconstruction (R² 0.68 against 0.75).
    activation : {"softplus", "relu"}, default="softplus"
        The non-linearity that makes the codes non-negative. With the
        paper's ReLU the reconstruction was lower and more variable on the
        synthetic audio of the tests (6 seeds: training R² 0.68 ± 0.07,
        minimum 0.58, against 0.75 ± 0.01 with "softplus"; the class tone
        was the top component for 16 of 18 classes against 18 of 18); a
        likely cause is ReLU outputs that stay at 0 (no gradient). Softplus
        codes are small but never exactly zero. Guide: ``interpreter.md``.
    target : {"auto", "labels", "logits", "probabilities"}, default="auto"
        How ``y`` is read. "auto": 1-D ``y`` are labels; 2-D rows that are
        non-negative and sum to 1 are probabilities, other 2-D rows logits.
    n_positions : int or None, default=None
        None: each row of ``X`` is one vector, read by an MLP. An int ``p``:
        the hidden layer has positions (frames of a convolutional layer):
        ``X`` is ``(n, p, d)``, or its position-major flattening
        ``(n, p * d)``, read by 1-D convolutions over the positions.
    hidden_layer_sizes : tuple of int, default=(64,)
        Hidden widths of the interpreter (linear layers for ``(n, d)``
        activations, 1-D convolutions for ``(n, t_h, d)``).
    kernel_size : int, default=3
        Time kernel of the convolutions (positional activations only; odd).
    max_iter : int, default=200
        Training epochs (passes over the rows) of the interpreter.
    batch_size : int, default=64
        Rows per Adam step.
    learning_rate : float, default=1e-2
        Adam's learning rate.
    nmf_max_iter : int, default=200
        Iterations of the default dictionary's NMF.
    device : str or None, default="auto"
        Torch device of the interpreter's training and inference
        (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``).
    random_state : int, RandomState instance or None, default=None
        Seeds the dictionary, the initial weights and the batches (child
        seeds of one :class:`numpy.random.SeedSequence`).
    verbose : int, default=0
        Print the losses every 10 epochs when > 0.

    Attributes
    ----------
    components_ : ndarray of shape (n_components_, n_freqs)
        The dictionary ``W.T``, unit L2 rows, non-negative.
    dictionary_ : estimator
        The fitted factorisation of the frames.
    n_components_ : int
        ``K``.
    input_shape_ : tuple of int
        ``(n_freqs, n_frames)`` of ``inputs``.
    input_scale_ : float
        ``s``, the root mean square of the training ``inputs``.
    hidden_shape_ : tuple of int
        Shape of one row of ``X`` (``(d,)`` or ``(t_h, d)``).
    hidden_mean_, hidden_scale_ : ndarray of shape (n_features_in_,)
        Standardisation of ``X`` (per feature) before the interpreter.
    classes_ : ndarray of shape (n_classes,)
        The labels (``arange(n_classes)`` for 2-D ``y``).
    head_coef_ : ndarray of shape (n_classes, n_components_)
        ``A``, the head's weights on the pooled codes (of ``V / s``).
    head_intercept_ : ndarray of shape (n_classes,)
        ``b``.
    interpreter_state_ : dict of str to ndarray
        The interpreter network's weights (NumPy; a torch module is rebuilt
        at call time).
    history_ : list of dict
        One record per epoch: ``epoch``, ``loss``, ``reconstruction``,
        ``sparsity``, ``fidelity`` (row means), ``time``.
    n_iter_ : int
        Epochs run.
    fidelity_score_ : float
        Agreement of the head's predicted class with the classifier's on the
        training rows (:meth:`score`).
    reconstruction_r2_ : float
        R² of ``V`` by ``W Psi(X)`` on the training rows.
    n_features_in_ : int
        Columns of ``X`` (``p * d`` for activations with positions).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined when ``X`` has string column names.

    See Also
    --------
    skconcepts.NMFConcepts : the default dictionary.
    spectrogram_to_audio : waveform of a rendered spectrogram.

    Notes
    -----
    The by-design variant of the paper (the classifier trained jointly with
    the interpreter) needs the classifier's code and is not offered here.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.inspection import NMFInterpreter
    >>> rng = np.random.RandomState(0)
    >>> V = rng.rand(40, 6, 5)                      # spectrograms
    >>> X = V.mean(axis=2) @ rng.randn(6, 8)        # hidden activations
    >>> y = (V[:, 0].mean(axis=1) > 0.5).astype(int)
    >>> interp = NMFInterpreter(3, max_iter=20, random_state=0, device="cpu")
    >>> interp.fit(X, y, inputs=V).transform(X).shape    # K * n_frames codes
    (40, 15)
    >>> interp.inverse_transform(interp.transform(X)).shape
    (40, 6, 5)
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "dictionary": "no_validation",  # checked in fit
        "sparsity": [Interval(Real, 0, None, closed="left")],
        "fidelity": [Interval(Real, 0, None, closed="left")],
        "activation": [StrOptions({"softplus", "relu"})],
        "target": [StrOptions({"auto", "labels", "logits", "probabilities"})],
        "n_positions": [Interval(Integral, 1, None, closed="left"), None],
        "hidden_layer_sizes": [tuple, list],
        "kernel_size": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "nmf_max_iter": [Interval(Integral, 1, None, closed="left")],
        "device": DEVICE_CONSTRAINT,
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_components=10,
        *,
        dictionary=None,
        sparsity=0.1,
        fidelity=0.2,
        activation="softplus",
        target="auto",
        n_positions=None,
        hidden_layer_sizes=(64,),
        kernel_size=3,
        max_iter=200,
        batch_size=64,
        learning_rate=1e-2,
        nmf_max_iter=200,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.dictionary = dictionary
        self.sparsity = sparsity
        self.fidelity = fidelity
        self.activation = activation
        self.target = target
        self.n_positions = n_positions
        self.hidden_layer_sizes = hidden_layer_sizes
        self.kernel_size = kernel_size
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.nmf_max_iter = nmf_max_iter
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.sparse = False
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # ------------------------------------------------------------ validation
    def _check_X(self, X, y="no_validation", *, reset):
        """Validate the hidden activations as a 2-D ``(n, n_features)`` array.

        ``(n, n_positions, d)`` arrays are accepted when ``n_positions`` is
        set and flattened to ``(n, n_positions * d)`` (position-major).
        """
        name = type(self).__name__
        nd = getattr(X, "ndim", None)
        if nd is None and isinstance(X, list | tuple):
            nd = np.asarray(X).ndim
        if nd == 3:
            if self.n_positions is None:
                raise ValueError(
                    f"Found array with dim 3. {name} expected <= 2 unless "
                    "n_positions is set: pass n_positions=X.shape[1] to read "
                    "(n_samples, n_positions, n_features) activations with "
                    "positions, or X.reshape(len(X), -1) for plain rows."
                )
            X3 = np.asarray(X)
            if X3.shape[1] != self.n_positions:
                raise ValueError(
                    f"X has {X3.shape[1]} positions but n_positions={self.n_positions}."
                )
            X = X3.reshape(X3.shape[0], -1)
        kw = {} if isinstance(y, str) else {"multi_output": True}
        res = validate_data(
            self, X, y, dtype=[np.float64, np.float32], reset=reset, **kw
        )
        out = res if isinstance(y, str) else res[0]
        check_overflow(out, name)
        if reset:
            width = out.shape[1]
            p = self.n_positions
            if p is None:
                self.hidden_shape_ = (width,)
            elif width % p:
                raise ValueError(
                    f"X has {width} features, not a multiple of n_positions={p}: "
                    "each row must hold n_positions frame vectors of equal size."
                )
            else:
                self.hidden_shape_ = (p, width // p)
        return out if isinstance(y, str) else (out, res[1])

    def _check_inputs(self, inputs, X, *, reset):
        """The input-space representation: non-negative ``(n, n_freqs, n_frames)``."""
        if inputs is None:
            raise ValueError(
                f"{type(self).__name__}.fit needs inputs=V, the non-negative "
                "input-space representation of the same inputs (e.g. magnitude "
                "spectrograms of shape (n_samples, n_freqs, n_frames))."
            )
        n_rows = X.shape[0]
        V = check_array(inputs, allow_nd=True, dtype=[np.float64, np.float32])
        if V.ndim == 2:
            V = V[:, :, None]
        if V.ndim != 3:
            raise ValueError(
                "inputs must have shape (n_samples, n_freqs, n_frames) or "
                f"(n_samples, n_freqs); got {V.ndim} dimensions {V.shape}."
            )
        if V.shape[0] != n_rows:
            raise ValueError(
                f"inputs has {V.shape[0]} rows but X has {n_rows}: the hidden "
                "activations and the input-space representation must describe "
                "the same inputs, in the same order."
            )
        if np.any(V < 0):
            raise ValueError(
                "inputs must be non-negative (an NMF dictionary is learnt on "
                f"them); got a minimum of {float(V.min()):.3g}. Pass magnitudes "
                "(np.abs of the STFT) or shift / clip the representation."
            )
        check_overflow(
            V.reshape(V.shape[0], -1), f"{type(self).__name__} (its inputs=V)"
        )
        if not reset and V.shape[1:] != tuple(self.input_shape_):
            raise ValueError(
                f"inputs has frames of shape {V.shape[1:]}, but the interpreter "
                f"was fitted on {tuple(self.input_shape_)}."
            )
        return V

    def _targets(self, y):
        """Class probabilities ``p(x)`` from ``y`` as ``target`` says, and classes."""
        y = np.asarray(y)
        kind = self.target
        if kind == "auto":
            if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
                kind = "labels"
            elif (
                np.issubdtype(y.dtype, np.number)
                and np.all(y >= 0)
                and np.allclose(y.sum(axis=1), 1.0, atol=1e-6)
            ):
                kind = "probabilities"
            else:
                kind = "logits"
        if kind == "labels":
            y = y.ravel() if y.ndim == 2 and y.shape[1] == 1 else y
            if y.ndim != 1:
                raise ValueError(
                    f"target='labels' needs 1-D y (the predicted classes); got "
                    f"shape {y.shape}."
                )
            classes, idx = np.unique(y, return_inverse=True)
            P = np.zeros((y.shape[0], len(classes)))
            P[np.arange(y.shape[0]), idx] = 1.0
            return P, classes
        y = check_array(y, dtype=np.float64, ensure_2d=True)
        if y.shape[1] < 2:
            raise ValueError(
                f"y with target={kind!r} needs one column per class (at least 2); "
                f"got {y.shape[1]}."
            )
        if kind == "probabilities":
            if np.any(y < 0) or not np.allclose(y.sum(axis=1), 1.0, atol=1e-4):
                raise ValueError(
                    "target='probabilities' needs non-negative rows that sum to 1; "
                    "pass target='logits' for raw scores."
                )
            P = y
        else:
            z = y - y.max(axis=1, keepdims=True)
            P = np.exp(z)
            P /= P.sum(axis=1, keepdims=True)
        return P, np.arange(y.shape[1])

    # -------------------------------------------------------------- fitting
    def _new_dictionary(self, seed):
        if self.dictionary is None:
            from ..decomposition import NMFConcepts

            return NMFConcepts(
                self.n_components,
                max_iter=self.nmf_max_iter,
                device=self.device,
                random_state=seed,
            )
        if not hasattr(self.dictionary, "fit"):
            raise TypeError(
                "dictionary must be an unfitted estimator with fit and a "
                f"non-negative components_ (e.g. NMFConcepts); got {self.dictionary!r}."
            )
        est = clone(self.dictionary)
        params = est.get_params(deep=False)
        if "random_state" in params and params["random_state"] is None:
            est.set_params(random_state=seed)
        return est

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, *, inputs=None):
        """Learn the dictionary on ``inputs`` and train the interpreter.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or \
(n_samples, n_positions, n_features)
            The classifier's hidden activations.
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            The classifier's outputs on the same inputs: predicted labels,
            logits or probabilities (see ``target``).
        inputs : array-like of shape (n_samples, n_freqs, n_frames)
            Non-negative input-space representation of the same inputs
            (required; keyword only).

        Returns
        -------
        self : NMFInterpreter
            The fitted interpreter.
        """
        import torch

        X, y = self._check_X(X, y, reset=True)
        V = self._check_inputs(inputs, X, reset=True)
        P, self.classes_ = self._targets(y)
        seeds = named_seeds(self.random_state, ["dictionary", "init", "batches"])
        n, f, t = V.shape
        self.input_shape_ = (f, t)

        # (1) the dictionary, on the frames of V
        frames = np.ascontiguousarray(V.transpose(0, 2, 1).reshape(n * t, f))
        self.dictionary_ = self._new_dictionary(seeds["dictionary"]).fit(frames)
        comps = np.asarray(self.dictionary_.components_, dtype=np.float64)
        if comps.ndim != 2 or comps.shape[1] != f:
            raise ValueError(
                f"dictionary.components_ must have shape (n_components, {f}); got "
                f"{comps.shape}."
            )
        if np.any(comps < 0):
            raise ValueError(
                "dictionary must give non-negative components_ (an NMF); got "
                "negative entries. Use NMFConcepts or sklearn.decomposition.NMF."
            )
        norms = np.linalg.norm(comps, axis=1, keepdims=True)
        self.components_ = comps / np.where(norms > 0, norms, 1.0)
        self.n_components_ = int(comps.shape[0])
        self.input_scale_ = float(np.sqrt(np.mean(V.astype(np.float64) ** 2))) or 1.0

        # (2) the interpreter, W fixed
        self.hidden_mean_ = X.mean(axis=0).astype(np.float64)
        sd = X.std(axis=0).astype(np.float64)
        self.hidden_scale_ = np.where(sd > 0, sd, 1.0)
        device = resolve_device(self.device)
        dtype = torch.float32
        torch_gen = make_generator(seeds["init"])
        seed = int(torch.randint(2**31 - 1, (1,), generator=torch_gen))
        module = self._build_module(len(self.classes_), seed).to(device, dtype)
        W = to_tensor(self.components_.T, device, dtype)
        Z = ((X - self.hidden_mean_) / self.hidden_scale_).reshape(
            (n, *self.hidden_shape_)
        )
        Vn = V / self.input_scale_
        opt = torch.optim.Adam(module.parameters(), lr=self.learning_rate)
        batch_gen = make_generator(seeds["batches"])
        bs = min(self.batch_size, n)
        self.history_ = []
        start = time.perf_counter()
        for epoch in range(self.max_iter):
            order = torch.randperm(n, generator=batch_gen).numpy()
            # per-term sums on the device: one transfer per epoch, not four
            # synchronising .item() calls per step
            sums = torch.zeros(4, dtype=torch.float64, device=device)
            for s0 in range(0, n, bs):
                idx = np.sort(order[s0 : s0 + bs])
                xb = to_tensor(Z[idx], device, dtype)
                vb = to_tensor(Vn[idx], device, dtype)
                pb = to_tensor(P[idx], device, dtype)
                codes, logits = module(xb)
                rec = ((vb - torch.einsum("fk,bkt->bft", W, codes)) ** 2).mean()
                spa = codes.mean()
                fid = -(pb * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
                loss = rec + self.sparsity * spa + self.fidelity * fid
                opt.zero_grad()
                loss.backward()
                opt.step()
                terms = torch.stack([loss, rec, spa, fid]).detach().double()
                sums += len(idx) * terms
            sums = sums.cpu().numpy() / n
            names = ("loss", "reconstruction", "sparsity", "fidelity")
            rec_ = {"epoch": epoch + 1}
            rec_.update({k: float(v) for k, v in zip(names, sums, strict=True)})
            rec_["time"] = time.perf_counter() - start
            self.history_.append(rec_)
            if not np.isfinite(sums[0]):
                raise DivergenceError(
                    f"NMFInterpreter diverged at epoch {epoch + 1} (non-finite "
                    "loss); lower learning_rate or check the inputs' scale."
                )
            if self.verbose and (epoch + 1) % 10 == 0:
                print(
                    f"epoch {epoch + 1}: loss {sums[0]:.4f} rec {sums[1]:.4f} "
                    f"sparsity {sums[2]:.4f} fidelity {sums[3]:.4f}"
                )
        self.n_iter_ = self.max_iter
        state = module.state_dict()
        self.interpreter_state_ = {k: to_numpy(v) for k, v in state.items()}
        self.head_coef_ = to_numpy(module.head.weight).astype(np.float64)
        self.head_intercept_ = to_numpy(module.head.bias).astype(np.float64)

        codes, logits = self._forward(X)
        R = np.einsum("fk,nkt->nft", self.components_.T, codes) - V / self.input_scale_
        var = np.sum((V / self.input_scale_ - (V / self.input_scale_).mean()) ** 2)
        self.reconstruction_r2_ = float(1.0 - np.sum(R**2) / var) if var > 0 else 0.0
        self.fidelity_score_ = float(np.mean(logits.argmax(1) == P.argmax(1)))
        return self

    def _build_module(self, n_outputs, seed=0):
        """The torch module, its initial weights drawn from ``seed``.

        Built on the CPU inside ``fork_rng``: the global torch RNG is left as
        it was (``_forward`` builds one to load the fitted weights into).
        """
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return self._new_module(n_outputs)

    def _new_module(self, n_outputs):
        hidden = tuple(int(h) for h in self.hidden_layer_sizes)
        if any(h < 1 for h in hidden):
            raise ValueError(
                "hidden_layer_sizes must hold positive ints; got "
                f"{self.hidden_layer_sizes}."
            )
        if len(self.hidden_shape_) == 2 and self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd; got {self.kernel_size}.")
        return _interpreter_module(
            tuple(self.hidden_shape_),
            self.n_components_,
            self.input_shape_[1],
            hidden,
            int(self.kernel_size),
            self.activation,
            n_outputs,
        )

    def _forward(self, X):
        """Codes (of ``V / s``) and head logits of validated activations ``X``."""
        import torch

        device = resolve_device(self.device)
        module = self._build_module(len(self.classes_))
        module.load_state_dict(
            {k: torch.from_numpy(v) for k, v in self.interpreter_state_.items()}
        )
        module = module.to(device, torch.float32).eval()
        Z = ((X - self.hidden_mean_) / self.hidden_scale_).reshape(
            (X.shape[0], *self.hidden_shape_)
        )
        codes, logits = [], []
        with torch.no_grad():
            # a batch of rows, its codes and logits within the batch budget
            width = X.shape[1] + self._n_features_out + len(self.classes_)
            step = default_batch_size(width)
            for s0 in range(0, max(X.shape[0], 1), step):
                c, g = module(to_tensor(Z[s0 : s0 + step], device, torch.float32))
                codes.append(to_numpy(c, np.float64))
                logits.append(to_numpy(g, np.float64))
        return np.concatenate(codes), np.concatenate(logits)

    # ------------------------------------------------------------ inference
    @property
    def _n_features_out(self):
        return self.n_components_ * self.input_shape_[1]

    def transform(self, X):
        """The interpreter's codes ``Psi(x)``, flattened.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or \
(n_samples, n_positions, n_features)
            Hidden activations of the layer seen in ``fit`` (3-D with
            ``n_positions``).

        Returns
        -------
        codes : ndarray of shape (n_samples, n_components_ * n_frames)
            Non-negative time activations in the units of ``inputs``
            (``s Psi(x)``), component-major: ``codes.reshape(n,
            n_components_, n_frames)[:, k, t]`` is component ``k`` at frame
            ``t``, and ``components_.T @ that`` approximates the input's
            spectrogram.
        """
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        codes, _ = self._forward(X)
        return (codes * self.input_scale_).reshape(X.shape[0], -1).astype(X.dtype)

    def inverse_transform(self, X):
        """Input-space rendering ``W Psi`` of codes from :meth:`transform`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components_ * n_frames) or \
(n_samples, n_components_, n_frames)
            Codes (in the units of ``inputs``).

        Returns
        -------
        V_hat : ndarray of shape (n_samples, n_freqs, n_frames)
            ``components_.T @ codes`` for every input.
        """
        check_is_fitted(self)
        C = self._codes_3d(X)
        return np.einsum("fk,nkt->nft", self.components_.T, C).astype(C.dtype)

    def _codes_3d(self, codes):
        C = check_array(codes, allow_nd=True, dtype=[np.float64, np.float32])
        K, t = self.n_components_, self.input_shape_[1]
        if C.ndim == 2 and C.shape[1] == K * t:
            return C.reshape(C.shape[0], K, t)
        if C.ndim == 3 and C.shape[1:] == (K, t):
            return C
        raise ValueError(
            f"codes must have shape (n_samples, {K * t}) (from transform) or "
            f"(n_samples, {K}, {t}); got {C.shape}."
        )

    def decision_function(self, X):
        """The head's logits ``g(mean_t Psi(x))``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or \
(n_samples, n_positions, n_features)
            Hidden activations.

        Returns
        -------
        logits : ndarray of shape (n_samples, n_classes)
            Scores of the interpreter's head, one column per class.
        """
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        return self._forward(X)[1]

    def predict_proba(self, X):
        """The head's class probabilities (softmax of :meth:`decision_function`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or \
(n_samples, n_positions, n_features)
            Hidden activations.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities in the order of ``classes_``.
        """
        g = self.decision_function(X)
        g = np.exp(g - g.max(axis=1, keepdims=True))
        return g / g.sum(axis=1, keepdims=True)

    def predict(self, X):
        """The head's predicted class (the interpreter's reading of the classifier).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or \
(n_samples, n_positions, n_features)
            Hidden activations.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Values of ``classes_``.
        """
        check_is_fitted(self)
        return self.classes_[self.decision_function(X).argmax(axis=1)]

    def score(self, X, y):
        """Fidelity: how often the head predicts the classifier's class.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or \
(n_samples, n_positions, n_features)
            Hidden activations.
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            The classifier's outputs (read as in ``fit``).

        Returns
        -------
        fidelity : float
            Fraction of rows where the head's and the classifier's predicted
            classes agree (L2I's fidelity-to-output).
        """
        check_is_fitted(self)
        X, y = self._check_X(X, y, reset=False)
        y = np.asarray(y)
        pred = self._forward(X)[1].argmax(axis=1)
        if y.ndim == 2 and y.shape[1] > 1:
            if y.shape[1] != len(self.classes_):
                raise ValueError(
                    f"y has {y.shape[1]} columns but the interpreter was fitted "
                    f"on {len(self.classes_)} classes."
                )
            return float(np.mean(pred == y.argmax(axis=1)))
        y = y.ravel()
        return float(np.mean(self.classes_[pred] == y))

    def _class_index(self, label):
        hits = np.flatnonzero(self.classes_ == label)
        if hits.size == 0:
            raise ValueError(
                f"label={label!r} is not one of the classes {self.classes_.tolist()}."
            )
        return int(hits[0])

    def relevance(self, X, label=None):
        """Relevance of each component on each input: ``A[c, k] * z_k``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or \
(n_samples, n_positions, n_features)
            Hidden activations.
        label : object or None, default=None
            The class ``c`` (a value of ``classes_``); None takes the head's
            predicted class of each row.

        Returns
        -------
        relevance : ndarray of shape (n_samples, n_components_)
            Head weight times time-pooled code (of ``V / s``); their sum plus
            the intercept is the head's logit of ``c``.
        """
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        codes, logits = self._forward(X)
        z = codes.mean(axis=2)
        if label is None:
            c = logits.argmax(axis=1)
        else:
            c = np.full(X.shape[0], self._class_index(label))
        return self.head_coef_[c] * z

    def component_importance(self, X, label, *, y=None):
        """Mean relevance of each component for class ``label``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or \
(n_samples, n_positions, n_features)
            Hidden activations.
        label : object
            The class (a value of ``classes_``).
        y : array-like of shape (n_samples,) or (n_samples, n_classes), \
default=None
            The classifier's outputs; when given, only the rows it assigns
            to ``label`` are averaged (else every row).

        Returns
        -------
        importance : ndarray of shape (n_components_,)
            Mean of :meth:`relevance` for ``label``; the largest is the
            component that raises the class's logit most.
        """
        R = self.relevance(X, label)
        if y is not None:
            y = np.asarray(y)
            if y.shape[0] != R.shape[0]:
                raise ValueError(f"y has {y.shape[0]} rows but X has {R.shape[0]}.")
            if y.ndim == 2 and y.shape[1] > 1:
                keep = self.classes_[y.argmax(axis=1)] == label
            else:
                keep = y.ravel() == label
            if not np.any(keep):
                raise ValueError(f"no row of y is assigned to label={label!r}.")
            R = R[keep]
        return R.mean(axis=0)

    def render(self, X, component, *, inputs=None):
        """Spectrogram (or image) of one component on each input.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or \
(n_samples, n_positions, n_features)
            Hidden activations.
        component : int
            Index ``k`` of the component.
        inputs : array-like of shape (n_samples, n_freqs, n_frames), default=None
            The inputs' representation. None: the component alone,
            ``s W[:, k] Psi_k(t)``. Given: L2I's soft mask applied to it,
            ``V * (W[:, k] Psi_k) / (W Psi)`` (what
            :func:`spectrogram_to_audio` turns into sound with the input's
            phase).

        Returns
        -------
        rendering : ndarray of shape (n_samples, n_freqs, n_frames)
            Non-negative.
        """
        check_is_fitted(self)
        if not isinstance(component, numbers.Integral) or not (
            0 <= component < self.n_components_
        ):
            raise ValueError(
                f"component must be an int in [0, {self.n_components_}); got "
                f"{component!r}."
            )
        X = self._check_X(X, reset=False)
        codes, _ = self._forward(X)
        W = self.components_.T
        part = W[None, :, component, None] * codes[:, None, component, :]
        if inputs is None:
            return part * self.input_scale_
        V = self._check_inputs(inputs, X, reset=False)
        whole = np.einsum("fk,nkt->nft", W, codes)
        mask = part / np.maximum(whole, np.finfo(np.float64).tiny)
        return V * np.clip(mask, 0.0, 1.0)


def spectrogram_to_audio(
    magnitude, phase, *, sample_rate, nperseg, noverlap=None, window="hann"
):
    """A waveform from a magnitude spectrogram and a phase (inverse STFT).

    ``x = istft(magnitude * exp(i * phase))`` with
    :func:`scipy.signal.istft` and the STFT settings of the analysis. Used to
    listen to a component: pass :meth:`NMFInterpreter.render` with the
    input's phase (``np.angle`` of its STFT).

    Parameters
    ----------
    magnitude : array-like of shape (..., n_freqs, n_frames)
        Non-negative magnitudes.
    phase : array-like of the same shape
        Angles in radians (e.g. the input's).
    sample_rate : float
        Samples per second of the analysed signal.
    nperseg : int
        STFT window length of the analysis.
    noverlap : int or None, default=None
        Overlap of the analysis (None: ``nperseg // 2``, SciPy's default).
    window : str or tuple, default="hann"
        Window of the analysis.

    Returns
    -------
    waveform : ndarray of shape (..., n_times)
        Real signal.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.signal import stft
    >>> from skconcepts.inspection import spectrogram_to_audio
    >>> x = np.sin(2 * np.pi * 440 * np.arange(4000) / 8000)
    >>> _, _, Z = stft(x, fs=8000, nperseg=256)
    >>> y = spectrogram_to_audio(np.abs(Z), np.angle(Z), sample_rate=8000,
    ...                          nperseg=256)
    >>> bool(np.allclose(y[:4000], x, atol=1e-8))
    True
    """
    from scipy.signal import istft

    M = np.asarray(magnitude, dtype=np.float64)
    Ph = np.asarray(phase, dtype=np.float64)
    if M.shape != Ph.shape:
        raise ValueError(
            f"magnitude {M.shape} and phase {Ph.shape} must have the same shape."
        )
    if np.any(M < 0):
        raise ValueError("magnitude must be non-negative (|STFT|).")
    _, x = istft(
        M * np.exp(1j * Ph),
        fs=sample_rate,
        nperseg=nperseg,
        noverlap=noverlap,
        window=window,
    )
    return x
