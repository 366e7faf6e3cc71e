"""The documentation cannot rot: the site builds, the gallery runs, and every
public name has a complete numpydoc docstring.

Design (kept fast for the < 10 min suite):

* ``test_docs_build`` builds the whole Sphinx site in a subprocess into a
  temporary folder with ``-D plot_gallery=0`` (sphinx-gallery writes the
  example pages without executing them). The build must succeed, print no
  warning outside a short allow-list, and produce an API page for every
  public name.
* ``test_gallery_example`` runs every ``docs/examples/plot_*.py`` as its own
  subprocess (headless matplotlib, offline Hugging Face hub), so each example
  is executed on every test run, on one worker each with ``-n 2``. The full
  build (``python -m sphinx -b html docs docs/_build/html``) runs them again
  and aborts on an example error.
* ``test_docstring`` walks the public API (estimators, the ``__all__`` of
  ``skconcepts.metrics``, ``skconcepts.datasets``, ``skconcepts.plotting``,
  ``skconcepts.utils`` and of the family subpackages) with numpydoc's
  validator.
"""

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = sorted((DOCS / "examples").glob("plot_*.py"))

sys.path.insert(0, str(DOCS))
api_reference = importlib.import_module("api_reference")
sys.path.remove(str(DOCS))

# Warnings that do not make the site wrong. Keep this list short.
ALLOWED_WARNINGS = [
    # sphinx-gallery's note when plot_gallery=0 (nothing to show yet)
    re.compile(r"plot_gallery.*(False|0)"),
]


def _env():
    env = dict(os.environ)
    env.update(
        MPLBACKEND="Agg",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
        PYTHONWARNINGS="ignore::DeprecationWarning",
    )
    return env


def _public_objects():
    """(qualified name, object, is_estimator) for every documented name."""
    from sklearn.base import BaseEstimator

    out = []
    for _, _, _, groups in api_reference.public_api():
        for _, module, names in groups:
            for name, obj in names:
                est = inspect.isclass(obj) and issubclass(obj, BaseEstimator)
                out.append((f"{module}.{name}", obj, est))
    return out


PUBLIC = _public_objects()
# the docstring checks are for classes and functions (constants are
# documented by a ``#:`` comment and only need their API page)
CALLABLES = [p for p in PUBLIC if callable(p[1])]


def test_docs_build(tmp_path):
    warnings_file = tmp_path / "warnings.txt"
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-b",
        "html",
        "-q",
        "-D",
        "plot_gallery=0",
        "-w",
        str(warnings_file),
        "-d",
        str(tmp_path / "doctrees"),
        str(DOCS),
        str(tmp_path / "html"),
    ]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    text = warnings_file.read_text() if warnings_file.exists() else ""
    problems = [
        line
        for line in text.splitlines()
        if ("WARNING" in line or "ERROR" in line or "CRITICAL" in line)
        and not any(p.search(line) for p in ALLOWED_WARNINGS)
    ]
    assert not problems, "Sphinx warnings:\n" + "\n".join(problems)

    html = tmp_path / "html"
    for page in ["index", "install", "api", "benchmarks", "auto_examples/index"]:
        assert (html / f"{page}.html").is_file(), page
    # every public name has its API page, and it is not empty
    for qualname, obj, _ in PUBLIC:
        page = html / "api" / "generated" / f"{qualname}.html"
        assert page.is_file(), f"no API page for {qualname}"
        content = page.read_text()
        assert "Parameters" in content or not _has_parameters(obj), qualname
    # every guide page, gallery example and benchmark table made it in
    for guide in sorted((DOCS / "guide").glob("*.md")):
        assert (html / "guide" / f"{guide.stem}.html").is_file(), guide.name
    gallery = (html / "auto_examples" / "index.html").read_text()
    for script in EXAMPLES:
        assert script.stem in gallery, script.name
    bench = (html / "benchmarks.html").read_text()
    for table in sorted((ROOT / "benchmarks" / "results").glob("*.md")):
        assert f"benchmarks/results/{table.name}" in bench, table.name
    _check_rendering(html, bench)


def _page_text(path):
    import html as _html

    text = re.sub(r"<script.*?</script>", "", path.read_text(), flags=re.S)
    return _html.unescape(re.sub(r"<[^>]+>", "", text))


