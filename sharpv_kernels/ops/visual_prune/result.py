"""The result type shared by Visual SharpV and every pruning method built on it."""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["VisualPruneResult"]


class VisualPruneResult(NamedTuple):
    """Output of :func:`sharpv_kernels.visual_prune` (SPEC, Visual SharpV item 10).

    Attributes:
        tokens: ``(N_keep, d)`` kept feature rows, input dtype, in (frame, token) order.
        indices: ``(N_keep,)`` int64 flat indices of the kept rows into ``total_frames * f``.
        counts: ``(total_frames,)`` int32 number of tokens kept in each frame.
        ratios: ``(total_frames,)`` float32 per-frame keep ratio ``r_t`` in ``[0, 1]``.
        cu_tokens: ``(B + 1,)`` int32 offsets of each video's kept tokens in ``tokens``.
        scores: ``(total_frames, f)`` float32 importance ``I`` when requested, else ``None``.
    """

    tokens: torch.Tensor
    indices: torch.Tensor
    counts: torch.Tensor
    ratios: torch.Tensor
    cu_tokens: torch.Tensor
    scores: torch.Tensor | None = None
