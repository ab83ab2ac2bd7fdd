"""sharpv_kernels: fused Triton kernels for SharpV video-token pruning.

Importing the package registers the ``torch.ops.sharpv.*`` operators. Depends on torch and
triton only.
"""

from . import vocab
from .ops.kv_compact import kv_compact_
from .ops.layer_similarity import layer_similarity
from .ops.visual_prune import (
    VisualPruneResult,
    visual_prune,
    visual_prune_reference,
    visual_scores,
    visual_scores_reference,
)
from .vocab import budget_token_count, ratio_keep_count
from .warmup import warmup

__version__ = "0.1.0"

__all__ = [
    "vocab",
    "budget_token_count",
    "ratio_keep_count",
    "kv_compact_",
    "layer_similarity",
    "VisualPruneResult",
    "visual_prune",
    "visual_prune_reference",
    "visual_scores",
    "visual_scores_reference",
    "warmup",
]
