"""Pre-0.2 import path of Memory SharpV (kept so old imports work), now two op folders:
:mod:`sharpv_kernels.ops.layer_similarity` and :mod:`sharpv_kernels.ops.kv_compact`.

``sharpv_kernels.memory.<role>`` (``api``, ``checks``, ``kernels``, ``launch``, ``naive``,
``ops``, ``torch_path``) is a module holding the names of both ops' ``<role>`` modules
(underscore names included): the same objects, so ``memory.launch.kv_compact_triton is
ops.kv_compact.launch.kv_compact_triton``. New code imports the op folders.
"""

import sys
import types

from .. import _utils
from ..ops import kv_compact as _compact
from ..ops import layer_similarity as _similarity
from ..ops.kv_compact import kv_compact_, kv_compact_reference, kv_compact_triton
from ..ops.layer_similarity import (
    layer_similarity,
    layer_similarity_reference,
    layer_similarity_triton,
)

__all__ = [
    "layer_similarity",
    "kv_compact_",
    "layer_similarity_reference",
    "kv_compact_reference",
    "layer_similarity_triton",
    "kv_compact_triton",
]


class _Merged(types.ModuleType):
    """A module holding the names of ``sources`` (the first that defines a name wins), written
    through: ``setattr`` (``monkeypatch``) also changes the module that defines the name, so
    the op code, which reads its own module, sees the patch."""

    def __init__(self, name: str, sources: tuple[types.ModuleType, ...]) -> None:
        names = ", ".join(m.__name__ for m in sources)
        super().__init__(name, f"Pre-0.2 path: the names of {names}.")
        for source in reversed(sources):
            self.__dict__.update({k: v for k, v in vars(source).items() if k[:2] != "__"})
        self.__dict__["_sources"] = sources

    def _owner(self, name: str) -> types.ModuleType | None:
        return next((m for m in self._sources if name in vars(m)), None)

    def __setattr__(self, name: str, value: object) -> None:
        owner = self._owner(name)
        if owner is not None:
            setattr(owner, name, value)
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        owner = self._owner(name)
        if owner is not None:
            delattr(owner, name)
        super().__delattr__(name)


def _merged(role: str) -> types.ModuleType:
    sources = (getattr(_similarity, role), getattr(_compact, role))
    # check_written_memory and INDEX_DTYPES moved from memory.checks to sharpv_kernels._utils
    module = _Merged(f"{__name__}.{role}", sources + ((_utils,) if role == "checks" else ()))
    sys.modules[module.__name__] = module
    return module


api, checks, kernels, launch, naive, ops, torch_path = map(
    _merged, ("api", "checks", "kernels", "launch", "naive", "ops", "torch_path")
)
