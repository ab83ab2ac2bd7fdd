"""``SharpVLlavaOnevisionForConditionalGeneration``: vLLM's LLaVA-OneVision with Visual SharpV.

Serves LLaVA-OneVision and LLaVA-Video checkpoints (both ``llava_onevision`` configs). Two
changes to vLLM's model, nothing else:

* the processor's prompt update sizes each video's placeholder run as the budget count of
  its ``n`` frames of ``f`` pooled tokens, plus the newline token, with the request's own
  settings (:mod:`sharpv.engines.vllm.processing`); this runs before the vision tower, from
  the frame count and size alone. The processing info keeps vLLM's dense count, the upper
  bound vLLM sizes its encoder cache and profiling with (a request may ask for more tokens
  than the server's budget);
* the video-embedding step prunes the pooled frame tokens with
  ``sharpv_kernels.visual_prune(mode="budget")``, one op call per group of videos with
  equal settings (:mod:`sharpv.engines.vllm.pruning`), before the newline is appended.
  LLaVA uses 1-D RoPE, so the kept tokens are indexed contiguously, as in the Hugging Face
  integration.

Importing this module imports vLLM; the plugin registers it lazily by name.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.model_executor.models.llava_onevision import (
    LlavaOnevisionDummyInputsBuilder,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionMultiModalProcessor,
    LlavaOnevisionProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.parse import VideoProcessorItems

from .processing import SharpVModelMixin, SharpVProcessorMixin
from .pruning import prune_videos
from .settings import VllmSharpVSettings

__all__ = [
    "SharpVLlavaOnevisionForConditionalGeneration",
    "SharpVLlavaOnevisionMultiModalProcessor",
]


class SharpVLlavaOnevisionMultiModalProcessor(
    SharpVProcessorMixin, LlavaOnevisionMultiModalProcessor
):
    """LLaVA-OneVision processor whose video runs hold the request's budget count + 1."""

    def _video_placeholder(
        self, mm_items: Any, out_mm_kwargs: Any, item_idx: int, settings: VllmSharpVSettings
    ) -> list[int]:
        videos = mm_items.get_items("video", VideoProcessorItems)
        size = videos.get_frame_size(item_idx)
        f = self.info._get_num_frame_tokens(image_width=size.width, image_height=size.height)
        n = videos.get_num_frames(item_idx)
        video_id = self.info.get_hf_config().video_token_index
        return [video_id] * (settings.video_tokens(n, f) + 1)  # + the newline token


@MULTIMODAL_REGISTRY.register_processor(
    SharpVLlavaOnevisionMultiModalProcessor,
    info=LlavaOnevisionProcessingInfo,
    dummy_inputs=LlavaOnevisionDummyInputsBuilder,
)
class SharpVLlavaOnevisionForConditionalGeneration(
    SharpVModelMixin, LlavaOnevisionForConditionalGeneration
):
    """vLLM LLaVA-OneVision / LLaVA-Video that keeps the budget's video tokens only.

    Select it with ``hf_overrides={"architectures": [this name], "sharpv": {"budget": b}}``.
    """

    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self._init_sharpv()

    def _process_video_pixels(self, inputs) -> list[torch.Tensor]:
        """Per video, ``(N + 1, d)``: the kept pooled frame tokens, then the newline."""
        pixels = inputs["pixel_values_videos"]
        videos = list(pixels) if isinstance(pixels, torch.Tensor) else pixels
        n_frames = [int(v.shape[0]) for v in videos]
        feats = self._video_pixels_to_features(self.vision_tower, torch.cat(videos))
        settings = self._video_settings_batch(len(videos))
        newline = self.image_newline[None, :].to(feats.dtype)
        out: list[torch.Tensor | None] = [None] * len(videos)
        for group in prune_videos(torch.split(feats, n_frames), settings):
            flat = group.packed.reshape(-1, group.packed.shape[-1])
            rows = flat.index_select(0, group.indices)
            for i, part in zip(group.videos, rows.split(group.sizes), strict=True):
                out[i] = torch.cat((part, newline), dim=0)
        return out
