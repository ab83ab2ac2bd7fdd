"""SharpV for video LLMs: configuration, Hugging Face integration, KV cache, command line.

Names are imported lazily so that ``import sharpv`` stays cheap and transformers remains
an optional dependency (only the integration modules need it). The layout of the package is
described in ``docs/architecture.md``.

Examples:
    >>> import sharpv
    >>> sharpv.SharpVConfig(memory_threshold=0.3).memory_threshold
    0.3
"""

from __future__ import annotations

import importlib
from typing import Any

from ._hosts import warn_untested_hosts

__version__ = "0.1.0"

# one UserWarning per host (transformers, torch, triton, vLLM, lmms-eval) newer than the
# range CI tested; reads installed metadata only, imports none of them
warn_untested_hosts()

# public name -> module (relative to this package) that defines it
_LAZY = {
    # Memory SharpV (python/sharpv/memory.py on the hooks base python/sharpv/hooks.py, and
    # python/sharpv/cache.py)
    "memory_sharpv": "memory",
    "MemorySharpVState": "memory",
    "CompactingCache": "cache",
    # drop-in integration (python/sharpv/config.py, python/sharpv/integration.py)
    "SharpVConfig": "config",
    "apply_sharpv": "integration",
    "revert_sharpv": "integration",
    # baselines' code and the configuration-to-pruner factory (python/sharpv/baselines/)
    "baselines": "baselines",
    # the method registry: names, option schemas, THE validation (python/sharpv/methods/)
    "methods": "methods",
    "register_method": "methods",
}

#: public names that differ from the module's own
_ALIAS = {"register_method": "register"}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sharpv' has no attribute {name!r}")
    mod = importlib.import_module(f".{module}", __name__)
    value = mod if name == module else getattr(mod, _ALIAS.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
