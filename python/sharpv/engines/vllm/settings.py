"""The ``sharpv`` block: parsing, validation, per-request options, the prompt's token count.

vLLM passes ``--hf-overrides '{"sharpv": {...}}'`` into the checkpoint's Hugging Face config,
so the server's block reaches the model as ``hf_config.sharpv`` (a dict). A request may carry
its own block as ``mm_processor_kwargs={"sharpv": {...}}``; its keys override the server's
for that request (:func:`request_settings`). Both go through one validation function,
:func:`validate_block`, so a bad request fails with the same message a bad server block
gives. This module has no vLLM import: it is shared by the model classes and tested in the
core lane's style.

An engine sizes the prompt before the vision tower runs, so only Visual SharpV's
``budget`` mode fits (SPEC "Inside engines", item 1); Memory SharpV needs per-layer KV
removal, which vLLM's paged cache cannot do (one block table serves every layer of a group).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sharpv_kernels import budget_token_count, visual_prune
from sharpv_kernels.vocab import DEFAULT_METRIC, DEFAULT_MIN_KEEP, DEFAULT_W, METRICS

__all__ = [
    "MEMORY_UNSUPPORTED",
    "OPTIONS_WIDTH",
    "REQUEST_KEY",
    "VllmSharpVSettings",
    "request_settings",
    "settings_from_hf_config",
    "split_request_block",
    "validate_block",
]

#: the key of a request's block in ``mm_processor_kwargs``
REQUEST_KEY = "sharpv"
#: columns of :meth:`VllmSharpVSettings.as_row` (budget, min_keep, w, metric index)
OPTIONS_WIDTH = 4

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

    def as_row(self) -> torch.Tensor:
        """``(OPTIONS_WIDTH,)`` float64 ``[budget, min_keep, w, metric index]``: the settings
        as one row of a per-video tensor field (exact round trip, :meth:`from_row`)."""
        return torch.tensor(
            [self.budget, self.min_keep, self.w, METRICS.index(self.metric)], dtype=torch.float64
        )

    @classmethod
    def from_row(cls, row: Sequence[float]) -> VllmSharpVSettings:
        """Inverse of :meth:`as_row` (``row`` a list of 4 floats)."""
        budget, min_keep, w, metric = (float(x) for x in row)
        return cls(budget=budget, min_keep=int(min_keep), w=w, metric=METRICS[int(metric)])

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


def validate_block(block: Any) -> VllmSharpVSettings:
    """Validate one ``sharpv`` block (the server's, or a request's merged over it).

    The one home of the option rules: the start-up check, the processors and the models all
    call it, so a request's error is worded as the server's would be.

    Raises:
        ValueError: no block (``None``), an unknown key, no ``budget``, ``mode`` other than
            ``"budget"``, ``memory: true``, ``visual: false`` or an option out of range.
        TypeError: a block that is not a mapping, or an option of the wrong type.

    Examples:
        >>> validate_block({"budget": 0.3, "w": 0.5}).w
        0.5
    """
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


def settings_from_hf_config(hf_config: Any) -> VllmSharpVSettings:
    """Read and validate ``hf_config.sharpv`` (the block ``--hf-overrides`` sets).

    Args:
        hf_config: the checkpoint's Hugging Face config after vLLM's overrides.
    Raises:
        ValueError, TypeError: as :func:`validate_block`.

    Examples:
        >>> from types import SimpleNamespace
        >>> settings_from_hf_config(SimpleNamespace(sharpv={"budget": 0.3})).budget
        0.3
    """
    return validate_block(getattr(hf_config, "sharpv", None))


def split_request_block(mm_kwargs: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``(the request's sharpv block or None, the other processor kwargs)``: the block is
    taken out so that the Hugging Face processor never sees it."""
    rest = dict(mm_kwargs)
    return rest.pop(REQUEST_KEY, None), rest


def request_settings(hf_config: Any, request_block: Any) -> VllmSharpVSettings:
    """Settings of one request: its ``sharpv`` block's keys over the server's block.

    Args:
        hf_config: the model's Hugging Face config (its ``sharpv`` block is the default).
        request_block: ``mm_processor_kwargs["sharpv"]`` of the request, or None.
    Raises:
        ValueError, TypeError: as :func:`validate_block`, for the merged block.

    Examples:
        >>> from types import SimpleNamespace
        >>> cfg = SimpleNamespace(sharpv={"budget": 0.3, "w": 0.5})
        >>> s = request_settings(cfg, {"budget": 0.1})
        >>> s.budget, s.w
        (0.1, 0.5)
    """
    server = getattr(hf_config, "sharpv", None)
    if request_block is None:
        return validate_block(server)
    if not isinstance(request_block, Mapping):
        raise TypeError(f"sharpv must be a JSON object, got {type(request_block).__name__}")
    base = dict(server) if isinstance(server, Mapping) else {}
    return validate_block({**base, **request_block})
