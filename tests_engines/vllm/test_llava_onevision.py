"""SharpV's LLaVA-OneVision / LLaVA-Video architecture in vLLM (CPU build)."""

from __future__ import annotations

import torch
from conftest import BUDGET, LLAVA_ARCH
from engine_checks import (
    assert_rows_equal,
    check_bad_blocks,
    check_greedy_matches_hf,
    check_prompt_counts,
    frames_array,
    kept_rows,
)
from reference import LLAVA


def test_prompt_video_tokens_follow_the_budget_formula(llava_llm):
    check_prompt_counts(llava_llm, LLAVA)


def test_kept_tokens_are_the_ops_then_the_newline(llava_llm, llava_dir):
    from transformers import AutoProcessor

    vp = AutoProcessor.from_pretrained(llava_dir).video_processor
    pixels = [vp(frames_array(n, seed=n), return_tensors="pt")["pixel_values_videos"][0]
              for n in (5, 9)]  # fmt: skip

    def probe(model):
        with torch.no_grad():
            got = model._process_video_pixels({"pixel_values_videos": pixels})
            feats = model._video_pixels_to_features(model.vision_tower, torch.cat(pixels))
        return [g.cpu() for g in got], feats.cpu(), model.image_newline.detach().cpu()

    got, feats, newline = llava_llm.apply_model(probe)[0]
    for g, f in zip(got, torch.split(feats, [5, 9]), strict=True):
        assert_rows_equal(g, torch.cat([kept_rows(f, BUDGET), newline[None]]))


def test_greedy_tokens_match_the_transformers_integration(llava_llm, llava_dir):
    check_greedy_matches_hf(llava_llm, llava_dir, LLAVA, n_frames=(8,))


def test_bad_sharpv_block_fails_at_startup(llava_dir):
    check_bad_blocks(llava_dir, LLAVA_ARCH)
