"""``kv_compact_``: in-place KV-cache compaction of Memory SharpV (SPEC, Memory SharpV).

One folder, one op: ``checks.py`` (the contract: :class:`CompactArgs` and its checks),
``naive.py`` (the reference), ``torch_path.py``, ``kernels.py`` + ``launch.py`` (Triton),
``ops.py`` (``torch.ops.sharpv.kv_compact_`` and the backend choice), ``api.py`` (the public
function). Importing this package registers the operator.
"""

from .api import kv_compact_
from .checks import CompactArgs
from .launch import kv_compact_triton
from .naive import kv_compact_reference
from .torch_path import kv_compact_torch

__all__ = [
    "CompactArgs",
    "kv_compact_",
    "kv_compact_reference",
    "kv_compact_torch",
    "kv_compact_triton",
]
