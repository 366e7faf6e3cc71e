"""Figures for concepts, their importance, fidelity curves, modality scores and
erasure trade-offs.

matplotlib is an optional dependency (``pip install "skconcepts[plot]"``); it is
imported inside each function, so importing this module does not need it.

Every function draws on a given ``ax`` (or makes a new figure) and returns
what it drew on: a single panel returns its ``Axes``; a figure of several
panels (one per class, a grid of images) returns the ``Figure``.
"""

import numbers

import numpy as np

__all__ = [
    "plot_concept_importance",
    "plot_concept_images",
    "plot_concept_texts",
    "plot_fidelity_curves",
    "plot_modality_scores",
    "plot_taco_tradeoff",
    "plot_latent_density",
    "plot_probing_curve",
    "plot_concept_maps",
]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised without mpl
        raise ImportError(
            "skconcepts.plotting needs matplotlib. Install it with "
            '`pip install "skconcepts[plot]"` (or `pip install matplotlib`).'
        ) from exc
    return plt


def _new_ax(ax, figsize=None):
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=figsize)
    return ax


def _as_intervals(ci, shape, name="ci"):
    """Intervals as an array of shape ``shape + (2,)`` (lower, upper)."""
    if ci is None:
        return None
    ci = np.asarray(ci, dtype=float)
    if ci.shape == tuple(shape) + (2,):
        return ci
    if ci.shape == (2,) + tuple(shape):
        return np.moveaxis(ci, 0, -1)
    raise ValueError(
        f"{name} must have shape {tuple(shape) + (2,)} (lower, upper on the last "
        f"axis) to match the importances of shape {tuple(shape)}; got {ci.shape}."
    )


def _concept_labels(names, k):
    if names is None:
        return [str(i) for i in range(k)]
    names = [str(n) for n in names]
    if len(names) != k:
        raise ValueError(
            f"concept_names has {len(names)} entries for {k} concepts; give one "
            "name per concept."
        )
    return names


