"""``fastv``: FastV, attention-score pruning of the visual tokens after layer ``K``."""

from __future__ import annotations

from typing import Any

from ._registry import register
from ._schema import INTRA_LLM, Method, Option


def _fastv(model: Any, visual_mask: Any, *, memory: bool, **options: Any) -> Any:
    from ..baselines import fastv

    return fastv(model, visual_mask, **options)


METHOD = register(
    Method(
        name="fastv",
        stage=INTRA_LLM,
        options=(
            Option("layer", int, 3, low=1, help="K: layers >= K see the kept visual tokens only"),
            Option(
                "keep_ratio",
                float,
                0.3,
                low=0.0,
                high=1.0,
                low_open=True,
                help="fraction of the visual tokens kept",
            ),
            Option(
                "memory",
                bool,
                False,
                choices=(False,),
                help="FastV does not combine with Memory SharpV (memory=false only)",
            ),
        ),  # fmt: skip
        hooks=_fastv,
        description="FastV: drops the visual tokens least attended at layer K-1",
    )
)
