"""Public Python API of Visual SharpV."""

from __future__ import annotations

from collections.abc import Sequence
from inspect import Parameter
from typing import Any

import torch

from ..._utils import signature_of
from ...vocab import DEFAULT_METRIC, DEFAULT_W
from . import ops as _ops  # registers torch.ops.sharpv.visual_*
from .checks import (
    PruneOptions,
    as_cu_tensor,
    check_visual_args,
    check_visual_call,
    host_cu_tensor,
    host_cu_values,
)
from .result import VisualPruneResult

__all__ = ["visual_prune", "visual_scores"]


def _features(features: object) -> torch.Tensor:
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if features.dim() != 3:
        raise ValueError(f"features must have 3 dimensions, got shape {tuple(features.shape)}")
    return features


_INPUTS = (
    Parameter("features", Parameter.POSITIONAL_OR_KEYWORD, annotation="torch.Tensor"),
    Parameter("cu_frames", Parameter.POSITIONAL_OR_KEYWORD, default=None,
              annotation="torch.Tensor | Sequence[int] | None"),
)  # fmt: skip
_RETURN_SCORES = Parameter(
    "return_scores", Parameter.KEYWORD_ONLY, default=False, annotation="bool"
)


@signature_of(PruneOptions, head=_INPUTS, tail=(_RETURN_SCORES,), keyword_only=True)
def visual_prune(
    features: torch.Tensor,
    cu_frames: torch.Tensor | Sequence[int] | None = None,
    *,
    return_scores: bool = False,
    **options: Any,
) -> VisualPruneResult:
    """Prune the visual tokens of a varlen batch of videos with Visual SharpV.

    Runs the Triton kernels on CUDA and the plain PyTorch path elsewhere; the environment
    variable ``SHARPV_BACKEND=auto|triton|torch`` (read at every call) overrides that.

    Args:
        features: ``(total_frames, f, d)`` float32/float16/bfloat16 (float64 on the PyTorch
            path) visual tokens as they would enter the LLM, the frames of all videos packed
            one after the other; any strides.
        cu_frames: ``(B + 1,)`` frame offsets of the videos: a sequence of ints, or an
            int32/int64 tensor of any strides on the features' device or the CPU; None
            means one video. Values must fit in int32.
        options: the fields of :class:`~.checks.PruneOptions`, keyword-only, each with its
            default:
        mode: ``"adaptive"`` (``k_t = ceil(r_t f)``), ``"manual"`` (keep ``I > threshold``),
            ``"ratio"`` (``k_t = ceil(keep_ratio f - 1e-9)``) or ``"budget"`` (exactly
            ``budget_token_count(budget, n, f, min_keep)`` tokens per video).
        w: weight of the spatial score in ``I = T + w S``; ``|w|`` must keep ``I`` finite.
        threshold: the manual mode's ``K``.
        keep_ratio: the ratio mode's fixed keep ratio in (0, 1].
        budget: the budget mode's fraction of tokens kept per video, in (0, 1].
        min_keep: fewest tokens kept in any frame, in ``[0, f]``.
        metric: ``"dissim"`` (``||unit(a) - unit(b)||``) or ``"cosine"`` (``1 - cos``).
        return_scores: also return the importance ``I``.
    Returns:
        :class:`VisualPruneResult` ``(tokens, indices, counts, ratios, cu_tokens, scores)``.
    Raises:
        TypeError, ValueError: bad arguments (naming them), NaN/Inf in ``features``, finite
            features whose float32 squared norms overflow, malformed ``cu_frames``.

    Examples:
        >>> x = torch.randn(6, 16, 32)  # two videos: 2 and 4 frames of 16 tokens
        >>> res = visual_prune(x, [0, 2, 6], mode="budget", budget=0.25)
        >>> res.cu_tokens.tolist()
        [0, 8, 24]
        >>> visual_prune(x, mode="ratio", keep_ratio=0.5).counts.tolist()
        [8, 8, 8, 8, 8, 8]
    """
    features = _features(features)
    if isinstance(cu_frames, torch.Tensor):
        host, cu = None, cu_frames
        eager = _ops.plain_eager(features, cu)
    else:
        eager = _ops.plain_eager(features)
        host = host_cu_values(cu_frames, features)
        cu = host_cu_tensor(host, shared=eager)
    opts = check_visual_call(features, cu, PruneOptions(**options))
    return_scores = bool(return_scores)
    if eager:  # checked above: the op's body, no second check
        out = _ops.visual_prune_checked(features, cu, opts, return_scores, cu_host=host)
        return VisualPruneResult(*out)
    out = torch.ops.sharpv.visual_prune(features, cu, *opts, return_scores)
    return VisualPruneResult(*out[:5], scores=out[5] if return_scores else None)


def visual_scores(
    features: torch.Tensor,
    cu_frames: torch.Tensor | Sequence[int] | None = None,
    *,
    w: float = DEFAULT_W,
    metric: str = DEFAULT_METRIC,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Visual SharpV's scores without pruning. Same inputs as :func:`visual_prune`.

    Returns:
        ``S, T, I`` ``(total_frames, f)`` and the keep ratio ``r`` ``(total_frames,)``, all
        float32.

    Examples:
        >>> x = torch.randn(3, 5, 8)
        >>> S, T, I, r = visual_scores(x[:1].expand(3, 5, 8))
        >>> S.shape, float(T[1:].abs().max()), float(r[1])
        (torch.Size([3, 5]), 0.0, 0.0)
    """
    features = _features(features)
    cu = as_cu_tensor(cu_frames, features)
    check_visual_args(features, cu, w=w, threshold=0.0, min_keep=0, metric=metric)
    if _ops.plain_eager(features, cu):  # checked above: the op's body, no second check
        return _ops.visual_scores_checked(features, cu, float(w), metric)
    return torch.ops.sharpv.visual_scores(features, cu, float(w), metric)