def plot_concept_importance(
    importances,
    ci=None,
    *,
    classes=None,
    concept_names=None,
    which="total",
    sort=False,
    top_n=None,
    ncols=None,
    ax=None,
    color="C0",
    ylabel=None,
):
    """Bar chart of concept importances with their confidence intervals.

    One panel for a single output, one panel per class for per-class
    importances (as CRAFT shows them).

    Parameters
    ----------
    importances : array-like of shape (n_concepts,) or (n_classes, n_concepts), \
            or fitted estimator
        The importances, or a fitted importance estimator such as
        :class:`~skconcepts.SobolConceptImportance`: any object with
        ``total_indices_`` (or ``first_order_indices_``, see ``which``; else
        ``importances_``, as :class:`~skconcepts.ConceptAttribution` has) and,
        where present, the matching ``*_ci_`` intervals and ``classes_``.
    ci : array-like of shape importances.shape + (2,), default=None
        Lower and upper ends of each confidence interval, drawn as a vertical
        line over each bar. ``(2,) + importances.shape`` is accepted too. Taken
        from the estimator when ``importances`` is one and ``ci`` is None.
    classes : array-like of shape (n_classes,), default=None
        Panel titles for per-class importances (the estimator's ``classes_``
        by default).
    concept_names : list of str of length n_concepts, default=None
        Tick labels; the concept indices by default.
    which : {"total", "first_order"}, default="total"
        Which indices to read from an estimator.
    sort : bool, default=False
        Order the bars of each panel by decreasing importance.
    top_n : int, default=None
        Show only the ``top_n`` most important concepts of each panel (implies
        ``sort=True``).
    ncols : int, default=None
        Panels per row for per-class importances (at most 4 by default).
    ax : matplotlib Axes or array of Axes, default=None
        Where to draw: one Axes for 1-D importances, one Axes per class for
        2-D ones. A new figure when None.
    color : color, default="C0"
        Bar colour.
    ylabel : str, default=None
        Label of the y axis; the kind of Sobol' index by default
        (``"importance"`` for an estimator's ``importances_``).

    Returns
    -------
    ax_or_fig : matplotlib Axes or Figure
        The Axes for 1-D importances; the Figure holding one Axes per class
        (``fig.axes[i]`` for ``classes[i]``) for 2-D importances.

    See Also
    --------
    skconcepts.SobolConceptImportance : computes the indices and intervals.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from skconcepts.plotting import plot_concept_importance
    >>> imp = [0.5, 0.1, 0.3]
    >>> ci = [[0.4, 0.6], [0.05, 0.2], [0.2, 0.35]]
    >>> ax = plot_concept_importance(imp, ci, concept_names=["fur", "eye", "ear"])
    >>> [float(p.get_height()) for p in ax.patches]
    [0.5, 0.1, 0.3]
    >>> fig = plot_concept_importance([[0.5, 0.1], [0.2, 0.7]], classes=["cat", "dog"])
    >>> [a.get_title() for a in fig.axes]
    ['cat', 'dog']
    >>> plt.close("all")
    """
    plt = _pyplot()
    if which not in ("total", "first_order"):
        raise ValueError(f"which must be 'total' or 'first_order'; got {which!r}.")
    attr = f"{which}_indices_"
    if not hasattr(importances, attr) and which == "total":
        attr = "importances_"  # e.g. ConceptAttribution
    if ylabel is None:
        ylabel = (
            "total Sobol' index" if which == "total" else "first-order Sobol' index"
        )
    if hasattr(importances, attr):
        if attr == "importances_":
            ylabel = "importance"
        est = importances
        importances = getattr(est, attr)
        if ci is None:
            ci = getattr(est, f"{attr}ci_", None)
        if classes is None:
            classes = getattr(est, "classes_", None)
    imp = np.asarray(importances, dtype=float)
    if imp.ndim not in (1, 2) or imp.size == 0:
        raise ValueError(
            "importances must be a non-empty array of shape (n_concepts,) or "
            f"(n_classes, n_concepts); got shape {imp.shape}."
        )
    intervals = _as_intervals(ci, imp.shape)
    labels = _concept_labels(concept_names, imp.shape[-1])
    if top_n is not None:
        sort = True
        top_n = int(top_n)

    def draw(a, values, bounds, title):
        order = np.arange(values.shape[0])
        if sort:
            order = np.argsort(-values, kind="stable")[:top_n]
        x = np.arange(order.shape[0])
        a.bar(x, values[order], color=color, width=0.7)
        if bounds is not None:
            a.vlines(x, bounds[order, 0], bounds[order, 1], color="k", linewidth=1.5)
        a.set_xticks(x, [labels[i] for i in order])
        a.set_xlabel("concept")
        a.set_ylabel(ylabel)
        a.axhline(0.0, color="0.5", linewidth=0.8)
        if title is not None:
            a.set_title(title)

    if imp.ndim == 1:
        ax = _new_ax(ax)
        draw(ax, imp, intervals, None)
        return ax

    n_classes = imp.shape[0]
    if classes is None:
        classes = list(range(n_classes))
    if len(classes) != n_classes:
        raise ValueError(
            f"classes has {len(classes)} entries for {n_classes} rows of importances."
        )
    if ax is None:
        ncols = min(n_classes, 4) if ncols is None else int(ncols)
        nrows = -(-n_classes // ncols)
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False
        )
        axes = axes.ravel()
        for extra in axes[n_classes:]:
            fig.delaxes(extra)
    else:
        axes = np.ravel(ax)
        if axes.shape[0] != n_classes:
            raise ValueError(
                f"ax must hold one Axes per class ({n_classes}); got {axes.shape[0]}."
            )
        fig = axes[0].figure
    for i in range(n_classes):
        draw(
            axes[i],
            imp[i],
            None if intervals is None else intervals[i],
            str(classes[i]),
        )
    fig.tight_layout()
    return fig


def _ranked(codes, concept, n_top):
    codes = np.asarray(codes, dtype=float)
    if codes.ndim != 2:
        raise ValueError(
            f"codes must be a 2-D array (n_samples, n_concepts); got shape "
            f"{codes.shape}. Pass estimator.transform(X)."
        )
    if not isinstance(concept, numbers.Integral) or not (
        -codes.shape[1] <= concept < codes.shape[1]
    ):
        raise ValueError(
            f"concept must be an integer index below n_concepts={codes.shape[1]}; "
            f"got {concept!r}."
        )
    column = codes[:, concept]
    order = np.argsort(-column, kind="stable")[: int(n_top)]
    return order, column[order]


