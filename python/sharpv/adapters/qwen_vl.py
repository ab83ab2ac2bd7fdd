"""Adapter for Qwen2.5-VL and Qwen2-VL (3-D M-RoPE).

The ViT merges ``2 x 2`` patches and ``temporal_patch_size`` (2) frames, so a video with
grid ``(t, h, w)`` enters the LLM as ``t`` "frames" of ``f = (h / 2) * (w / 2)`` tokens in
``(t, h, w)`` order: Visual SharpV prunes over those ``t`` temporal groups. Kept tokens keep
the 3-D positions the dense prompt gives them (computed with the model's own
``get_rope_index``), and text after the video continues at its dense positions.
"""

from __future__ import annotations

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
        pv = kwargs["pixel_values_videos"]
        out = call_with_supported(
            model.model.get_video_features,
            pixel_values_videos=pv,
            video_grid_thw=grid,
            return_dict=True,
        )
        feats = pooled(out)
        m = self._merge(model)
        sizes = [int(t) * (int(h) // m) * (int(w) // m) for t, h, w in grid.tolist()]
        if isinstance(feats, torch.Tensor):
            feats = torch.split(feats.reshape(-1, feats.shape[-1]), sizes)
        frames, extras = [], []
        for x, (t, h, w) in zip(feats, grid.tolist(), strict=True):
            f = (int(h) // m) * (int(w) // m)
            frames.append(x.reshape(int(t), f, x.shape[-1]))
            extras.append(x[:0])
        return VideoFeatures(frames=frames, extras=extras)

    def image_features(self, model, kwargs) -> torch.Tensor | None:
        pv = kwargs.get("pixel_values")
        if pv is None:
            return None
        out = call_with_supported(
            model.model.get_image_features,
            pixel_values=pv,
            image_grid_thw=kwargs.get("image_grid_thw"),
            return_dict=True,
        )
        return pooled_rows(out)

    def dense_position_ids(self, model, kwargs, input_ids, attention_mask) -> torch.Tensor:
        """``(3, batch, seq)`` M-RoPE positions of the dense prompt (model's own rule)."""
        mm_types = kwargs.get("mm_token_type_ids")
        if mm_types is None:
            mm_types = _mm_token_type_ids(
                input_ids, self.image_token_id(model), self.video_token_id(model)
            )
        pos, _ = call_with_supported(
            model.model.get_rope_index,
            input_ids=input_ids,
            mm_token_type_ids=mm_types,
            image_grid_thw=kwargs.get("image_grid_thw"),
            video_grid_thw=kwargs.get("video_grid_thw"),
            second_per_grid_ts=kwargs.get("second_per_grid_ts"),
            attention_mask=attention_mask,
        )
        return pos

    def set_rope_deltas(self, model: torch.nn.Module, deltas: torch.Tensor) -> None:
        model.model.rope_deltas = deltas

    def release(self, model: torch.nn.Module) -> None:
        model.model.rope_deltas = None
