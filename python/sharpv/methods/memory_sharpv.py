"""``memory_sharpv``: Memory SharpV alone (every video token enters the LLM; the visual KV
entries of degraded layers are removed after prefill). Same as ``sharpv`` with
``visual=false``."""

from __future__ import annotations

from typing import Any

from ._registry import register
from ._schema import INTRA_LLM, Method, Option
from ._vocab import vocab


def memory_hooks(model: Any, visual_mask: Any, *, memory_threshold: float) -> Any:
    """:func:`sharpv.memory_sharpv` with threshold ``M``."""
    from ..memory import memory_sharpv

    return memory_sharpv(model, visual_mask, threshold=memory_threshold)


METHOD = register(
    Method(
        name="memory_sharpv",
        stage=INTRA_LLM,
        options=(
            Option(
                "memory_threshold",
                float,
                vocab().DEFAULT_MEMORY_THRESHOLD,
                low=-1.0,
                high=1.0,
                help="M: a layer whose visual similarity is below it is dropped",
            ),
        ),  # fmt: skip
        hooks=memory_hooks,
        description="Memory SharpV alone: KV-cache pruning of degraded layers after prefill",
    )
)