def _check_rendering(html, bench):
    """What a reader sees: offline math, no raw markup, readable headings."""
    # MathJax is shipped with the site: no page loads it from the network
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    for page in html.rglob("*.html"):
        text = page.read_text()
        scripts = re.findall(r"<script[^>]+src=\"([^\"]+)\"", text)
        scripts += re.findall(r"<link[^>]+stylesheet[^>]+href=\"([^\"]+)\"", text)
        remote = [s for s in scripts if s.startswith(("http:", "https:", "//"))]
        assert not remote, f"{page.relative_to(html)} loads {remote}"
    # no raw reST literal markup (``name``) in the text of an API page
    for page in sorted((html / "api" / "generated").glob("*.html")):
        raw = re.findall(r".{0,40}``.{0,40}", _page_text(page))
        assert not raw, f"raw double backticks in {page.name}: {raw[:3]}"
    # the benchmarks page: one section per table, short headings
    heads = [
        re.sub(r"<[^>]+>|#", "", h).strip()
        for h in re.findall(r"<h[23][^>]*>(.*?)</h[23]>", bench, re.S)
    ]
    repeated = {h for h in heads if heads.count(h) > 1}
    assert not repeated, f"headings repeated on the benchmarks page: {repeated}"
    long = [h for h in heads if len(h) > 90]
    assert not long, f"headings too long to read as headings: {long}"


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_gallery_example(script, tmp_path):
    # run as sphinx-gallery does: from the examples folder, headless
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=script.parent,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


def test_readme_example_runs(tmp_path):
    # the README's first Python block is the first thing a user copies
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    lines = [ln for ln in code.splitlines() if ln.strip() and "import" not in ln]
    assert len(lines) <= 10, "the README promises ten lines"
    # run from the folder that holds a clone named like the package: the
    # clone must not shadow the installed package (a namespace package)
    (tmp_path / "skconcepts").mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Warning" not in proc.stderr, proc.stderr[-3000:]
    r2 = float(re.search(r"R2 = ([0-9.]+)", proc.stdout).group(1))
    top = re.findall(r"\d+", proc.stdout.split("digit:")[1])
    assert r2 > 0.8 and len(top) == 10, proc.stdout


def test_gallery_examples_have_a_title():
    # sphinx-gallery needs a reST title in the module docstring
    for script in EXAMPLES:
        doc = script.read_text().split('"""')
        assert len(doc) >= 3, f"{script.name}: no docstring"
        lines = [ln for ln in doc[1].strip().splitlines()]
        assert len(lines) >= 2 and set(lines[1]) <= set("=#-"), script.name


def test_public_names_resolve():
    # a name the package declares public must exist
    assert api_reference.missing_names() == []


def test_every_public_module_is_in_the_api_reference():
    # a new public module needs its section in docs/api_reference.py
    assert api_reference.uncovered_modules() == []
    sections = [s for s, _, _, _ in api_reference.SECTIONS]
    listed = (DOCS / "api.rst").read_text()
    for section in sections:
        assert f"api/generated/{section}" in listed, section


# ---------------------------------------------------------------- docstrings
# numpydoc validation codes that must not occur
# GL08 no docstring, PR01 parameter not documented, PR02 documented parameter
# not in the signature, PR07 parameter without description, RT01 no Returns
# section, EX01 no Examples section (the Examples run as doctests: setup.cfg)
OBJECT_CODES = {"GL08", "PR01", "PR02", "PR07", "RT01", "EX01"}
METHOD_CODES = {"GL08", "PR01", "PR02", "RT01"}


def _has_parameters(obj):
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return False
    return any(
        p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL,)
        for p in sig.parameters.values()
    )


def _own_methods(cls):
    """Public methods of ``cls`` written in skconcepts (not scikit-learn's)."""
    names = []
    for name in dir(cls):
        if name.startswith("_"):
            continue
        attr = inspect.getattr_static(cls, name, None)
        if isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if not inspect.isfunction(attr):
            continue
        if getattr(attr, "__module__", "").startswith("skconcepts"):
            names.append(name)
    return names


def _errors(qualname, codes):
    from numpydoc.validate import validate

    result = validate(qualname)
    return [f"{qualname}: {c} {msg}" for c, msg in result["errors"] if c in codes]


@pytest.mark.parametrize(
    "qualname, obj, is_estimator", CALLABLES, ids=[q for q, _, _ in CALLABLES]
)
def test_docstring(qualname, obj, is_estimator):
    from numpydoc.docscrape import ClassDoc, FunctionDoc

    errors = _errors(qualname, OBJECT_CODES)
    if inspect.isclass(obj):
        doc = ClassDoc(obj, config={"show_class_members": False})
        if _has_parameters(obj) and not doc["Parameters"]:
            errors.append(f"{qualname}: no Parameters section")
        if is_estimator and not inspect.isabstract(obj) and not doc["Attributes"]:
            errors.append(f"{qualname}: no Attributes section")
        for method in _own_methods(obj):
            errors += _errors(f"{qualname}.{method}", METHOD_CODES)
    else:
        doc = FunctionDoc(obj)
        if _has_parameters(obj) and not doc["Parameters"]:
            errors.append(f"{qualname}: no Parameters section")
        if not (doc["Returns"] or doc["Yields"]):
            errors.append(f"{qualname}: no Returns section")
    assert not errors, "\n".join(dict.fromkeys(errors))