def plot_concept_images(
    codes,
    images,
    concepts=None,
    *,
    n_top=8,
    concept_names=None,
    cmap="gray",
    fig=None,
):
    """The images that express each concept the most, one row per concept.

    Parameters
    ----------
    codes : array-like of shape (n_samples, n_concepts)
        Concept codes of the samples (``extractor.transform(X)``).
    images : array-like of shape (n_samples, height, width[, channels])
        The input image of each sample, in the order of ``codes``.
    concepts : int or sequence of int, default=None
        The concepts to show (all by default), one row each.
    n_top : int, default=8
        Images per concept, by decreasing code value.
    concept_names : list of str of length n_concepts, default=None
        Row labels; ``"concept i"`` by default.
    cmap : str, default="gray"
        Colour map for single-channel images.
    fig : matplotlib Figure, default=None
        An empty figure to draw in; a new one when None.

    Returns
    -------
    fig : matplotlib Figure
        ``fig.axes`` holds the images row by row; each Axes is titled with the
        sample's code value.

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from skconcepts.plotting import plot_concept_images
    >>> codes = np.array([[0.1, 2.0], [0.9, 0.0], [0.5, 1.0]])
    >>> images = np.random.RandomState(0).rand(3, 8, 8)
    >>> fig = plot_concept_images(codes, images, concepts=0, n_top=2)
    >>> [a.get_title() for a in fig.axes]
    ['0.90', '0.50']
    >>> plt.close("all")
    """
    plt = _pyplot()
    codes = np.asarray(codes, dtype=float)
    images = np.asarray(images)
    if codes.ndim != 2 or images.ndim not in (3, 4) or len(images) != len(codes):
        raise ValueError(
            "codes must be (n_samples, n_concepts) and images (n_samples, height, "
            "width[, channels]) with the same n_samples; got shapes "
            f"{codes.shape} and {images.shape}."
        )
    if concepts is None:
        concepts = list(range(codes.shape[1]))
    elif isinstance(concepts, numbers.Integral):
        concepts = [concepts]
    names = (
        [f"concept {i}" for i in range(codes.shape[1])]
        if concept_names is None
        else _concept_labels(concept_names, codes.shape[1])
    )
    n_top = min(int(n_top), codes.shape[0])
    rows = [(c, *_ranked(codes, c, n_top)) for c in concepts]
    if fig is None:
        fig = plt.figure(figsize=(1.3 * n_top + 0.8, 1.5 * len(rows)))
    axes = fig.subplots(len(rows), n_top, squeeze=False)
    for r, (c, order, values) in enumerate(rows):
        for j in range(n_top):
            a = axes[r, j]
            a.set_xticks([])
            a.set_yticks([])
            for spine in a.spines.values():
                spine.set_visible(False)
            a.imshow(images[order[j]], cmap=cmap if images.ndim == 3 else None)
            a.set_title(f"{values[j]:.2f}", fontsize=8)
        axes[r, 0].set_ylabel(names[c], fontsize=9)
    return fig


def plot_concept_texts(
    codes,
    texts,
    concept,
    *,
    n_top=10,
    concept_name=None,
    max_chars=90,
    ax=None,
):
    """The texts that express a concept the most, as a ranked list.

    Parameters
    ----------
    codes : array-like of shape (n_samples, n_concepts)
        Concept codes of the samples (``extractor.transform(X)``).
    texts : sequence of str of length n_samples
        The input text of each sample, in the order of ``codes``.
    concept : int
        The concept to show.
    n_top : int, default=10
        Number of texts, by decreasing code value.
    concept_name : str, default=None
        Panel title; ``"concept i"`` by default.
    max_chars : int, default=90
        Longer texts are cut with an ellipsis.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        ``ax.texts`` holds one line per ranked text, best first, each
        ``"rank. [code] text"``.

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from skconcepts.plotting import plot_concept_texts
    >>> codes = np.array([[0.2], [0.9], [0.5]])
    >>> ax = plot_concept_texts(codes, ["meh", "great food", "fine"], 0, n_top=2)
    >>> [t.get_text() for t in ax.texts]
    ['1. [0.90] great food', '2. [0.50] fine']
    >>> plt.close("all")
    """
    texts = list(texts)
    codes = np.asarray(codes, dtype=float)
    if codes.ndim != 2 or len(texts) != codes.shape[0]:
        raise ValueError(
            "codes must be (n_samples, n_concepts) with one text per row; got "
            f"codes of shape {codes.shape} and {len(texts)} texts."
        )
    order, values = _ranked(codes, concept, n_top)
    if ax is None:
        ax = _new_ax(None, figsize=(8, 0.35 * len(order) + 0.8))
    ax.set_axis_off()
    ax.set_ylim(0, 1)
    ax.set_xlim(0, 1)
    n = max(len(order), 1)
    for rank, (i, v) in enumerate(zip(order, values, strict=True), start=1):
        text = str(texts[i])
        if len(text) > max_chars:
            text = text[: max_chars - 1] + "…"
        ax.text(
            0.0,
            1.0 - (rank - 0.5) / n,
            f"{rank}. [{v:.2f}] {text}",
            va="center",
            ha="left",
            fontsize=9,
        )
    ax.set_title(concept_name or f"concept {concept}", loc="left")
    return ax


