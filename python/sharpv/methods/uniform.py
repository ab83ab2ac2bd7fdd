"""``uniform``: the same keep ratio in every frame (SharpV's ``ratio`` mode as a baseline)."""

from __future__ import annotations

from typing import Any

from ._registry import register
from ._schema import PRE_LLM, Method, Option
from ._vocab import vocab

#: ``uniform``'s default keep ratio
UNIFORM_KEEP_RATIO = 0.3


def _uniform(features: Any, cu_frames: Any, **options: Any) -> Any:
    from ..baselines import uniform

    return uniform(features, cu_frames, **options)


def _count(n_frames: int, f: int, *, keep_ratio: float, min_keep: int, **_: Any) -> int:
    return n_frames * vocab().ratio_keep_count(keep_ratio, f, min_keep)


_v = vocab()
METHOD = register(
    Method(
        name="uniform",
        stage=PRE_LLM,
        options=(
            Option(
                "keep_ratio",
                float,
                UNIFORM_KEEP_RATIO,
                low=0.0,
                high=1.0,
                low_open=True,
                help="fraction kept in every frame",
            ),
            Option("min_keep", int, _v.DEFAULT_MIN_KEEP, low=0, help="fewest tokens per frame"),
            Option("w", float, _v.DEFAULT_W, help="weight of the spatial score (ranking)"),
            Option(
                "metric",
                str,
                _v.DEFAULT_METRIC,
                choices=_v.METRICS,
                help="token dissimilarity of the ranking",
            ),
        ),  # fmt: skip
        prune=_uniform,
        token_count=_count,
        memory=False,
        description="the same keep ratio in every frame, tokens ranked by SharpV's importance",
    )
)
