"""Memory SharpV: per-layer visual similarity and in-place KV-cache compaction.

Importing this package registers ``torch.ops.sharpv.layer_similarity`` and
``torch.ops.sharpv.kv_compact_``.
"""

from .api import kv_compact_, layer_similarity
from .launch import kv_compact_triton, layer_similarity_triton
from .naive import kv_compact_reference, layer_similarity_reference

__all__ = [
    "layer_similarity",
    "kv_compact_",
    "layer_similarity_reference",
    "kv_compact_reference",
    "layer_similarity_triton",
    "kv_compact_triton",
]
