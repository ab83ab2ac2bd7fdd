"""Visual SharpV: pre-LLM visual token pruning (SPEC, Visual SharpV)."""

from . import ops as _ops  # noqa: F401  (registers torch.ops.sharpv.visual_*)
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
