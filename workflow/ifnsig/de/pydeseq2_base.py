"""pydeseq2, imported without the plotting and scikit-learn modules its ``utils`` loads.

``pydeseq2.utils`` imports ``matplotlib.pyplot`` (for its plots) and
``sklearn.linear_model`` (for the dense backend's linear start) at the top, and every
pydeseq2 module imports ``pydeseq2.utils``: about 1 s of CPU in every DE job, none of
which the subject-blocked fit uses. Here ``matplotlib.pyplot`` is imported on first
attribute access (:func:`ifnsig.lazy.lazy_module`) and ``LinearRegression`` on first call;
every DE module imports pydeseq2 through this one.
"""

from __future__ import annotations

import sys
from types import ModuleType

from ifnsig.lazy import lazy_module


def _linear_regression(*args, **kwargs):
    """``sklearn.linear_model.LinearRegression(*args, **kwargs)``, imported on first call."""
    from sklearn.linear_model import LinearRegression

    return LinearRegression(*args, **kwargs)


def _import_utils() -> ModuleType:
    if "pydeseq2.utils" in sys.modules:
        return sys.modules["pydeseq2.utils"]
    lazy_module("matplotlib.pyplot")
    stand_in = None
    if "sklearn.linear_model" not in sys.modules:
        stand_in = ModuleType("sklearn.linear_model")
        stand_in.LinearRegression = _linear_regression
        sys.modules["sklearn.linear_model"] = stand_in
    try:
        import pydeseq2.utils
    finally:
        # The stand-in served that one import: a later import gets scikit-learn's module.
        if stand_in is not None and sys.modules.get("sklearn.linear_model") is stand_in:
            del sys.modules["sklearn.linear_model"]
    return pydeseq2.utils


utils = _import_utils()

from pydeseq2.default_inference import DefaultInference  # noqa: E402 (after utils)

__all__ = ["DefaultInference", "utils"]
