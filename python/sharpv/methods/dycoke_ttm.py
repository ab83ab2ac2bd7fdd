"""``dycoke_ttm``: DyCoke's stage 1, temporal token merging in windows of frames."""

from __future__ import annotations

from typing import Any

from ._registry import register
from ._schema import PRE_LLM, Method, Option


def _dycoke(features: Any, cu_frames: Any, **options: Any) -> Any:
    from ..baselines import dycoke_ttm

    return dycoke_ttm(features, cu_frames, **options)


def _count(n_frames: int, f: int, *, prune_ratio: float, window: int) -> int:
    """Anchors (the first frame of each window) are kept whole, the others keep
    ``int((1 - K) f)`` tokens."""
    from ..baselines import dycoke_keep_per_frame

    anchors = -(-n_frames // window)
    return anchors * f + (n_frames - anchors) * dycoke_keep_per_frame(f, prune_ratio)


METHOD = register(
    Method(
        name="dycoke_ttm",
        stage=PRE_LLM,
        options=(
            Option(
                "prune_ratio",
                float,
                0.7,
                low=0.0,
                high=1.0,
                high_open=True,
                help="K: the fraction of a compared frame removed",
            ),
            Option("window", int, 4, low=2, help="frames per window"),
        ),  # fmt: skip
        prune=_dycoke,
        token_count=_count,
        memory=False,
        description="DyCoke stage 1: temporal token merging in windows of frames",
    )
)
