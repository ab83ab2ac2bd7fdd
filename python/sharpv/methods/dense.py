"""``dense``: keep every token (the reference of every comparison, through the same path)."""

from __future__ import annotations

from typing import Any

from ._registry import register
from ._schema import PRE_LLM, Method


def keep_all(features: Any, cu_frames: Any) -> Any:
    """Every token kept (``counts = f``, ``ratios = 1``)."""
    import torch

    from ..baselines import result_from_mask
    from ..baselines.pre_llm import _check

    cu = _check(features, cu_frames)
    keep = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
    return result_from_mask(features, cu, keep)


METHOD = register(
    Method(
        name="dense",
        stage=PRE_LLM,
        prune=keep_all,
        token_count=lambda n_frames, f: n_frames * f,
        description="no pruning: every video token enters the LLM",
    )
)