def _trapezoid(y, x):
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


def plot_fidelity_curves(curves, *, x=None, kind="deletion", labels=None, ax=None):
    """Deletion or insertion curves of concept importances, with their AUC.

    C-Deletion removes concepts by decreasing importance and follows the
    model's output (a faster fall, a lower area, is better); C-Insertion adds
    them back from zero (a faster rise, a higher area, is better).

    Parameters
    ----------
    curves : array-like of shape (n_steps,) or (n_curves, n_steps), or dict
        The output after each step, one curve per row; a dict maps a label
        (e.g. an importance method) to its curve. For the per-sample curves
        of :func:`skconcepts.metrics.c_deletion` (``return_curves=True``),
        pass their mean over samples: its area is the metric's score.
    x : array-like of shape (n_steps,), default=None
        Positions of the steps; ``0, 1, ..., n_steps - 1`` (number of concepts
        removed or inserted) by default.
    kind : {"deletion", "insertion"}, default="deletion"
        Sets the axis labels.
    labels : list of str, default=None
        One label per curve when ``curves`` is an array.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        One line per curve, labelled ``"label (AUC a)"``, where ``a`` is the
        trapezoidal area under the curve with the steps rescaled to [0, 1].

    See Also
    --------
    skconcepts.metrics.c_deletion, skconcepts.metrics.c_insertion

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from skconcepts.plotting import plot_fidelity_curves
    >>> ax = plot_fidelity_curves({"sobol": [1.0, 0.2, 0.0], "random": [1.0, 0.8, 0.0]})
    >>> [line.get_label() for line in ax.get_lines()]
    ['sobol (AUC 0.350)', 'random (AUC 0.650)']
    >>> plt.close("all")
    """
    if kind not in ("deletion", "insertion"):
        raise ValueError(f"kind must be 'deletion' or 'insertion'; got {kind!r}.")
    if isinstance(curves, dict):
        labels = [str(k) for k in curves]
        values = [np.asarray(v, dtype=float) for v in curves.values()]
    else:
        arr = np.asarray(curves, dtype=float)
        values = [arr] if arr.ndim == 1 else list(arr)
        if labels is None:
            labels = (
                [kind] if arr.ndim == 1 else [f"curve {i}" for i in range(len(values))]
            )
    if len(labels) != len(values):
        raise ValueError(f"{len(labels)} labels for {len(values)} curves.")
    ax = _new_ax(ax)
    for label, y in zip(labels, values, strict=True):
        if y.ndim != 1 or y.shape[0] < 2:
            raise ValueError(
                f"each curve must be 1-D with at least 2 steps; got shape {y.shape}."
            )
        xs = np.arange(y.shape[0]) if x is None else np.asarray(x, dtype=float)
        if xs.shape != y.shape:
            raise ValueError(f"x has shape {xs.shape}, a curve has {y.shape}.")
        unit = np.linspace(0.0, 1.0, y.shape[0])
        ax.plot(
            xs,
            y,
            marker="o",
            markersize=3,
            label=f"{label} (AUC {_trapezoid(y, unit):.3f})",
        )
    verb = "removed" if kind == "deletion" else "inserted"
    ax.set_xlabel(f"concepts {verb} (by decreasing importance)")
    ax.set_ylabel("model output")
    ax.set_title(f"C-{kind.capitalize()}")
    ax.legend()
    return ax


