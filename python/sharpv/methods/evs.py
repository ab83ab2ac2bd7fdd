"""``evs``: Efficient Video Sampling, one global top-K per video by temporal dissimilarity."""

from __future__ import annotations

from typing import Any

from ._registry import register
from ._schema import PRE_LLM, Method, Option


def _evs(features: Any, cu_frames: Any, **options: Any) -> Any:
    from ..baselines import evs

    return evs(features, cu_frames, **options)


def _count(n_frames: int, f: int, *, rate: float) -> int:
    from ..baselines import evs_retained_tokens

    return evs_retained_tokens(n_frames, f, rate)


METHOD = register(
    Method(
        name="evs",
        stage=PRE_LLM,
        options=(
            Option(
                "rate",
                float,
                0.7,
                low=0.0,
                high=1.0,
                high_open=True,
                help="pruning rate q: the fraction of each video's tokens removed",
            ),
        ),  # fmt: skip
        prune=_evs,
        token_count=_count,
        memory=False,
        description="Efficient Video Sampling: global top-K of temporal dissimilarity",
    )
)
