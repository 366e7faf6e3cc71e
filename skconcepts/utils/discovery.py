"""Find every public estimator of the package (used by the common tests)."""

import importlib
import inspect
import pkgutil

from sklearn.base import BaseEstimator


def all_estimators():
    """All public estimator classes defined in skconcepts.

    Walks the package, imports every public module (names that do not start
    with an underscore, tests excluded) and collects the concrete
    ``BaseEstimator`` subclasses defined there whose names are public.

    Returns
    -------
    estimators : list of (name, class) tuples
        Sorted by name.

    Examples
    --------
    >>> from skconcepts.utils import all_estimators
    >>> names = [name for name, _ in all_estimators()]
    >>> "NMFConcepts" in names, "ConceptExtractor" in names
    (True, False)
    """
    import skconcepts

    found = {}
    for info in pkgutil.walk_packages(skconcepts.__path__, "skconcepts."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts[1:]) or "tests" in parts:
            continue
        if parts[1] in ("plotting",):
            continue  # needs the optional matplotlib; defines no estimator
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, BaseEstimator)
                and cls.__module__.startswith("skconcepts")
                and not name.startswith("_")
                and not inspect.isabstract(cls)
                and name != "ConceptExtractor"
            ):
                found[name] = cls
    return sorted(found.items())
