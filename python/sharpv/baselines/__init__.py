"""Token-pruning baselines of the SharpV paper and of serving engines.

Pre-LLM methods (same inputs and :class:`sharpv_kernels.VisualPruneResult` output as
:func:`sharpv_kernels.visual_prune`):

========================  ===================================================================
``uniform``               the same keep ratio in every frame (SharpV's ``ratio`` mode)
``random_per_frame``      the paper's V-Random-dagger: SharpV's per-frame counts, random tokens
``random_video``          the paper's V-Random-star: SharpV's total, random tokens video-wide
``evs``                   Efficient Video Sampling: global top-K of temporal dissimilarity
``dycoke_ttm``            DyCoke's stage-1 temporal token merging (windows of 4 frames)
========================  ===================================================================

Intra-LLM: :func:`fastv` (FastV, attention-score pruning after layer ``K``), a context
manager around ``generate``.

:func:`get_pruner` turns a method name and its options into ``fn(features, cu_frames) ->
VisualPruneResult`` (used by :mod:`sharpv.integration` and the benchmarks).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .fastv import FastVState, fastv, fastv_keep_count
from .pre_llm import (
    dycoke_keep_per_frame,
    dycoke_ttm,
    evs,
    evs_retained_tokens,
    random_per_frame,
    random_video,
    result_from_mask,
    uniform,
)

__all__ = [
    "PRE_LLM_METHODS",
    "METHODS",
    "get_pruner",
    "uniform",
    "random_per_frame",
    "random_video",
    "evs",
    "dycoke_ttm",
    "fastv",
    "FastVState",
    "fastv_keep_count",
    "evs_retained_tokens",
    "dycoke_keep_per_frame",
    "result_from_mask",
]

#: name -> function of the pre-LLM baselines.
PRE_LLM_METHODS: dict[str, Callable[..., Any]] = {
    "uniform": uniform,
    "random_per_frame": random_per_frame,
    "random_video": random_video,
    "evs": evs,
    "dycoke_ttm": dycoke_ttm,
}
#: Every method name accepted by ``sharpv run/demo --method`` and ``SharpVConfig.method``.
METHODS = ("sharpv", *PRE_LLM_METHODS, "fastv")


def get_pruner(method: str, **options: Any) -> Callable[..., Any]:
    """``fn(features, cu_frames)`` -> ``VisualPruneResult`` for a pre-LLM method.

    Args:
        method: ``"sharpv"`` (options as :func:`sharpv_kernels.visual_prune`) or a name of
            :data:`PRE_LLM_METHODS` (options as that function).
    Raises:
        ValueError: ``fastv`` (it prunes inside the LLM, see :func:`fastv`) or an unknown name.
    """
    if method == "sharpv":
        from sharpv_kernels import visual_prune

        return functools.partial(visual_prune, **options)
    if method in PRE_LLM_METHODS:
        return functools.partial(PRE_LLM_METHODS[method], **options)
    if method == "fastv":
        raise ValueError("fastv prunes inside the LLM; use sharpv.baselines.fastv(model, ...)")
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
