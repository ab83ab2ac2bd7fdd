"""Per-sample statistics of one SharpV ``generate`` call (``model.sharpv_stats``).

Ratios follow the contract (``docs/spec.md``, Memory SharpV item 7): ``VR`` = visual tokens
kept / visual tokens in, ``MR`` = visual KV entries kept over all layers / visual KV entries
before Memory SharpV, token budget = ``VR * MR``.

What a method did to each frame is ``frame_counts / tokens_per_frame`` (the fraction kept,
for every method); ``frame_ratios`` is what the pruner reported: SharpV's keep ratio ``r_t``
for SharpV (and the ``uniform`` baseline, which is SharpV's ``ratio`` mode), ``counts / f``
for the other baselines.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["SampleStats", "SharpVStats", "kv_entries_after_prefill", "kv_entry_bytes"]


@dataclass
class SampleStats:
    """Statistics of one sample (one prompt) of the batch.

    Attributes:
        frame_ratios: ``(n_frames,)`` float32 per-frame ratio the pruner reported (SharpV's
            keep ratio ``r_t``; see the module docstring for the baselines), every frame of
            every video of the sample, videos in prompt order (empty for a prompt without
            video).
        frame_counts: ``(n_frames,)`` int32 tokens kept in each frame.
        tokens_per_frame: ``(n_frames,)`` int32 tokens each frame had before pruning.
        layer_similarities: ``(layers,)`` float32 ``sim_l`` of Memory SharpV, or ``None`` when
            the memory stage did not run.
        dropped_layers: ``(layers,)`` bool, layers whose visual KV entries were removed, or
            ``None`` when the memory stage did not run.
        memory_ratio: ``MR`` of the sample (1.0 when the memory stage did not run).
    """

    frame_ratios: torch.Tensor
    frame_counts: torch.Tensor
    tokens_per_frame: torch.Tensor
    layer_similarities: torch.Tensor | None = None
    dropped_layers: torch.Tensor | None = None
    memory_ratio: float = 1.0

    @property
    def visual_tokens_in(self) -> int:
        """Video tokens of the sample before Visual SharpV."""
        return int(self.tokens_per_frame.sum())

    @property
    def visual_tokens_kept(self) -> int:
        """Video tokens of the sample that entered the LLM."""
        return int(self.frame_counts.sum())

    @property
    def visual_ratio(self) -> float:
        """``VR``: kept / in (1.0 for a sample without video)."""
        n = self.visual_tokens_in
        return self.visual_tokens_kept / n if n else 1.0

    @property
    def token_budget(self) -> float:
        """``VR * MR``."""
        return self.visual_ratio * self.memory_ratio

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary."""
        return {
            "frame_ratios": [round(float(x), 6) for x in self.frame_ratios],
            "frame_counts": [int(x) for x in self.frame_counts],
            "tokens_per_frame": [int(x) for x in self.tokens_per_frame],
            "visual_tokens_in": self.visual_tokens_in,
            "visual_tokens_kept": self.visual_tokens_kept,
            "VR": self.visual_ratio,
            "layer_similarities": None
            if self.layer_similarities is None
            else [round(float(x), 6) for x in self.layer_similarities],
            "dropped_layers": None
            if self.dropped_layers is None
            else [int(i) for i in torch.nonzero(self.dropped_layers).flatten()],
            "MR": self.memory_ratio,
            "token_budget": self.token_budget,
        }


@dataclass
class SharpVStats(Sequence):
    """Statistics of the last ``generate`` call: a sequence of :class:`SampleStats`, one per
    prompt of the batch, with batch-level ratios.

    Attributes:
        samples: one entry per prompt, in batch order.
        visual: whether Visual SharpV ran.
        memory: whether Memory SharpV ran.
        prompt_tokens_in: ``(batch,)`` int64 prompt lengths before pruning (padding excluded).
        prompt_tokens_kept: ``(batch,)`` int64 prompt lengths that entered the LLM.
    """

    samples: list[SampleStats] = field(default_factory=list)
    visual: bool = False
    memory: bool = False
    prompt_tokens_in: torch.Tensor | None = None
    prompt_tokens_kept: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):  # type: ignore[override]
        return self.samples[i]

    def __iter__(self) -> Iterator[SampleStats]:
        return iter(self.samples)

    @property
    def visual_ratio(self) -> float:
        """Batch ``VR``: all kept video tokens over all video tokens."""
        n = sum(s.visual_tokens_in for s in self.samples)
        return sum(s.visual_tokens_kept for s in self.samples) / n if n else 1.0

    @property
    def memory_ratio(self) -> float:
        """Batch ``MR``: visual KV entries kept over those before Memory SharpV."""
        before = sum(s.visual_tokens_kept for s in self.samples)
        if not before:
            return 1.0
        return sum(s.visual_tokens_kept * s.memory_ratio for s in self.samples) / before

    @property
    def token_budget(self) -> float:
        """Batch ``VR * MR``."""
        return self.visual_ratio * self.memory_ratio

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary with the batch ratios and every sample."""
        return {
            "visual": self.visual,
            "memory": self.memory,
            "VR": self.visual_ratio,
            "MR": self.memory_ratio,
            "token_budget": self.token_budget,
            "samples": [s.to_dict() for s in self.samples],
        }


def kv_entries_after_prefill(prompt_tokens: int, layers: int, sample: SampleStats | None) -> int:
    """Token entries (over all layers) the KV cache holds right after prefill.

    Exact, from the counts: the dense prompt of ``prompt_tokens`` tokens in every layer,
    less the video tokens Visual SharpV (or a baseline) removed, less the visual entries
    Memory SharpV removed from its dropped layers (``MR``).

    Args:
        prompt_tokens: length of the dense prompt (all video placeholders included).
        layers: decoder layers of the language model.
        sample: the sample's statistics, or ``None`` for the dense model.

    Examples:
        >>> kv_entries_after_prefill(100, 4, None)
        400
    """
    if sample is None:
        return layers * prompt_tokens
    kept = sample.visual_tokens_kept
    entries = layers * (prompt_tokens - sample.visual_tokens_in + kept)
    return entries - round(kept * layers * (1.0 - sample.memory_ratio))


def kv_entry_bytes(model: torch.nn.Module) -> int:
    """Bytes of one token's key and value in one layer: ``2 * kv_heads * head_dim * itemsize``.

    Examples:
        >>> kv_entry_bytes(model)  # doctest: +SKIP
        512
    """
    config = model.config
    tc = getattr(config, "text_config", None) or config
    heads = tc.num_attention_heads
    head_dim = getattr(tc, "head_dim", None) or tc.hidden_size // heads
    kv_heads = getattr(tc, "num_key_value_heads", None) or heads
    return 2 * kv_heads * head_dim * next(model.parameters()).element_size()