def plot_modality_scores(
    scores, *, threshold=None, bins=20, modality_names=None, ax=None
):
    """Histogram of the modality scores of an aligned SAE's atoms.

    The score of atom ``k`` is ``mu_k = E_a[k] / (E_a[k] + E_b[k])``, the share
    of its energy in the first modality. Atoms with ``mu_k > 1 - threshold``
    or ``mu_k < threshold`` are unimodal, the others bimodal; the two
    thresholds are drawn as vertical lines. Dead atoms (NaN scores) are left
    out and counted in the title.

    Parameters
    ----------
    scores : array-like of shape (n_concepts,) or fitted estimator
        Modality scores, or a fitted :class:`~skconcepts.AlignedSAE` (any
        object with ``modality_scores_``).
    threshold : float, default=None
        Unimodal threshold in (0, 0.5); the estimator's
        ``modality_threshold`` parameter if it has one, else 0.05.
    bins : int, default=20
        Number of equal bins over [0, 1].
    modality_names : tuple of (str, str), default=None
        Names of the modalities that own the atoms near 0 and near 1; from
        the estimator's ``classes_`` (``mu_k`` is the share of
        ``classes_[0]``) or its ``atom_modality_`` when possible.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        The histogram bars are ``ax.patches``; the thresholds are the two
        vertical lines of ``ax.get_lines()``.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from skconcepts.plotting import plot_modality_scores
    >>> ax = plot_modality_scores([0.01, 0.5, 0.52, 0.99, float("nan")], bins=4)
    >>> [int(p.get_height()) for p in ax.patches]
    [1, 0, 2, 1]
    >>> [line.get_xdata()[0] for line in ax.get_lines()]
    [0.05, 0.95]
    >>> plt.close("all")
    """
    names = modality_names
    if hasattr(scores, "modality_scores_"):
        est = scores
        scores = est.modality_scores_
        if threshold is None:
            for attr in ("modality_threshold", "threshold"):
                if isinstance(getattr(est, attr, None), numbers.Real):
                    threshold = float(getattr(est, attr))
                    break
        classes = getattr(est, "classes_", None)
        if names is None and classes is not None and len(classes) == 2:
            # mu_k is the share of classes_[0]: 1 means classes_[0] only
            names = (str(classes[1]), str(classes[0]))
        if names is None and hasattr(est, "atom_modality_"):
            names = _infer_modality_names(
                np.asarray(scores, dtype=float),
                np.asarray(est.atom_modality_, dtype=object),
                0.05 if threshold is None else threshold,
            )
    threshold = 0.05 if threshold is None else float(threshold)
    if not 0.0 < threshold < 0.5:
        raise ValueError(f"threshold must be in (0, 0.5); got {threshold}.")
    mu = np.asarray(scores, dtype=float).ravel()
    alive = mu[~np.isnan(mu)]
    if np.any((alive < 0) | (alive > 1)):
        raise ValueError("modality scores must lie in [0, 1] (NaN for dead atoms).")
    ax = _new_ax(ax)
    ax.hist(alive, bins=int(bins), range=(0.0, 1.0), color="C0", edgecolor="white")
    for t in (threshold, 1.0 - threshold):
        ax.axvline(t, color="C3", linestyle="--", linewidth=1.2)
    n_uni = int(np.sum((alive < threshold) | (alive > 1.0 - threshold)))
    dead = mu.shape[0] - alive.shape[0]
    low, high = names if names is not None else ("unimodal", "unimodal")
    ax.set_xlabel(f"modality score  (0: {low} only, 1: {high} only)")
    ax.set_ylabel("atoms")
    ax.set_title(
        f"{alive.shape[0] - n_uni} bimodal, {n_uni} unimodal, {dead} dead atoms"
    )
    ax.set_xlim(0.0, 1.0)
    return ax


def _infer_modality_names(mu, labels, threshold):
    names = []
    for mask in (mu < threshold, mu > 1.0 - threshold):
        found = [str(v) for v in labels[mask] if str(v) not in ("bimodal", "dead")]
        names.append(found[0] if found else "unimodal")
    return tuple(names)


