"""``SharpVQwen2_5_VLForConditionalGeneration``: vLLM's Qwen2.5-VL with Visual SharpV.

Qwen2.5-VL merges ``2 x 2`` patches and two frames, so a video of grid ``(t, h, w)`` enters
the LLM as ``t`` temporal groups ("frames") of ``f = (h / 2) * (w / 2)`` tokens. The class
reuses the hooks vLLM's own video pruning (EVS) goes through, with SharpV in them:

* the processor's prompt updates size each video's placeholder run as
  ``budget_token_count(budget, t, f, min_keep)`` (before the vision tower runs), with the
  request's own settings (:mod:`sharpv.engines.vllm.processing`);
* ``_postprocess_video_embeds_evs`` keeps the tokens ``visual_prune(mode="budget")`` keeps,
  one op call per group of videos with equal grid and settings
  (:mod:`sharpv.engines.vllm.pruning`), and appends to each one its dense M-RoPE
  ``(t, h, w)`` position (vLLM's own rule for the dense prompt) plus, in the fourth channel,
  the offset at which the text after the video continues (as in transformers' dense prompt),
  so text positions are the dense ones too;
* the model runner's ``recompute_mrope_positions`` then writes those positions into the
  request. vLLM builds that step when its multimodal pruning switch is on, which the
  plugin's config check turns on for this architecture
  (:func:`sharpv.engines.vllm.runner_patch.enable_multimodal_pruning`); only vLLM 0.32's
  v1 CPU runner ignores the switch and needs :mod:`sharpv.engines.vllm.runner_patch`.

Images keep every token (vLLM's ``_postprocess_image_embeds_evs`` adds their positions).
Importing this module imports vLLM; the plugin registers it lazily by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from vllm.model_executor.models.qwen2_5_vl import (
    Qwen2_5_VLDummyInputsBuilder,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLMultiModalProcessor,
    Qwen2_5_VLProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY

from .processing import SharpVModelMixin, SharpVProcessorMixin
from .pruning import prune_videos
from .settings import VllmSharpVSettings

__all__ = [
    "SharpVQwen2_5_VLForConditionalGeneration",
    "SharpVQwen2_5_VLMultiModalProcessor",
    "dense_mrope_positions",
]


def dense_mrope_positions(grid_thw: Sequence[int], merge: int, t_factor: float) -> torch.Tensor:
    """``(t * h' * w', 4)`` int64: dense M-RoPE ``(t, h, w)`` of a video's tokens, and in the
    last channel where the text after the video resumes.

    Positions are relative to the token after the vision-start token; ``t`` is scaled by
    ``t_factor`` (seconds per grid step * tokens per second) and truncated. The text after
    the media resumes at ``max(h', w')``, the rule of transformers 5's ``get_rope_index``,
    which the Hugging Face integration uses (vLLM's dense model resumes at the maximum
    over ``(t, h, w)`` + 1 instead; the two differ when the scaled ``t`` exceeds the side).

    Examples:
        >>> dense_mrope_positions((2, 4, 4), 2, 1.0)[:, 3].unique().tolist()
        [2]
    """
    t, h, w = (int(x) for x in grid_thw)
    h, w = h // merge, w // merge
    grid = torch.stack(
        torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    ).reshape(3, -1)
    grid = grid.to(torch.float64)
    grid[0] = grid[0] * float(t_factor)
    grid = grid.to(torch.int64)  # truncation, as numpy's astype(int64)
    resume = torch.tensor(max(h, w))
    return torch.cat([grid, resume.expand(1, grid.shape[1])], dim=0).T.contiguous()


class SharpVQwen2_5_VLMultiModalProcessor(SharpVProcessorMixin, Qwen2_5_VLMultiModalProcessor):
    """Qwen2.5-VL processor whose video placeholder runs hold SharpV's budget count of the
    request's own settings."""

    def _video_placeholder(
        self, mm_items: Any, out_mm_kwargs: Any, item_idx: int, settings: VllmSharpVSettings
    ) -> list[int]:
        config = self.info.get_hf_config()
        merge = config.vision_config.spatial_merge_size
        t, h, w = (int(x) for x in out_mm_kwargs["video"][item_idx]["video_grid_thw"].data)
        return [config.video_token_id] * settings.video_tokens(t, (h // merge) * (w // merge))


@MULTIMODAL_REGISTRY.register_processor(
    SharpVQwen2_5_VLMultiModalProcessor,
    info=Qwen2_5_VLProcessingInfo,
    dummy_inputs=Qwen2_5_VLDummyInputsBuilder,
)
class SharpVQwen2_5_VLForConditionalGeneration(
    SharpVModelMixin, Qwen2_5_VLForConditionalGeneration
):
    """vLLM Qwen2.5-VL that keeps the budget's video tokens at their dense M-RoPE positions.

    Select it with ``hf_overrides={"architectures": [this name], "sharpv": {"budget": b}}``.
    """

    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        from .runner_patch import require_mrope_recompute

        require_mrope_recompute(vllm_config.model_config)
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self._init_sharpv()
        # route embed_multimodal through the pruning hooks (positions appended to every
        # image and video embedding, videos pruned in _postprocess_video_embeds_evs)
        self.is_multimodal_pruning_enabled = True

    def get_mrope_input_positions(
        self, input_tokens: list[int], mm_features: list[Any]
    ) -> tuple[torch.Tensor, int]:
        """``(3, len(input_tokens))`` M-RoPE positions of the pruned prompt before the
        vision tower runs, and the decode offset.

        Text and images get their dense positions; a video's ``N`` placeholders get the
        first ``N`` dense positions of its grid for now (the runner overwrites them with
        the kept tokens' own positions once the embeddings exist), and the text after a
        video resumes where it does in the dense prompt.
        """
        merge = self.config.vision_config.spatial_merge_size
        tps = float(getattr(self.config.vision_config, "tokens_per_second", 1.0))
        pieces: list[torch.Tensor] = []
        start = nxt = 0
        for feat in sorted(mm_features, key=lambda f: f.mm_position.offset):
            offset, length = feat.mm_position.offset, feat.mm_position.length
            pieces.append(torch.arange(offset - start).expand(3, -1) + nxt)
            nxt += offset - start
            if feat.modality == "video":
                grid = feat.data["video_grid_thw"].data.tolist()
                sec = feat.data.get("second_per_grid_ts")
                t_factor = (1.0 if sec is None else float(sec.data)) * tps
            else:
                grid, t_factor = feat.data["image_grid_thw"].data.tolist(), 1.0
            pos = dense_mrope_positions(grid, merge, t_factor)
            pieces.append(pos[:length, :3].T + nxt)
            nxt += int(pos[0, 3]) if len(pos) else 0
            start = offset + length
        pieces.append(torch.arange(len(input_tokens) - start).expand(3, -1) + nxt)
        positions = torch.cat(pieces, dim=1)
        return positions, int(positions.max()) + 1 - len(input_tokens)

    def _postprocess_video_embeds_evs(
        self, video_embeds_split: Sequence[torch.Tensor], video_input: Any
    ) -> tuple[torch.Tensor, ...]:
        """Per video ``(N, d + 4)``: kept tokens, then their dense ``(t, h, w)`` and the
        resume offset of the text after the video.

        Videos with the same merged grid ``(h, w)`` and settings are pruned by one op call
        and their positions computed in one vectorised pass (no per-video op, no host
        synchronisation: the kept counts are the budget formula's).
        """
        grids = video_input["video_grid_thw"].tolist()
        seconds = video_input.get("second_per_grid_ts")
        seconds = [1.0] * len(grids) if seconds is None else [float(s) for s in seconds]
        tps = float(getattr(self.config.vision_config, "tokens_per_second", 1.0))
        merge = self.visual.spatial_merge_size
        settings = self._video_settings_batch(len(grids))
        frames, keys = [], []
        for emb, (t, h, w) in zip(video_embeds_split, grids, strict=True):
            hw = (int(h) // merge, int(w) // merge)
            frames.append(emb.reshape(int(t), hw[0] * hw[1], emb.shape[-1]))
            keys.append(hw)
        out: list[torch.Tensor | None] = [None] * len(grids)
        for group in prune_videos(frames, settings, keys):
            hh, ww = keys[group.videos[0]]
            f = hh * ww
            device = group.indices.device
            idx = group.indices
            vid = torch.repeat_interleave(
                torch.arange(len(group.sizes), device=device),
                torch.tensor(group.sizes, device=device),
                output_size=int(idx.numel()),
            )
            first = torch.tensor(group.frame_offsets, device=device)[vid]
            factor = torch.tensor(
                [seconds[i] * tps for i in group.videos], dtype=torch.float64, device=device
            )[vid]
            token = idx % f
            t_pos = ((idx // f - first).to(torch.float64) * factor).to(torch.int64)
            pos = torch.stack(
                [t_pos, token // ww, token % ww, torch.full_like(token, max(hh, ww))], dim=1
            )
            rows = group.packed.reshape(-1, group.packed.shape[-1]).index_select(0, idx)
            rows = torch.cat([rows, pos.to(rows.dtype)], dim=1)
            for i, part in zip(group.videos, rows.split(group.sizes), strict=True):
                out[i] = part
        return tuple(out)
