"""What the engine tests compare vLLM against: the Hugging Face integration on the same
checkpoint (``sharpv.apply_sharpv`` with the same budget), and prompt builders shared by
both sides."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sharpv.engines.vllm import checkpoints

__all__ = ["Family", "LLAVA", "QWEN", "HFGreedy", "hf_greedy", "vllm_request"]


@dataclass(frozen=True)
class Family:
    """How one model family writes a prompt with videos."""

    name: str
    video_placeholder: str  # one video in the prompt text, before expansion
    video_token_id: int
    extra_tokens: int  # tokens a video holds beyond its frame tokens (LLaVA's newline)
    tokens_per_frame: int

    def prompt(self, n_videos: int, question: str = "what happens in the video ?") -> str:
        return " ".join([self.video_placeholder] * n_videos + [question])

    def frames_seen(self, n_frames: int) -> int:
        """Frames SharpV prunes over: Qwen2.5-VL groups two frames per temporal step."""
        return n_frames // 2 if self.name == "qwen2_5_vl" else n_frames


LLAVA = Family(
    "llava_onevision", "<video>", 4, 1, checkpoints.LLAVA_TOKENS_PER_FRAME
)  # fmt: skip
QWEN = Family(
    "qwen2_5_vl", "<|vision_start|><|video_pad|><|vision_end|>", 4, 0,
    checkpoints.QWEN_TOKENS_PER_GROUP,
)  # fmt: skip


def vllm_request(family: Family, videos: list[np.ndarray]) -> dict:
    """One ``LLM.generate`` request: the prompt text and its videos."""
    prompt = family.prompt(len(videos))
    if family is QWEN:
        items = [(v, checkpoints.qwen_video_metadata(v.shape[0])) for v in videos]
    else:
        items = list(videos)
    return {"prompt": prompt, "multi_modal_data": {"video": items if len(items) > 1 else items[0]}}


@dataclass
class HFGreedy:
    tokens: list[int]
    logprobs: list[torch.Tensor]  # per step, (vocab,) log-softmax of the logits
    margins: list[float]  # per step, top-1 minus top-2 logprob


@torch.no_grad()
def hf_greedy(
    path: Path, family: Family, videos: list[np.ndarray], budget: float, max_new_tokens: int
) -> HFGreedy:
    """Greedy tokens of the transformers model with ``apply_sharpv(mode="budget")``."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import sharpv

    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    kwargs = {}
    if family is QWEN:
        kwargs = dict(
            video_metadata=[checkpoints.qwen_video_metadata(v.shape[0]) for v in videos],
            do_sample_frames=False,
        )
    inputs = processor(
        text=[family.prompt(len(videos))], videos=list(videos), return_tensors="pt", **kwargs
    )
    sharpv.apply_sharpv(model, sharpv.SharpVConfig(mode="budget", budget=budget, memory=False))
    out = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        output_scores=True,
        return_dict_in_generate=True,
    )
    n = inputs["input_ids"].shape[1]
    logprobs = [s[0].float().log_softmax(-1) for s in out.scores]
    margins = [float(lp.topk(2).values[0] - lp.topk(2).values[1]) for lp in logprobs]
    return HFGreedy(out.sequences[0, n:].tolist(), logprobs, margins)