def plot_taco_tradeoff(
    n_removed,
    protected=None,
    task=None,
    *,
    leace=None,
    leace_at=None,
    chance=None,
    label="TaCo",
    colors=("C3", "C0"),
    ax=None,
):
    """The erasure trade-off: protected-attribute recoverability and task
    accuracy against the number of removed concepts.

    Parameters
    ----------
    n_removed : array-like of shape (n_points,) or fitted estimator
        Numbers of removed concepts; or a fitted
        :class:`~skconcepts.TaCoEraser` with ``n_remove="auto"``, whose
        ``recoverability_`` (cross-validated probe accuracy after removing the
        top ``r`` concepts, NaN where not evaluated) gives the protected curve
        and whose ``n_remove_`` is drawn as a vertical line.
    protected : array-like of shape (n_points,), default=None
        Recoverability of the protected attribute after each erasure (e.g. the
        balanced accuracy of a fresh probe, see
        :func:`skconcepts.metrics.leakage`). Required unless ``n_removed`` is
        a fitted estimator.
    task : array-like of shape (n_points,), default=None
        Task accuracy after each erasure.
    leace : tuple of (float, float), default=None
        ``(protected, task)`` measured after LEACE, the linear baseline.
    leace_at : float, default=None
        Where to draw the LEACE point on the x axis. When None, LEACE is drawn
        as two dotted horizontal lines (it removes a subspace, not a number of
        concepts).
    chance : float or tuple of (float, float), default=None
        Chance level of the protected attribute (the majority-class rate),
        drawn as a grey horizontal line; a pair gives the chance levels of the
        protected attribute and of the task (two lines).
    label : str, default="TaCo"
        Name of the erasure in the legend (``"protected (label)"``, ...), so
        that several rankings can be drawn on one Axes.
    colors : tuple of (color, color), default=("C3", "C0")
        Colours of the protected and the task curves (and of the LEACE
        marks).
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        The lines, in order: protected, task (when given), then LEACE and
        chance lines (when given), then the estimator's chosen ``n_remove_``;
        each has a label.

    See Also
    --------
    skconcepts.TaCoEraser

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from skconcepts.plotting import plot_taco_tradeoff
    >>> ax = plot_taco_tradeoff([0, 1, 2], [0.95, 0.7, 0.52], [0.9, 0.89, 0.88],
    ...                         leace=(0.8, 0.9), leace_at=1, chance=0.5)
    >>> [line.get_label() for line in ax.get_lines()]
    ['protected (TaCo)', 'task (TaCo)', 'protected (LEACE)', 'task (LEACE)', 'chance']
    >>> plt.close("all")
    """
    chosen = None
    if hasattr(n_removed, "recoverability_"):
        est = n_removed
        curve = np.asarray(est.recoverability_, dtype=float)
        evaluated = ~np.isnan(curve)
        n_removed = np.flatnonzero(evaluated)
        if protected is None:
            protected = curve[evaluated]
        if task is not None and len(task) == curve.shape[0]:
            task = np.asarray(task, dtype=float)[evaluated]
        chosen = getattr(est, "n_remove_", None)
    if protected is None:
        raise ValueError(
            "protected is required: the recoverability of the protected attribute "
            "after each erasure (or pass a fitted TaCoEraser as n_removed)."
        )
    x = np.asarray(n_removed, dtype=float)
    c_prot, c_task = colors
    series = [(f"protected ({label})", protected, c_prot, "o")]
    if task is not None:
        series.append((f"task ({label})", task, c_task, "s"))
    ax = _new_ax(ax)
    for name, y, color, marker in series:
        y = np.asarray(y, dtype=float)
        if y.shape != x.shape:
            raise ValueError(
                f"{name.split()[0]} has shape {y.shape}; n_removed has {x.shape}."
            )
        ax.plot(x, y, color=color, marker=marker, label=name)
    if leace is not None:
        p, t = (float(v) for v in leace)
        for name, y, color in (
            ("protected (LEACE)", p, c_prot),
            ("task (LEACE)", t, c_task),
        ):
            if leace_at is None:
                ax.axhline(y, color=color, linestyle=":", label=name)
            else:
                ax.plot(
                    [float(leace_at)],
                    [y],
                    color=color,
                    marker="*",
                    markersize=12,
                    linestyle="none",
                    label=name,
                )
    if chance is not None:
        if np.ndim(chance) == 0:
            ax.axhline(float(chance), color="0.5", linestyle="--", label="chance")
        else:
            p_chance, t_chance = (float(v) for v in chance)
            ax.axhline(
                p_chance, color="0.5", linestyle="--", label="chance (protected)"
            )
            ax.axhline(t_chance, color="0.5", linestyle="-.", label="chance (task)")
    if chosen is not None:
        ax.axvline(float(chosen), color="k", linestyle=":", label="n_remove_")
    ax.set_xlabel("concepts removed")
    ax.set_ylabel("accuracy")
    ax.set_title("Erasure trade-off")
    ax.legend()
    return ax


