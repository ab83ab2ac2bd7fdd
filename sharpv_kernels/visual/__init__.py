"""Pre-0.2 import path of the folder :mod:`sharpv_kernels.ops.visual_prune` (kept so old
imports work).

``sharpv_kernels.visual`` and ``sharpv_kernels.visual.<module>`` are the very module objects
of ``sharpv_kernels.ops.visual_prune`` (one copy of every module, so patching either name patches
both). New code imports ``sharpv_kernels.ops.visual_prune``.
"""

import sys

from ..ops import visual_prune
from ..ops.visual_prune import api, checks, kernels, launch, naive, native, ops, result, torch_path

for _module in (api, checks, kernels, launch, naive, native, ops, result, torch_path):
    sys.modules[f"{__name__}.{_module.__name__.rpartition('.')[2]}"] = _module
sys.modules[__name__] = visual_prune
