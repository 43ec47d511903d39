"""A module imported on first use of one of its attributes (``importlib.util.LazyLoader``): scipy.special costs
~0.25 s of start-up (and pulls numpy.f2py in), and most commands, or replay's stage-1 process, never call it."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy(name: str) -> ModuleType:
    """``name``'s module, loaded at its first attribute access (at once if it is already loaded)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}")
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
