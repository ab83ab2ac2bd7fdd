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

from collections.abc import Mapping, Sequence
from typing import Any

from vllm.multimodal.inputs import MultiModalFieldConfig
from vllm.multimodal.processing import PromptReplacement, PromptUpdate

from .pruning import settings_per_video
from .settings import (
    VllmSharpVSettings,
    request_settings,
    settings_from_hf_config,
    split_request_block,
)

__all__ = ["OPTIONS_FIELD", "SharpVModelMixin", "SharpVProcessorMixin"]

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

    def _get_prompt_updates(
        self,
        mm_items: Any,
        hf_processor_mm_kwargs: Mapping[str, Any],
        out_mm_kwargs: Any,
    ) -> Sequence[PromptUpdate]:
        """vLLM's updates, with each video's placeholder run sized by its own settings
        (:meth:`_video_placeholder`) before the vision tower runs."""
        updates = super()._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs)

        def video_replacement(item_idx: int) -> list[int]:
            settings = self._video_settings(out_mm_kwargs, item_idx)
            return self._video_placeholder(mm_items, out_mm_kwargs, item_idx, settings)

        return [
            PromptReplacement(modality="video", target=u.target, replacement=video_replacement)
            if u.modality == "video"
            else u
            for u in updates
        ]

    def _video_placeholder(
        self, mm_items: Any, out_mm_kwargs: Any, item_idx: int, settings: VllmSharpVSettings
    ) -> list[int]:
        """The placeholder tokens of video ``item_idx`` under ``settings`` (per family)."""
        raise NotImplementedError

    def _video_settings(self, out_mm_kwargs: Any, item_idx: int) -> VllmSharpVSettings:
        """Settings of video ``item_idx`` of a processed request (from its field)."""
        item = out_mm_kwargs["video"][item_idx]
        if OPTIONS_FIELD not in item:  # an item processed without the field (never by us)
            return request_settings(self.info.get_hf_config(), None)
        return VllmSharpVSettings.from_row(item[OPTIONS_FIELD].data.tolist())


class SharpVModelMixin:
    """Mixed into a SharpV model class (before vLLM's model in the bases): the server's
    settings, and the per-video ``sharpv_options`` field taken out of each embedding step."""

    def _init_sharpv(self) -> None:
        """Read the server's block (call at the end of ``__init__``)."""
        self.sharpv: VllmSharpVSettings = settings_from_hf_config(self.config)
        self._sharpv_rows: Any = None

    def embed_multimodal(self, **kwargs: object) -> Any:
        """vLLM's embedding step; the per-video ``sharpv_options`` field is taken out of the
        batch here and read by :meth:`_video_settings_batch` during the step."""
        self._sharpv_rows = kwargs.pop(OPTIONS_FIELD, None)
        try:
            return super().embed_multimodal(**kwargs)
        finally:
            self._sharpv_rows = None

    def _video_settings_batch(self, n_videos: int) -> list[VllmSharpVSettings]:
        """The settings of each video of the current embedding step."""
        return settings_per_video(self._sharpv_rows, n_videos, self.sharpv)
