"""Visual SharpV's options, shared by ``sharpv`` and the random baselines (which take
SharpV's counts), and the token counts those options fix before the features exist."""

from __future__ import annotations

from typing import Any

from ._schema import REQUIRED, Option
from ._vocab import vocab

__all__ = ["visual_options", "visual_token_count", "visual_prune_kwargs"]


def visual_options(switch: bool) -> tuple[Option, ...]:
    """The options of :func:`sharpv_kernels.visual_prune`; with ``switch``, led by ``visual``
    (Visual SharpV on or off) and each of them used only when it is on."""
    v = vocab()
    on: dict[str, Any] = {"visual": True} if switch else {}
    lead = (
        (Option("visual", bool, True, help="run Visual SharpV before the LLM"),) if switch else ()
    )
    return lead + (
        Option("mode", str, v.DEFAULT_MODE, choices=v.VISUAL_MODES, used_with=on,
               help="token selection: adaptive (paper), manual (I > threshold), ratio, budget"),
        Option("w", float, v.DEFAULT_W, used_with=on,
               help="weight of the spatial score in I = T + w * S"),
        Option("threshold", float, v.DEFAULT_THRESHOLD, used_with={**on, "mode": "manual"},
               help="K of the manual mode: keep tokens with I > K"),
        Option("keep_ratio", float, REQUIRED, low=0.0, high=1.0, low_open=True,
               used_with={**on, "mode": "ratio"}, help="fraction kept in every frame"),
        Option("budget", float, REQUIRED, low=0.0, high=1.0, low_open=True,
               used_with={**on, "mode": "budget"}, help="fraction of each video's tokens kept"),
        Option("min_keep", int, v.DEFAULT_MIN_KEEP, low=0, used_with=on,
               help="fewest tokens kept in any frame (at most f)"),
        Option("metric", str, v.DEFAULT_METRIC, choices=v.METRICS, used_with=on,
               help="token dissimilarity: dissim (||unit(a) - unit(b)||) or cosine (1 - cos)"),
    )  # fmt: skip


def visual_prune_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``visual_prune`` from resolved visual options (``keep_ratio`` and
    ``budget`` only in their own mode, as the op takes them)."""
    v = vocab()
    return {
        "mode": options["mode"],
        "w": float(options["w"]),
        "threshold": float(options.get("threshold", v.DEFAULT_THRESHOLD)),
        "keep_ratio": options.get("keep_ratio"),
        "budget": options.get("budget"),
        "min_keep": options["min_keep"],
        "metric": options["metric"],
    }


def visual_token_count(n_frames: int, f: int, options: dict[str, Any]) -> int | None:
    """Tokens one video keeps under Visual SharpV's options, when known without the features:
    ``budget`` mode (SPEC item 7's ``N``) and ``ratio`` mode; ``None`` otherwise."""
    v = vocab()
    if options["mode"] == "budget":
        return v.budget_token_count(options["budget"], n_frames, f, options["min_keep"])
    if options["mode"] == "ratio":
        return n_frames * v.ratio_keep_count(options["keep_ratio"], f, options["min_keep"])
    return None
