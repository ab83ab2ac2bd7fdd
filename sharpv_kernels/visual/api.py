"""Public Python API of Visual SharpV."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .checks import check_visual_args, normalize_cu_frames
from .result import VisualPruneResult

__all__ = ["visual_prune", "visual_scores"]


def visual_prune(
    features: torch.Tensor,
    cu_frames: torch.Tensor | Sequence[int] | None = None,
    *,
    mode: str = "adaptive",
    w: float = 1.0,
    threshold: float = 1.6,
    keep_ratio: float | None = None,
    budget: float | None = None,
    min_keep: int = 1,
    metric: str = "dissim",
    return_scores: bool = False,
) -> VisualPruneResult:
    """Prune the visual tokens of a varlen batch of videos with Visual SharpV.

    Args:
        features: ``(total_frames, f, d)`` float32/float16/bfloat16 visual tokens as they
            would enter the LLM, the frames of all videos packed one after the other.
        cu_frames: ``(B + 1,)`` frame offsets of the videos (int32/int64 tensor on the
            features' device, or a sequence of ints); None means one video.
        mode: ``"adaptive"`` (``k_t = ceil(r_t f)``), ``"manual"`` (keep ``I > threshold``),
            ``"ratio"`` (``k_t = ceil(keep_ratio f)``) or ``"budget"`` (exactly
            ``round(budget n f)`` tokens per video).
        w: weight of the spatial score in ``I = T + w S``.
        threshold: the manual mode's ``K``.
        keep_ratio: the ratio mode's fixed keep ratio in (0, 1].
        budget: the budget mode's fraction of tokens kept per video, in (0, 1].
        min_keep: fewest tokens kept in any frame, in ``[0, f]``.
        metric: ``"dissim"`` (``||unit(a) - unit(b)||``) or ``"cosine"`` (``1 - cos``).
        return_scores: also return the importance ``I``.
    Returns:
        :class:`VisualPruneResult` ``(tokens, indices, counts, ratios, cu_tokens, scores)``.
    Raises:
        TypeError, ValueError: bad arguments, NaN/Inf in ``features``, malformed ``cu_frames``.
    """
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    cu = normalize_cu_frames(cu_frames, features)
    check_visual_args(
        features, cu, mode=mode, w=w, threshold=threshold, keep_ratio=keep_ratio,
        budget=budget, min_keep=min_keep, metric=metric,
    )  # fmt: skip
    out = torch.ops.sharpv.visual_prune(
        features, cu, mode, float(w), float(threshold),
        None if keep_ratio is None else float(keep_ratio),
        None if budget is None else float(budget), int(min_keep), metric, bool(return_scores),
    )  # fmt: skip
    return VisualPruneResult(*out[:5], scores=out[5] if return_scores else None)


def visual_scores(
    features: torch.Tensor,
    cu_frames: torch.Tensor | Sequence[int] | None = None,
    *,
    w: float = 1.0,
    metric: str = "dissim",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Visual SharpV's scores without pruning: ``S, T, I`` ``(total_frames, f)`` and the keep
    ratio ``r`` ``(total_frames,)``, all float32. Same inputs as :func:`visual_prune`."""
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    cu = normalize_cu_frames(cu_frames, features)
    return torch.ops.sharpv.visual_scores(features, cu, float(w), metric)
