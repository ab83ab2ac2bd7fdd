"""``sharpv``: Visual SharpV (before the LLM) and Memory SharpV (inside it), the paper's method.

One method with a ``mode`` option (adaptive, manual, ratio, budget) rather than one method per
mode: the modes share every other option, and ``SharpVConfig(mode=...)`` stays as it was.
``visual=false`` keeps every video token; ``memory=false`` turns Memory SharpV off.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._registry import register
from ._schema import BOTH, Method
from ._visual import visual_options, visual_prune_kwargs, visual_token_count

__all__ = ["SharpVMethod", "visual_sharpv"]


def visual_sharpv(features: Any, cu_frames: Any, **options: Any) -> Any:
    """Visual SharpV: :func:`sharpv_kernels.visual_prune` with the resolved options."""
    from sharpv_kernels import visual_prune

    return visual_prune(features, cu_frames, **visual_prune_kwargs(options))


class SharpVMethod(Method):
    """``sharpv``: ``visual=false`` turns the pre-LLM stage off; the token count is fixed in
    ``budget`` and ``ratio`` modes (and with ``visual=false``)."""

    def pruner(self, options: Mapping[str, Any]) -> Callable[..., Any] | None:
        return super().pruner(options) if options["visual"] else None

    def fixed_token_count(self, options: Mapping[str, Any]) -> Callable[[int, int], int] | None:
        if not options["visual"]:
            return lambda n_frames, f: n_frames * f
        if options["mode"] not in ("budget", "ratio"):
            return None
        opts = dict(options)
        return lambda n_frames, f: visual_token_count(n_frames, f, opts)


METHOD = register(
    SharpVMethod(
        name="sharpv",
        stage=BOTH,
        options=visual_options(switch=True),
        prune=visual_sharpv,
        token_count=lambda n_frames, f, **o: visual_token_count(n_frames, f, o),
        memory=True,
        description="adaptive video-token pruning, then KV-cache pruning of degraded layers",
    )
)
