"""Adapters for LLaVA-style video LLMs: LLaVA-OneVision (and LLaVA-Video checkpoints, which
use the same class) and LLaVA-NeXT-Video.

Both run a ViT on every frame, project, pool, and put ``f`` tokens per frame in the prompt
(LLaVA-OneVision adds one ``image_newline`` token after each video). Frames are independent
until the LLM, so every video frame of the batch goes through the tower in one call.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from . import register_adapter
from .base import Adapter, VideoFeatures, call_with_supported, expand_placeholder, pooled_rows

__all__ = ["LlavaOnevisionAdapter", "LlavaNextVideoAdapter"]


class _LlavaVideoAdapter(Adapter):
    vision_keys = (
        "pixel_values",
        "image_sizes",
        "pixel_values_videos",
        "image_sizes_videos",
        "batch_num_images",
        "vision_feature_layer",
        "vision_feature_select_strategy",
        "vision_aspect_ratio",
    )
    #: tokens after each video's frame tokens (LLaVA-OneVision's newline)
    extra_tokens: int = 0

    def tokens_per_frame(self, model: torch.nn.Module) -> int:
        raise NotImplementedError

    def _vision_options(self, model: torch.nn.Module, kwargs: dict[str, Any]) -> dict[str, Any]:
        cfg = model.config
        layer = kwargs.get("vision_feature_layer")
        strategy = kwargs.get("vision_feature_select_strategy")
        return {
            "vision_feature_layer": cfg.vision_feature_layer if layer is None else layer,
            "vision_feature_select_strategy": (
                cfg.vision_feature_select_strategy if strategy is None else strategy
            ),
        }

    def _split_videos(
        self, model: torch.nn.Module, pv: Any, input_ids: torch.Tensor
    ) -> list[torch.Tensor]:
        """Per-video ``(T_i, C, H, W)`` pixels; padding frames of a padded batch dropped.

        ``pixel_values_videos`` is either a list of ``(T_i, C, H, W)`` tensors or a
        ``(videos, T_max, C, H, W)`` tensor. In the latter, a video of a sample with a
        single video has as many frames as its placeholders say; the rest is padding.
        """
        if isinstance(pv, (list, tuple)):
            vids = [v.squeeze(0) if v.dim() == 5 else v for v in pv]
            for i, v in enumerate(vids):
                if v.dim() != 4:
                    raise ValueError(
                        f"pixel_values_videos[{i}] must be (frames, C, H, W), got {tuple(v.shape)}"
                    )
            return vids
        if not isinstance(pv, torch.Tensor) or pv.dim() != 5:
            shape = tuple(pv.shape) if isinstance(pv, torch.Tensor) else type(pv).__name__
            raise ValueError(
                f"pixel_values_videos must be (videos, frames, C, H, W) or a list, got {shape}"
            )
        n_vid, t_max = pv.shape[:2]
        vid = self.video_token_id(model)
        per_sample = (input_ids == vid).sum(dim=1).tolist()
        with_video = [c for c in per_sample if c > 0]
        if len(with_video) != n_vid:  # several videos in a sample: no padding allowed
            return list(pv)
        f = self.tokens_per_frame(model)
        vids = []
        for i, c in enumerate(with_video):
            t, rem = divmod(c - self.extra_tokens, f)
            if rem or not 1 <= t <= t_max:
                raise ValueError(
                    f"video {i}: {c} video placeholders do not match frames of {f} tokens "
                    f"(+{self.extra_tokens}) with at most {t_max} frames"
                )
            vids.append(pv[i, :t])
        return vids

    def _tower_dtype(self, model: torch.nn.Module) -> torch.dtype:
        return next(model.model.vision_tower.parameters()).dtype

    def video_features(self, model, kwargs, input_ids, attention_mask) -> VideoFeatures:
        vids = self._split_videos(model, kwargs["pixel_values_videos"], input_ids)
        frames = [v.shape[0] for v in vids]
        pix = torch.cat(vids, dim=0).unsqueeze(0).to(self._tower_dtype(model))
        # pixels go positionally: the parameter is `pixel_values` up to transformers 5.17 and
        # `pixel_values_videos` since
        out = call_with_supported(
            model.model.get_video_features,
            pix,
            return_dict=True,
            **self._vision_options(model, kwargs),
        )
        rows = pooled_rows(out)
        total, f = sum(frames), self.tokens_per_frame(model)
        if rows.shape[0] < total * f:
            raise ValueError(
                f"get_video_features gave {rows.shape[0]} rows for {total} frames of {f} tokens"
            )
        frame_tokens = rows[: total * f].reshape(total, f, rows.shape[-1])
        extra = self._extras(model, rows[total * f :])
        return VideoFeatures(
            frames=list(torch.split(frame_tokens, frames, dim=0)),
            extras=[extra] * len(vids),
        )

    def _extras(self, model: torch.nn.Module, tail: torch.Tensor) -> torch.Tensor:
        """The ``(extra_tokens, d)`` tokens that follow a video's frames, given the rows that
        ``get_video_features`` returned after the frame tokens (none here)."""
        if tail.shape[0]:
            raise ValueError(f"get_video_features gave {tail.shape[0]} rows beyond the frames")
        return tail

    def _image_extra_options(self, model, kwargs) -> dict[str, Any]:
        return {}

    #: pixel normalisation of the vision tower
    pixel_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    pixel_std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def build_inputs(self, model, tokenizer, frames, prompt) -> dict[str, torch.Tensor]:
        from ..video import frames_to_pixels

        vid = self.video_token_id(model)
        video_tok = tokenizer.convert_ids_to_tokens(vid)
        text = f"{video_tok}\n{prompt}"
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
            )
            ids = tokenizer(text, add_special_tokens=False).input_ids
        else:
            ids = tokenizer(text).input_ids
        n = frames.shape[0] * self.tokens_per_frame(model) + self.extra_tokens
        ids = expand_placeholder(list(ids), vid, n)
        size = model.config.vision_config.image_size
        pixels = frames_to_pixels(frames, size, self.pixel_mean, self.pixel_std)
        return {
            "input_ids": torch.tensor([ids]),
            "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
            "pixel_values_videos": pixels[None],
        }

    def image_features(self, model, kwargs) -> torch.Tensor | None:
        pv = kwargs.get("pixel_values")
        if pv is None:
            return None
        out = call_with_supported(
            model.model.get_image_features,
            pv.to(self._tower_dtype(model)),
            kwargs.get("image_sizes"),
            return_dict=True,
            **self._vision_options(model, kwargs),
            **self._image_extra_options(model, kwargs),
        )
        return pooled_rows(out)


@register_adapter("llava_onevision")
class LlavaOnevisionAdapter(_LlavaVideoAdapter):
    """LLaVA-OneVision / LLaVA-Video: ``ceil(p / 2) ** 2`` tokens per frame (bilinear pooling
    of the ``p x p`` patch grid) and one newline token after each video."""

    model_types = ("llava_onevision",)
    extra_tokens = 1

    def tokens_per_frame(self, model: torch.nn.Module) -> int:
        vc = model.config.vision_config
        p = vc.image_size // vc.patch_size
        return math.ceil(p / 2) ** 2

    def _extras(self, model: torch.nn.Module, tail: torch.Tensor) -> torch.Tensor:
        """The newline after the frames: ``get_video_features`` appends it since transformers
        5.18; before, the model's forward appended ``image_newline`` itself."""
        if tail.shape[0] == self.extra_tokens:
            return tail
        if tail.shape[0] == 0:
            return model.model.image_newline[None].to(dtype=tail.dtype, device=tail.device)
        raise ValueError(
            f"get_video_features gave {tail.shape[0]} rows beyond the frames, expected "
            f"{self.extra_tokens} (the newline) or none"
        )

    def _image_extra_options(self, model, kwargs) -> dict[str, Any]:
        ratio = kwargs.get("vision_aspect_ratio")
        return {
            "vision_aspect_ratio": model.config.vision_aspect_ratio if ratio is None else ratio,
            "batch_num_images": kwargs.get("batch_num_images"),
        }


@register_adapter("llava_next_video")
class LlavaNextVideoAdapter(_LlavaVideoAdapter):
    """LLaVA-NeXT-Video: ``(p // stride) ** 2`` tokens per frame, no separator."""

    model_types = ("llava_next_video",)
    extra_tokens = 0
    pixel_mean = (0.48145466, 0.4578275, 0.40821073)
    pixel_std = (0.26862954, 0.26130258, 0.27577711)

    def tokens_per_frame(self, model: torch.nn.Module) -> int:
        cfg = model.config
        p = cfg.vision_config.image_size // cfg.vision_config.patch_size
        return (p // cfg.spatial_pool_stride) ** 2
