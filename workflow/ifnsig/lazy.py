"""Modules imported on first use, so that each job pays only for the libraries its stage uses.

Every job of the workflow is a fresh Python process that runs one stage: importing all of
:mod:`ifnsig.stages` eagerly would load anndata, scipy.stats, statsmodels and matplotlib
into every job, about 3 s of CPU each, whether the stage needs them or not.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """``name``, imported on first attribute access (``importlib.util.LazyLoader``).

    An ``import name`` elsewhere afterwards gets the same module object (loaded on its first
    attribute access too); a module that is already imported is returned as it is. The first
    access must not come from two threads at once (Python 3.11's loader takes no lock): the
    stages' worker threads run numpy kernels only.
    """
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    # As an import would: ``import ifnsig.linkage`` elsewhere then finds it on the package.
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


@contextlib.contextmanager
def without_modules(*names: str):
    """While the block runs, ``import name`` raises ImportError for each of ``names`` that is
    not imported yet: for the optional imports a library tries at its top (statsmodels tries
    polars, 0.4 s, for inputs this workflow never passes it). Afterwards they import again."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