def plot_latent_density(
    codes_or_density,
    *,
    bins=30,
    log_range=None,
    dense_threshold=0.1,
    label=None,
    ax=None,
):
    """Histogram of the latents' firing frequencies (log10), dead latents apart.

    Parameters
    ----------
    codes_or_density : array-like of shape (n_samples, n_latents) or (n_latents,)
        Codes (``transform(X)``; a latent fires where its code is non-zero)
        or the firing frequencies of
        :func:`skconcepts.metrics.latent_density`.
    bins : int or array-like, default=30
        Number of bins, or their edges in ``log10`` units.
    log_range : (float, float) or None, default=None
        Range of the bins in ``log10`` units; None: from the rarest live
        latent to 0.
    dense_threshold : float or None, default=0.1
        Draws a vertical line at ``log10(dense_threshold)``: latents to its
        right are dense (see :func:`skconcepts.metrics.dense_fraction`).
    label : str, default=None
        Label of the bars (e.g. the SAE's name) in the legend and title.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        One bar per bin (height: number of live latents); the title gives
        the number of dead latents.

    See Also
    --------
    skconcepts.metrics.latent_density_histogram : the counts drawn here.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from skconcepts.plotting import plot_latent_density
    >>> ax = plot_latent_density([0.0, 0.001, 0.01, 0.1, 1.0], bins=3,
    ...                          log_range=(-3, 0))
    >>> [float(p.get_height()) for p in ax.patches], ax.get_title()
    ([1.0, 1.0, 2.0], 'latent density: 1 dead of 5 latents')
    >>> plt.close("all")
    """
    from .metrics import latent_density, latent_density_histogram

    values = np.asarray(codes_or_density)
    density = latent_density(values) if values.ndim == 2 else values
    counts, edges, n_dead = latent_density_histogram(
        density, bins=bins, log_range=log_range
    )
    ax = _new_ax(ax)
    ax.bar(
        edges[:-1],
        counts,
        width=np.diff(edges),
        align="edge",
        alpha=0.7,
        edgecolor="k",
        linewidth=0.5,
        label=label,
    )
    if dense_threshold is not None:
        ax.axvline(
            np.log10(float(dense_threshold)),
            color="C3",
            linestyle="--",
            label=f"dense (> {float(dense_threshold):g})",
        )
    ax.set_xlabel("log10(firing frequency)")
    ax.set_ylabel("latents")
    prefix = f"{label}: " if label else ""
    ax.set_title(f"{prefix}latent density: {n_dead} dead of {np.size(density)} latents")
    ax.legend()
    return ax


def plot_probing_curve(result, *, show_tasks=True, ax=None):
    """Held-out accuracy of k-sparse probes against k.

    Parameters
    ----------
    result : dict
        The output of :func:`skconcepts.metrics.k_sparse_probing` (or
        ``details["probing"]`` of :func:`skconcepts.metrics.evaluate_sae`),
        or a dict mapping a label (an SAE's name) to such an output: one
        curve each.
    show_tasks : bool, default=True
        Shade the range of the per-task accuracies (several tasks only).
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        One line per result (mean accuracy over the tasks at each k, on a
        log-scaled k axis) and a dashed chance line.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> import numpy as np
    >>> from skconcepts.plotting import plot_probing_curve
    >>> res = {"k": np.array([1, 2, 5]), "accuracy": np.array([0.7, 0.8, 0.9]),
    ...        "task_accuracy": np.array([[0.7, 0.8, 0.9]]), "chance": 0.5}
    >>> ax = plot_probing_curve(res)
    >>> ax.get_lines()[0].get_ydata().tolist()
    [0.7, 0.8, 0.9]
    >>> plt.close("all")
    """
    if not isinstance(result, dict):
        raise TypeError(
            "result must be the dict of k_sparse_probing, or a dict of them by "
            f"label; got {type(result).__name__}."
        )
    curves = {None: result} if "k" in result else dict(result)
    for name, res in curves.items():
        if not isinstance(res, dict) or not {"k", "accuracy"} <= set(res):
            raise ValueError(
                f"result{'' if name is None else f'[{name!r}]'} must hold 'k' and "
                "'accuracy' (the output of k_sparse_probing)."
            )
    ax = _new_ax(ax)
    chances = []
    for i, (name, res) in enumerate(curves.items()):
        ks = np.asarray(res["k"], dtype=float)
        acc = np.asarray(res["accuracy"], dtype=float)
        if ks.shape != acc.shape:
            raise ValueError(
                f"'k' has shape {ks.shape} but 'accuracy' has {acc.shape}."
            )
        ax.plot(ks, acc, marker="o", color=f"C{i}", label=name or "mean over tasks")
        tasks = res.get("task_accuracy")
        if show_tasks and tasks is not None and np.shape(tasks)[0] > 1:
            tasks = np.asarray(tasks, dtype=float)
            ax.fill_between(
                ks, tasks.min(axis=0), tasks.max(axis=0), color=f"C{i}", alpha=0.2
            )
        if res.get("chance") is not None:
            chances.append(float(res["chance"]))
    if chances:
        ax.axhline(float(np.mean(chances)), color="0.5", linestyle="--", label="chance")
    all_k = sorted({int(k) for res in curves.values() for k in res["k"]})
    ax.set_xscale("log")
    ax.set_xticks(all_k)
    ax.set_xticklabels([str(k) for k in all_k])
    ax.set_xlabel("k (latents in the probe)")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("k-sparse probing")
    ax.legend()
    return ax


