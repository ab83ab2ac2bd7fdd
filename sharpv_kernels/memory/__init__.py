"""Pre-0.2 import path of Memory SharpV, now two op folders: :mod:`sharpv_kernels.ops.layer_similarity`
and :mod:`sharpv_kernels.ops.kv_compact` (kept so old imports work).

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
from ..ops.layer_similarity import layer_similarity, layer_similarity_reference, layer_similarity_triton

__all__ = [
    "layer_similarity",
    "kv_compact_",
    "layer_similarity_reference",
    "kv_compact_reference",
    "layer_similarity_triton",
    "kv_compact_triton",
]

#: names that moved from ``memory.checks`` to ``sharpv_kernels._utils``
_SHARED_CHECKS = ("INDEX_DTYPES", "check_written_memory")


def _merged(role: str) -> types.ModuleType:
    module = types.ModuleType(f"{__name__}.{role}", f"Pre-0.2 path: ``{role}`` of both ops.")
    for package in (_similarity, _compact):
        names = vars(getattr(package, role))
        module.__dict__.update({k: v for k, v in names.items() if not k.startswith("__")})
    if role == "checks":
        module.__dict__.update({k: getattr(_utils, k) for k in _SHARED_CHECKS})
    sys.modules[module.__name__] = module
    return module


api, checks, kernels, launch, naive, ops, torch_path = map(
    _merged, ("api", "checks", "kernels", "launch", "naive", "ops", "torch_path")
)
