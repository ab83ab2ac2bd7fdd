"""Visual SharpV: pre-LLM visual token pruning (SPEC, Visual SharpV).

Importing this package registers ``torch.ops.sharpv.visual_prune`` and
``torch.ops.sharpv.visual_scores``.
"""

from .api import visual_prune, visual_scores
from .naive import visual_prune_reference, visual_scores_reference
from .result import VisualPruneResult

__all__ = [
    "VisualPruneResult",
    "visual_prune",
    "visual_prune_reference",
    "visual_scores",
    "visual_scores_reference",
]
