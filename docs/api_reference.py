"""The public API of skconcepts, as the API reference documents it.

``docs/conf.py`` calls :func:`write_api_pages` at the start of every build so
that the reference lists exactly the public names of the package:

* the estimators listed in ``skconcepts._LAZY`` (the names importable from
  the top-level package), grouped by family, plus any other name in the
  ``__all__`` of a family subpackage (documented under that subpackage);
* ``__all__`` of ``skconcepts.metrics``, ``skconcepts.datasets``,
  ``skconcepts.plotting`` and ``skconcepts.utils``.

A module that does not exist yet is left out; a module that exists but fails
to import is an error. ``tests/test_docs.py`` uses :func:`public_api` to check
that every public name got a page and a complete numpydoc docstring.
"""

import importlib
import inspect
from pathlib import Path

#: (section file, title, intro, [(subsection title, module)])
SECTIONS = [
    (
        "estimators",
        "Estimators",
        "Every estimator is importable from the top-level package, e.g. "
        "``from skconcepts import NMFConcepts``.",
        [
            ("Concept extraction: NMF family", "skconcepts.decomposition"),
            ("Sparse autoencoders", "skconcepts.sae"),
            ("Concept importance", "skconcepts.importance"),
            ("Concept erasure", "skconcepts.erasure"),
            ("Base class", "skconcepts.base"),
            ("Concept shift", "skconcepts.shift"),
        ],
    ),
    (
        "metrics",
        "Metrics",
        "Scores of dictionaries, codes, importances and erasure.",
        [("", "skconcepts.metrics")],
    ),
    (
        "datasets",
        "Datasets",
        "Synthetic generators with known ground truth and small activation sets.",
        [("", "skconcepts.datasets")],
    ),
    (
        "plotting",
        "Plotting",
        "Figures (needs matplotlib: ``pip install skconcepts[plot]``).",
        [("", "skconcepts.plotting")],
    ),
    (
        "outofcore",
        "Data larger than memory",
        "Zarr, HDF5 and dask arrays as memmaps, and chunk streams for "
        "``partial_fit`` (importable from the top-level package, e.g. "
        "``from skconcepts import as_memmap``).",
        [("", "skconcepts._io")],
    ),
    (
        "distributed",
        "Distributed training",
        "Data-parallel training of the sparse autoencoders over several "
        "processes (``torch.distributed``).",
        [("", "skconcepts.distributed")],
    ),
    (
        "utils",
        "Utilities",
        "Helpers for developers and the test suite.",
        [("", "skconcepts.utils")],
    ),
    (
        "inspection",
        "Inspection: where concepts are",
        "Concept maps of positional activations (feature maps, patch tokens, "
        "frames), the top inputs of each concept and recursive concepts "
        "(CRAFT). ``RecursiveConcepts`` is importable from the top-level "
        "package."
        " Concepts rendered in the input space (Listen to Interpret): "
        "``NMFInterpreter`` (also top-level) and ``spectrogram_to_audio``.",
        [("", "skconcepts.inspection")],
    ),
]


def _import(module):
    """Import ``module``; None when it (not one of its imports) is absent."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise


def public_api():
    """Public names by section.

    Returns
    -------
    api : list of (section, title, intro, groups)
        ``groups`` is a list of ``(subtitle, currentmodule, [(name, obj)])``.
    """
    import skconcepts

    lazy = skconcepts._LAZY
    api = []
    for section, title, intro, subsections in SECTIONS:
        groups = []
        for subtitle, module_name in subsections:
            module = _import(module_name)
            if module is None:
                continue
            top, sub = [], []
            names = list(getattr(module, "__all__", []))
            names += [n for n, m in lazy.items() if m == module_name]
            for name in dict.fromkeys(names):
                if name == "DEVICE_CONSTRAINT":
                    continue  # a constant, documented in the base class
                if not hasattr(module, name):
                    continue  # planned, not written yet (see missing_names)
                if name in lazy and lazy[name] == module_name:
                    top.append((name, getattr(skconcepts, name)))
                else:
                    sub.append((name, getattr(module, name)))
            if top:
                groups.append((subtitle, "skconcepts", top))
            if sub:
                label = subtitle or ""
                if top:
                    label = f"{subtitle}: ``{module_name}``"
                groups.append((label, module_name, sub))
        api.append((section, title, intro, groups))
    return api


def missing_names():
    """Names that ``skconcepts`` declares public but that do not resolve.

    Returns
    -------
    missing : list of str
        ``skconcepts.<name>`` for every lazy top-level name whose module or
        attribute is absent, and ``<module>.<name>`` for every name of a
        documented module's ``__all__`` that the module does not define.
    """
    import skconcepts

    missing = []
    for name, module_name in skconcepts._LAZY.items():
        module = _import(module_name)
        if module is None or not hasattr(module, name):
            missing.append(f"skconcepts.{name}")
    for _, _, _, subsections in SECTIONS:
        for _, module_name in subsections:
            module = _import(module_name)
            for name in getattr(module, "__all__", []):
                if not hasattr(module, name):
                    missing.append(f"{module_name}.{name}")
    return missing


def uncovered_modules():
    """Public top-level modules of skconcepts that no API section lists.

    Returns
    -------
    modules : list of str
        ``skconcepts.<name>`` for every public (no leading underscore)
        module or subpackage that is in no entry of :data:`SECTIONS`.
    """
    import pkgutil

    import skconcepts

    covered = {m for _, _, _, subs in SECTIONS for _, m in subs}
    return [
        f"skconcepts.{info.name}"
        for info in pkgutil.iter_modules(skconcepts.__path__)
        if not info.name.startswith("_") and f"skconcepts.{info.name}" not in covered
    ]


def _autosummary(names):
    lines = [".. autosummary::", "   :toctree: .", "   :nosignatures:", ""]
    kinds = {"class.rst": [], "function.rst": [], "data.rst": []}
    for n, obj in names:
        if inspect.isclass(obj):
            kinds["class.rst"].append(n)
        elif callable(obj):
            kinds["function.rst"].append(n)
        else:
            kinds["data.rst"].append(n)  # a public constant
    out = []
    for template, members in kinds.items():
        if members:
            out += lines[:2] + [f"   :template: {template}"] + lines[2:]
            out += [f"   {n}" for n in members] + [""]
    return out


def write_api_pages(folder):
    """Write one reStructuredText page per API section into ``folder``.

    Parameters
    ----------
    folder : path-like
        Output folder (``docs/api/generated``; ignored by git).

    Returns
    -------
    pages : list of str
        The section names written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    api = public_api()
    # stubs of names that are no longer public would be orphan pages
    keep = {f"{section}.rst" for section, _, _, _ in api}
    for _, _, _, groups in api:
        for _, module, names in groups:
            keep.update(f"{module}.{name}.rst" for name, _ in names)
    for stale in folder.glob("*.rst"):
        if stale.name not in keep:
            stale.unlink()
    pages = []
    for section, title, intro, groups in api:
        lines = [title, "=" * len(title), "", intro, ""]
        if not groups:
            lines += ["Nothing in this section yet.", ""]
        for subtitle, module, names in groups:
            lines += [f".. currentmodule:: {module}", ""]
            if subtitle:
                lines += [subtitle, "-" * len(subtitle), ""]
            lines += _autosummary(names)
        text = "\n".join(lines) + "\n"
        path = folder / f"{section}.rst"
        # rewrite only on change, so that Sphinx does not re-read the page
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        pages.append(section)
    return pages
