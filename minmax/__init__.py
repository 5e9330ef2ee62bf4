"""minmax: certified steepest descent for min-max problems and adversarial training.

Public names are loaded on first use (the core modules are small, but this keeps ``import minmax``
instant and free of optional dependencies). The core needs only NumPy, SciPy and array-api-compat;
:mod:`minmax.torch` is the PyTorch adapter.
"""

from __future__ import annotations

import importlib

# `gram` names both a submodule and a function. Importing the submodule (minmax.danskin does) makes the
# import system bind the package attribute `gram` to the module, after which the lazy __getattr__
# below is never consulted; binding the function eagerly keeps `from minmax import gram` a function.
from .gram import combine, gram  # noqa: F401  (re-exported: listed in _EXPORTS)

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    # the simplex QP
    "min_norm_point": "minmax.minnorm",
    "check_min_norm": "minmax.minnorm",
    "MinNormResult": "minmax.minnorm",
    "MinNormCertificate": "minmax.minnorm",
    "Status": "minmax.minnorm",
    "METHODS": "minmax.minnorm",
    "project_simplex": "minmax.simplex",
    # gradients, any backend
    "gram": "minmax.gram",
    "combine": "minmax.gram",
    # Danskin's theorem
    "directional_derivative": "minmax.danskin",
    "one_sided_derivative": "minmax.numerical",
    "two_sided_derivative": "minmax.numerical",
    "steepest_descent": "minmax.danskin",
    "SteepestDescentResult": "minmax.danskin",
    "certify_descent": "minmax.descent_certificate",
    "DescentCertificate": "minmax.descent_certificate",
    "estimate_lipschitz": "minmax.descent_certificate",
    "covering_radius": "minmax.descent_certificate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'minmax' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
