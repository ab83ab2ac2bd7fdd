"""``sharpv_kernels.vocab`` without importing torch and triton.

``import sharpv_kernels`` registers the operators, so it imports torch and triton; the
vocabulary itself is plain Python. The registry and the command line load it alone so that
option errors come back at once; once the package is imported it is the same module.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["vocab"]


def vocab() -> ModuleType:
    """The ``sharpv_kernels.vocab`` module, loaded without its package when needed."""
    name = "sharpv_kernels.vocab"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("sharpv_kernels")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / "vocab.py"
        if path.is_file():
            vspec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(vspec)
            vspec.loader.exec_module(module)
            sys.modules[name] = module
            return module
    import sharpv_kernels.vocab as vocab  # pragma: no cover - unusual installs

    return vocab
