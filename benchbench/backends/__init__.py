"""Backends: one per framework, behind the small protocol in :mod:`benchbench.framework.base`.

``get(name)`` imports the backend module (and so the framework) lazily: only worker
and probe processes call it (the probe's is ``python -m benchbench.backends FRAMEWORK``).
"""

from __future__ import annotations

import importlib

from benchbench.framework.base import Backend, Prepared, Skip

_MODULES = {"torch": "benchbench.backends.torch", "tensorflow": "benchbench.backends.tensorflow"}


def get(name: str) -> Backend:
    if name not in _MODULES:
        raise KeyError(f"no backend for framework {name!r}; known: {', '.join(_MODULES)}")
    return importlib.import_module(_MODULES[name]).BACKEND


__all__ = ["Backend", "Prepared", "Skip", "get"]
