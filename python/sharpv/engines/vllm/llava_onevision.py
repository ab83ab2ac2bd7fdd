"""``SharpVLlavaOnevisionForConditionalGeneration``: vLLM's LLaVA-OneVision with Visual SharpV.

Serves LLaVA-OneVision and LLaVA-Video checkpoints (both ``llava_onevision`` configs). Two
changes to vLLM's model, nothing else:

* the processing info sizes each video's placeholder run as the budget count of its
  ``n`` frames of ``f`` pooled tokens, plus the newline token
  (:meth:`SharpVLlavaOnevisionProcessingInfo.get_num_video_tokens`); this runs before the
  vision tower, from the frame count and size alone;
* the video-embedding step prunes each video's pooled frame tokens with
  ``sharpv_kernels.visual_prune(mode="budget")`` before the newline is appended. LLaVA uses
  1-D RoPE, so the kept tokens are indexed contiguously, as in the Hugging Face integration.

Importing this module imports vLLM; the plugin registers it lazily by name.
"""

from __future__ import annotations

import torch
from vllm.model_executor.models.llava_onevision import (
    LlavaOnevisionDummyInputsBuilder,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionMultiModalProcessor,
    LlavaOnevisionProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY

from .settings import VllmSharpVSettings, settings_from_hf_config

__all__ = [
    "SharpVLlavaOnevisionForConditionalGeneration",
    "SharpVLlavaOnevisionProcessingInfo",
]


class SharpVLlavaOnevisionProcessingInfo(LlavaOnevisionProcessingInfo):
    """LLaVA-OneVision processing info whose video token count is SharpV's budget count."""

    def get_num_video_tokens(self, *, image_width: int, image_height: int, num_frames: int) -> int:
        """Placeholders of one video: ``budget_token_count(budget, n, f, min_keep) + 1``."""
        f = self._get_num_frame_tokens(image_width=image_width, image_height=image_height)
        settings = settings_from_hf_config(self.get_hf_config())
        return settings.video_tokens(num_frames, f) + 1  # + the newline token


@MULTIMODAL_REGISTRY.register_processor(
    LlavaOnevisionMultiModalProcessor,
    info=SharpVLlavaOnevisionProcessingInfo,
    dummy_inputs=LlavaOnevisionDummyInputsBuilder,
)
class SharpVLlavaOnevisionForConditionalGeneration(LlavaOnevisionForConditionalGeneration):
    """vLLM LLaVA-OneVision / LLaVA-Video that keeps the budget's video tokens only.

    Select it with ``hf_overrides={"architectures": [this name], "sharpv": {"budget": b}}``.
    """

    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self.sharpv: VllmSharpVSettings = settings_from_hf_config(self.config)

    def _process_video_pixels(self, inputs) -> list[torch.Tensor]:
        """Per video, ``(N + 1, d)``: the kept pooled frame tokens, then the newline."""
        pixels = inputs["pixel_values_videos"]
        videos = list(pixels) if isinstance(pixels, torch.Tensor) else pixels
        n_frames = [int(v.shape[0]) for v in videos]
        feats = self._video_pixels_to_features(self.vision_tower, torch.cat(videos))
        newline = self.image_newline[None, :].to(feats.dtype)
        out = []
        for frames in torch.split(feats, n_frames):  # (n, f, d) per video
            keep = self.sharpv.prune(frames)
            kept = frames.reshape(-1, frames.shape[-1]).index_select(0, keep.to(frames.device))
            out.append(torch.cat((kept, newline), dim=0))
        return out