def plot_concept_maps(
    images,
    maps,
    concepts=None,
    *,
    n_images=None,
    concept_names=None,
    importances=None,
    normalize="concept",
    alpha=0.55,
    cmap="gray",
    map_cmap="inferno",
    fig=None,
):
    """Concept maps overlaid on their images (CRAFT's "where" figure).

    One row per image: the image alone, then one panel per concept with the
    concept's map drawn over the image (stretched to cover it, with bilinear
    display interpolation when the map is coarser than the image).

    Parameters
    ----------
    images : array-like of shape (n_samples, height, width[, channels])
        The input images.
    maps : array-like of shape (n_samples, h, w, n_concepts)
        Concept maps (:func:`skconcepts.inspection.concept_maps`, upsampled
        or not; :func:`skconcepts.inspection.importance_weighted_maps` gives
        weighted ones), one per image.
    concepts : int or sequence of int, default=None
        Columns of ``maps`` to show, in this order (all by default).
    n_images : int, default=None
        Show the first ``n_images`` images (all by default).
    concept_names : list of str of length n_concepts, default=None
        Column titles; ``"concept i"`` by default.
    importances : array-like of shape (n_concepts,), default=None
        Printed beside each concept's title.
    normalize : {"concept", "image"}, default="concept"
        Colour scale of the maps: from 0 to the concept's largest value over
        the shown images (maps of different images compare), or to each
        panel's own maximum (every panel uses the full scale).
    alpha : float, default=0.55
        Opacity of the maps.
    cmap : str, default="gray"
        Colour map of single-channel images.
    map_cmap : str, default="inferno"
        Colour map of the concept maps.
    fig : matplotlib Figure, default=None
        An empty figure to draw in; a new one when None.

    Returns
    -------
    fig : matplotlib Figure
        ``fig.axes`` holds the panels row by row (the image first); each
        overlay panel's ``images`` are the input and the map.

    See Also
    --------
    skconcepts.inspection.concept_maps : Computes the maps.

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from skconcepts.plotting import plot_concept_maps
    >>> images = np.random.RandomState(0).rand(2, 8, 8)
    >>> maps = np.random.RandomState(1).rand(2, 4, 4, 3)
    >>> fig = plot_concept_maps(images, maps, concepts=[2, 0])
    >>> len(fig.axes), fig.axes[1].get_title()
    (6, 'concept 2')
    >>> plt.close("all")
    """
    plt = _pyplot()
    images = np.asarray(images)
    maps = np.asarray(maps, dtype=float)
    if images.ndim not in (3, 4) or maps.ndim != 4 or len(images) != len(maps):
        raise ValueError(
            "images must be (n_samples, height, width[, channels]) and maps "
            "(n_samples, h, w, n_concepts) with the same n_samples; got shapes "
            f"{images.shape} and {maps.shape}."
        )
    if normalize not in ("concept", "image"):
        raise ValueError(f"normalize must be 'concept' or 'image'; got {normalize!r}.")
    k = maps.shape[-1]
    if concepts is None:
        concepts = list(range(k))
    elif isinstance(concepts, numbers.Integral):
        concepts = [concepts]
    concepts = [int(c) for c in concepts]
    if any(not -k <= c < k for c in concepts):
        raise ValueError(
            f"concepts must be indices below n_concepts={k}; got {concepts}."
        )
    names = (
        [f"concept {i}" for i in range(k)]
        if concept_names is None
        else _concept_labels(concept_names, k)
    )
    if importances is not None:
        imp = np.asarray(importances, dtype=float)
        if imp.shape != (k,):
            raise ValueError(
                f"importances must have shape ({k},), one per concept; got {imp.shape}."
            )
        names = [f"{n} ({v:.2f})" for n, v in zip(names, imp, strict=True)]
    n = len(images) if n_images is None else min(int(n_images), len(images))
    height, width = images.shape[1:3]
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)
    if fig is None:
        fig = plt.figure(figsize=(1.4 * (len(concepts) + 1), 1.4 * n + 0.3))
    axes = fig.subplots(n, len(concepts) + 1, squeeze=False)
    img_cmap = cmap if images.ndim == 3 else None
    for i in range(n):
        for j in range(len(concepts) + 1):
            a = axes[i, j]
            a.set_xticks([])
            a.set_yticks([])
            a.imshow(images[i], cmap=img_cmap, extent=extent)
            if j == 0:
                continue
            c = concepts[j - 1]
            scale = maps[:n, ..., c] if normalize == "concept" else maps[i, ..., c]
            top = float(np.max(scale))
            a.imshow(
                maps[i, ..., c],
                cmap=map_cmap,
                alpha=alpha,
                vmin=0.0,
                vmax=top if top > 0 else 1.0,
                extent=extent,
                interpolation="bilinear",
            )
            if i == 0:
                a.set_title(names[c], fontsize=8)
    return fig
