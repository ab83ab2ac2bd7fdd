"""The ``sharpv`` block of a vLLM model config: parsing, validation, the prompt's token count.

vLLM passes ``--hf-overrides '{"sharpv": {...}}'`` into the checkpoint's Hugging Face config,
so the block reaches the model as ``hf_config.sharpv`` (a dict). This module has no vLLM
import: it is shared by the model classes and tested in the core lane's style.

An engine sizes the prompt before the vision tower runs, so only Visual SharpV's
``budget`` mode fits (SPEC "Inside engines", item 1); Memory SharpV needs per-layer KV
removal, which vLLM's paged cache cannot do (one block table serves every layer of a group).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from sharpv_kernels import budget_token_count, visual_prune
from sharpv_kernels.vocab import DEFAULT_METRIC, DEFAULT_MIN_KEEP, DEFAULT_W, METRICS

__all__ = ["VllmSharpVSettings", "settings_from_hf_config", "MEMORY_UNSUPPORTED"]

#: Why ``memory: true`` is refused (also the start-up error text).
MEMORY_UNSUPPORTED = (
    "Memory SharpV is not available in vLLM: its paged KV cache shares one block table "
    "across the layers of a KV-cache group, so dropping the video entries of single layers "
    "frees no memory. Remove 'memory' from the sharpv block or set it to false."
)

_KEYS = ("budget", "min_keep", "w", "metric", "mode", "memory", "visual")


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"sharpv.{name} must be a real number, got {type(value).__name__}")
    return float(value)


@dataclass(frozen=True)
class VllmSharpVSettings:
    """Validated settings of Visual SharpV in budget mode inside vLLM.

    Attributes:
        budget: fraction of each video's tokens kept, in ``(0, 1]``.
        min_keep: fewest tokens kept in any frame (>= 1).
        w: weight of the spatial score in ``I = T + w * S`` (finite).
        metric: ``"dissim"`` or ``"cosine"``.

    Examples:
        >>> s = VllmSharpVSettings(budget=0.25)
        >>> s.video_tokens(n_frames=8, tokens_per_frame=4)
        8
    """

    budget: float
    min_keep: int = DEFAULT_MIN_KEEP
    w: float = DEFAULT_W
    metric: str = DEFAULT_METRIC

    def __post_init__(self) -> None:
        b = _real("budget", self.budget)
        if not 0.0 < b <= 1.0:
            raise ValueError(f"sharpv.budget must be in (0, 1], got {self.budget}")
        if isinstance(self.min_keep, bool) or not isinstance(self.min_keep, int):
            raise TypeError(f"sharpv.min_keep must be an int, got {type(self.min_keep).__name__}")
        if self.min_keep < 1:
            raise ValueError(f"sharpv.min_keep must be >= 1, got {self.min_keep}")
        w = _real("w", self.w)
        if w != w or w in (float("inf"), float("-inf")):
            raise ValueError(f"sharpv.w must be finite, got {self.w}")
        if self.metric not in METRICS:
            raise ValueError(f"sharpv.metric must be one of {METRICS}, got {self.metric!r}")

    def video_tokens(self, n_frames: int, tokens_per_frame: int) -> int:
        """Frame tokens one video keeps: the shared budget formula (extras not included).

        The count needs no features, so vLLM can size the prompt before the vision tower.
        """
        if self.min_keep > tokens_per_frame:
            raise ValueError(
                f"sharpv.min_keep={self.min_keep} exceeds the {tokens_per_frame} tokens of a "
                "frame of this video"
            )
        return budget_token_count(self.budget, n_frames, tokens_per_frame, self.min_keep)

    def prune(self, frames: torch.Tensor) -> torch.Tensor:
        """Flat indices (``frame * f + token``, ascending) of the tokens one video keeps.

        Args:
            frames: ``(n, f, d)`` frame tokens of one video as they enter the LLM.
        Returns:
            ``(N,)`` int64 indices, ``N = self.video_tokens(n, f)``, exactly the tokens
            ``sharpv_kernels.visual_prune(mode="budget")`` keeps.
        """
        n = int(frames.shape[0])
        res = visual_prune(
            frames,
            [0, n],
            mode="budget",
            budget=float(self.budget),
            min_keep=self.min_keep,
            w=float(self.w),
            metric=self.metric,
        )
        return res.indices.to(torch.int64)


def settings_from_hf_config(hf_config: Any) -> VllmSharpVSettings:
    """Read and validate ``hf_config.sharpv`` (the block ``--hf-overrides`` sets).

    Args:
        hf_config: the checkpoint's Hugging Face config after vLLM's overrides.
    Raises:
        ValueError: no ``sharpv`` block, an unknown key, ``mode`` other than ``"budget"``,
            ``memory: true``, ``visual: false`` or an option out of range.
        TypeError: an option of the wrong type.

    Examples:
        >>> from types import SimpleNamespace
        >>> settings_from_hf_config(SimpleNamespace(sharpv={"budget": 0.3})).budget
        0.3
    """
    block = getattr(hf_config, "sharpv", None)
    if block is None:
        raise ValueError(
            "the SharpV architectures need a 'sharpv' block in the model config, e.g. "
            '--hf-overrides \'{"architectures": [...], "sharpv": {"budget": 0.3}}\''
        )
    if not isinstance(block, Mapping):
        raise TypeError(f"sharpv must be a JSON object, got {type(block).__name__}")
    unknown = sorted(set(block) - set(_KEYS))
    if unknown:
        raise ValueError(f"unknown sharpv option(s) {unknown}; allowed: {list(_KEYS)}")
    if "budget" not in block:
        raise ValueError("sharpv.budget is required: the fraction of video tokens kept, (0, 1]")
    mode = block.get("mode", "budget")
    if mode != "budget":
        raise ValueError(
            f"sharpv.mode must be 'budget' in vLLM, got {mode!r}: the engine sizes the prompt "
            "before the vision tower runs, so the kept count must not depend on the content"
        )
    if block.get("memory", False) is not False:
        raise ValueError(MEMORY_UNSUPPORTED)
    if block.get("visual", True) is not True:
        raise ValueError(
            "sharpv.visual must be true (omit it); serve the original architecture for "
            "dense inference"
        )
    return VllmSharpVSettings(
        budget=block["budget"],
        min_keep=block.get("min_keep", DEFAULT_MIN_KEEP),
        w=block.get("w", DEFAULT_W),
        metric=block.get("metric", DEFAULT_METRIC),
    )
