"""Adapter for Qwen2.5-VL and Qwen2-VL (3-D M-RoPE).

The ViT merges ``2 x 2`` patches and ``temporal_patch_size`` (2) frames, so a video with
grid ``(t, h, w)`` enters the LLM as ``t`` "frames" of ``f = (h / 2) * (w / 2)`` tokens in
``(t, h, w)`` order: Visual SharpV prunes over those ``t`` temporal groups. Kept tokens keep
the 3-D positions the dense prompt gives them (computed with the model's own
``get_rope_index``), and text after the video continues at its dense positions.

How a transformers release carries 3-D positions through ``generate`` differs (4.x and 5.0
slice a 3-D ``position_ids`` argument on the batch dimension at every decode step; later
releases rebuild positions from ``rope_deltas`` in two different ways), so the adapter
passes none to ``generate``: it hands the positions to the language model directly, where
every release takes them the same way (:class:`_MRopePositions`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from . import register_adapter
from .base import Adapter, VideoFeatures, call_with_supported, pooled, pooled_rows

__all__ = ["QwenVLAdapter"]


def _mm_token_type_ids(
    input_ids: torch.Tensor, image_id: int | None, video_id: int
) -> torch.Tensor:
    """``(batch, seq)`` int: 0 text, 1 image placeholder, 2 video placeholder."""
    types = torch.zeros_like(input_ids, dtype=torch.int32)
    if image_id is not None:
        types[input_ids == image_id] = 1
    types[input_ids == video_id] = 2
    return types


class _MRopePositions:
    """Forward pre-hook of the language model that sets ``position_ids`` of a pruned prompt.

    The first call (the prefill) gets ``prefill`` (``(3, B, S')``); every later call (one
    decode step of ``s`` tokens) gets ``next_positions[:, b] + step + arange(s)`` for sample
    ``b``, row by row: generated text continues where the dense model's would. Batches
    expanded by ``generate`` (``num_return_sequences``, beams) repeat each sample's rows.
    """

    def __init__(self, prefill: torch.Tensor, next_positions: torch.Tensor) -> None:
        self.prefill = prefill
        self.next_positions = next_positions
        self.seen = 0  # tokens the language model has been given so far

    def __call__(
        self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]
    ) -> tuple[tuple, dict[str, Any]]:
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:
            raise RuntimeError("SharpV's M-RoPE positions need inputs_embeds in the language model")
        batch, s = embeds.shape[0], embeds.shape[1]
        copies = batch // self.prefill.shape[1]  # generate's expansion (beams, sequences)
        if self.seen == 0:
            if s != self.prefill.shape[2]:
                raise RuntimeError(
                    f"prefill of {s} tokens, but the pruned prompt has {self.prefill.shape[2]}"
                )
            pos = self.prefill.repeat_interleave(copies, dim=1)
        else:
            start = self.next_positions + (self.seen - self.prefill.shape[2])
            steps = torch.arange(s, device=start.device, dtype=start.dtype)
            pos = (start[:, :, None] + steps).repeat_interleave(copies, dim=1)
        self.seen += s
        kwargs["position_ids"] = pos.to(embeds.device)
        return args, kwargs


@register_adapter("qwen2_5_vl", "qwen2_vl")
class QwenVLAdapter(Adapter):
    """Qwen2.5-VL / Qwen2-VL."""

    model_types = ("qwen2_5_vl", "qwen2_vl")
    vision_keys = (
        "pixel_values",
        "pixel_values_videos",
        "image_grid_thw",
        "video_grid_thw",
        "second_per_grid_ts",
        "mm_token_type_ids",
    )

    def _merge(self, model: torch.nn.Module) -> int:
        return int(model.config.vision_config.spatial_merge_size)

    def video_features(self, model, kwargs, input_ids, attention_mask) -> VideoFeatures:
        grid = kwargs.get("video_grid_thw")
        if grid is None:
            raise ValueError("Qwen-VL video inputs need video_grid_thw next to pixel_values_videos")
        out = call_with_supported(
            model.model.get_video_features,
            kwargs["pixel_values_videos"],
            grid,
            return_dict=True,
        )
        m = self._merge(model)
        thw = [(int(t), int(h) // m, int(w) // m) for t, h, w in grid.tolist()]
        feats = pooled(out)
        if isinstance(feats, torch.Tensor):
            feats = torch.split(pooled_rows(feats), [t * h * w for t, h, w in thw])
        frames = [x.reshape(t, h * w, x.shape[-1]) for x, (t, h, w) in zip(feats, thw, strict=True)]
        return VideoFeatures(frames=frames, extras=[x[:0, 0] for x in frames])

    def image_features(self, model, kwargs) -> torch.Tensor | None:
        pv = kwargs.get("pixel_values")
        if pv is None:
            return None
        out = call_with_supported(
            model.model.get_image_features, pv, kwargs.get("image_grid_thw"), return_dict=True
        )
        return pooled_rows(out)

    def dense_position_ids(self, model, kwargs, input_ids, attention_mask) -> torch.Tensor:
        """``(3, batch, seq)`` M-RoPE positions of the dense prompt (the model's own rule;
        ``mm_token_type_ids``, which 5.x takes, is built from the ids when not given)."""
        mm_types = kwargs.get("mm_token_type_ids")
        if mm_types is None:
            mm_types = _mm_token_type_ids(
                input_ids, self.image_token_id(model), self.video_token_id(model)
            )
        pos, _ = call_with_supported(
            model.model.get_rope_index,
            input_ids,
            mm_token_type_ids=mm_types,
            image_grid_thw=kwargs.get("image_grid_thw"),
            video_grid_thw=kwargs.get("video_grid_thw"),
            second_per_grid_ts=kwargs.get("second_per_grid_ts"),
            attention_mask=attention_mask,
        )
        return pos

    @contextlib.contextmanager
    def generating(
        self,
        model: torch.nn.Module,
        position_ids: torch.Tensor | None,
        next_positions: torch.Tensor | None,
    ) -> Iterator[None]:
        if position_ids is None or next_positions is None:
            raise ValueError("Qwen-VL needs the dense M-RoPE positions of the pruned prompt")
        inner = model.model
        saved = inner.rope_deltas
        handle = inner.language_model.register_forward_pre_hook(
            _MRopePositions(position_ids, next_positions), with_kwargs=True
        )
        try:
            yield
        finally:
            handle.remove()
            inner.rope_deltas = saved
