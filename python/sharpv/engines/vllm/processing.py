"""Per-request SharpV options in vLLM's multimodal processors.

A request's ``mm_processor_kwargs={"sharpv": {...}}`` reaches the processor's
``_apply_hf_processor_main`` with the other processor kwargs. :class:`SharpVProcessorMixin`
takes the block out there (the Hugging Face processor never sees it), merges it over the
server's ``hf_overrides`` block and validates it (:func:`~.settings.request_settings`: a bad
block raises that request's ``ValueError``/``TypeError``, worded as a bad server block), and
writes the result into the processed data as one more per-video field, ``sharpv_options``
(``(OPTIONS_WIDTH,)`` float64 per video, kept on the CPU). vLLM then carries the field with
the video everywhere the video goes: the prompt update sizes the placeholder run from it,
the multimodal hash includes the block (vLLM hashes ``mm_processor_kwargs``, so the encoder
and processor caches never mix settings), and the model's embedding step receives it beside
the pixels, batched per video also when requests with different settings share a step.

Importing this module imports vLLM.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vllm.multimodal.inputs import MultiModalFieldConfig

from .settings import VllmSharpVSettings, request_settings, split_request_block

__all__ = ["OPTIONS_FIELD", "SharpVProcessorMixin"]

#: name of the per-video field that carries each video's settings to the model
OPTIONS_FIELD = "sharpv_options"


class SharpVProcessorMixin:
    """Mixed into a vLLM ``BaseMultiModalProcessor`` subclass (before it in the bases)."""

    def _apply_hf_processor_main(self, mm_items: Any, hf_kwargs: Mapping[str, object]) -> Any:
        block, rest = split_request_block(hf_kwargs)
        settings = request_settings(self.info.get_hf_config(), block)
        out = super()._apply_hf_processor_main(mm_items, rest)
        n_videos = mm_items.get_count("video", strict=False)
        if n_videos:
            out[OPTIONS_FIELD] = settings.as_row().expand(n_videos, -1).clone()
        return out

    def _get_mm_fields_config(
        self, hf_inputs: Any, hf_processor_mm_kwargs: Mapping[str, object]
    ) -> Mapping[str, MultiModalFieldConfig]:
        fields = dict(super()._get_mm_fields_config(hf_inputs, hf_processor_mm_kwargs))
        fields[OPTIONS_FIELD] = MultiModalFieldConfig.batched("video", keep_on_cpu=True)
        return fields

    def _video_settings(self, out_mm_kwargs: Any, item_idx: int) -> VllmSharpVSettings:
        """Settings of video ``item_idx`` of a processed request (from its field)."""
        item = out_mm_kwargs["video"][item_idx]
        if OPTIONS_FIELD not in item:  # an item processed without the field (never by us)
            return request_settings(self.info.get_hf_config(), None)
        return VllmSharpVSettings.from_row(item[OPTIONS_FIELD].data.tolist())
