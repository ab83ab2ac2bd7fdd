"""``torch.ops.sharpv.visual_prune`` and ``torch.ops.sharpv.visual_scores``.

CUDA tensors run the Triton kernels (``launch.py``); CPU tensors run the vectorized PyTorch
path (``cpu.py``). The fake implementations give the data-dependent output size an unbacked
symbol, so a function calling the op traces under ``torch.compile(fullgraph=True)``.
"""

from __future__ import annotations

import torch

from .checks import NONFINITE_MESSAGE, check_cu_values, check_visual_args
from .cpu import visual_prune_torch, visual_scores_cpu
from .launch import MAX_TOKENS_PER_FRAME, visual_prune_triton, visual_scores_triton

__all__ = ["visual_prune_op", "visual_scores_op"]

_Out6 = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _use_triton(features: torch.Tensor) -> bool:
    return features.is_cuda


def _check_cpu_data(bad: torch.Tensor) -> None:
    if bool(bad):
        raise ValueError(NONFINITE_MESSAGE)


@torch.library.custom_op("sharpv::visual_prune", mutates_args=())
def visual_prune_op(
    features: torch.Tensor,
    cu_frames: torch.Tensor,
    mode: str,
    w: float,
    threshold: float,
    keep_ratio: float | None,
    budget: float | None,
    min_keep: int,
    metric: str,
    return_scores: bool,
) -> _Out6:
    """Visual SharpV. Returns ``(tokens, indices, counts, ratios, cu_tokens, scores)``;
    ``scores`` is ``(total_frames, f)`` float32 when ``return_scores`` else an empty tensor.
    See :func:`sharpv_kernels.visual_prune` for the contract."""
    check_visual_args(
        features, cu_frames, mode=mode, w=w, threshold=threshold, keep_ratio=keep_ratio,
        budget=budget, min_keep=min_keep, metric=metric,
    )  # fmt: skip
    cu_frames = cu_frames.to(torch.int32)
    if _use_triton(features):
        if features.shape[1] > MAX_TOKENS_PER_FRAME:
            raise ValueError(f"features.shape[1] must be <= {MAX_TOKENS_PER_FRAME} on CUDA")
        tokens, indices, counts, ratios, cu_tokens, scores = visual_prune_triton(
            features, cu_frames, mode=mode, w=w, threshold=threshold, keep_ratio=keep_ratio,
            budget=budget, min_keep=min_keep, metric=metric,
        )  # fmt: skip
    else:
        check_cu_values(cu_frames, features.shape[0])
        tokens, indices, counts, ratios, cu_tokens, scores = visual_prune_torch(
            features, cu_frames, mode=mode, w=w, threshold=threshold, keep_ratio=keep_ratio,
            budget=budget, min_keep=min_keep, metric=metric,
        )  # fmt: skip
    if not return_scores:
        scores = scores.new_empty(0)
    return tokens, indices, counts, ratios, cu_tokens, scores


@visual_prune_op.register_fake
def _visual_prune_fake(
    features, cu_frames, mode, w, threshold, keep_ratio, budget, min_keep, metric, return_scores
):
    n_frames, f, d = features.shape
    n_keep = torch.library.get_ctx().new_dynamic_size()
    return (
        features.new_empty((n_keep, d)),
        features.new_empty((n_keep,), dtype=torch.int64),
        features.new_empty((n_frames,), dtype=torch.int32),
        features.new_empty((n_frames,), dtype=torch.float32),
        features.new_empty((cu_frames.shape[0],), dtype=torch.int32),
        features.new_empty((n_frames, f) if return_scores else (0,), dtype=torch.float32),
    )


@torch.library.custom_op("sharpv::visual_scores", mutates_args=())
def visual_scores_op(
    features: torch.Tensor, cu_frames: torch.Tensor, w: float, metric: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spatial ``S``, temporal ``T``, importance ``I`` (each ``(total_frames, f)`` float32)
    and keep ratio ``r`` (``(total_frames,)`` float32) of Visual SharpV, for analysis."""
    check_visual_args(
        features, cu_frames, mode="adaptive", w=w, threshold=0.0, keep_ratio=None,
        budget=None, min_keep=0, metric=metric,
    )  # fmt: skip
    cu_frames = cu_frames.to(torch.int32)
    if _use_triton(features):
        return visual_scores_triton(features, cu_frames, w=w, metric=metric)
    check_cu_values(cu_frames, features.shape[0])
    S, T, I, r, bad = visual_scores_cpu(features, cu_frames, w, metric)
    _check_cpu_data(bad)
    return S, T, I, r


@visual_scores_op.register_fake
def _visual_scores_fake(features, cu_frames, w, metric):
    n_frames, f, _ = features.shape
    s = features.new_empty((n_frames, f), dtype=torch.float32)
    return s, torch.empty_like(s), torch.empty_like(s), s.new_empty((n_frames,))
