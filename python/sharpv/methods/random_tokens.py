"""``random_per_frame`` and ``random_video``: the paper's V-Random baselines, SharpV's counts
(per frame, or per video) with random tokens. They take Visual SharpV's options (which fix
the counts) and a ``seed``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._registry import register
from ._schema import PRE_LLM, Method, Option
from ._visual import visual_options, visual_prune_kwargs, visual_token_count


def _random_per_frame(features: Any, cu_frames: Any, *, seed: int, **options: Any) -> Any:
    from ..baselines import random_per_frame

    return random_per_frame(features, cu_frames, seed=seed, **visual_prune_kwargs(options))


def _random_video(features: Any, cu_frames: Any, *, seed: int, **options: Any) -> Any:
    from ..baselines import random_video

    return random_video(features, cu_frames, seed=seed, **visual_prune_kwargs(options))


class RandomMethod(Method):
    """The token count is SharpV's: fixed in ``budget`` and ``ratio`` modes only."""

    def fixed_token_count(self, options: Mapping[str, Any]) -> Callable[[int, int], int] | None:
        if options["mode"] not in ("budget", "ratio"):
            return None
        opts = dict(options)
        return lambda n_frames, f: visual_token_count(n_frames, f, opts)


def _options() -> tuple[Option, ...]:
    return (*visual_options(switch=False), Option("seed", int, 0, help="seed of the random keys"))


RANDOM_PER_FRAME, RANDOM_VIDEO = (
    register(
        RandomMethod(
            name=name,
            stage=PRE_LLM,
            options=_options(),
            prune=prune,
            token_count=lambda n_frames, f, **o: visual_token_count(n_frames, f, o),
            memory=False,
            description=description,
        )
    )
    for name, prune, description in (
        (
            "random_per_frame",
            _random_per_frame,
            "V-Random-dagger: SharpV's per-frame counts, random tokens in each frame",
        ),
        (
            "random_video",
            _random_video,
            "V-Random-star: SharpV's total per video, random tokens video-wide",
        ),
    )
)
