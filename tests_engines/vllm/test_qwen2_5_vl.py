"""SharpV's Qwen2.5-VL architecture in vLLM (CPU build): counts, kept tokens, M-RoPE."""

from __future__ import annotations

import torch
from conftest import BUDGET, QWEN_ARCH
from engine_checks import (
    assert_rows_equal,
    check_bad_blocks,
    check_greedy_matches_hf,
    check_prompt_counts,
    frames_array,
    kept_rows,
)
from reference import QWEN

from sharpv.engines.vllm import checkpoints


def test_prompt_video_tokens_follow_the_budget_formula(qwen_llm):
    check_prompt_counts(qwen_llm, QWEN)


def test_kept_tokens_and_their_dense_mrope_positions(qwen_llm, qwen_dir):
    """The embeddings the runner gets are the op's kept rows, each followed by its dense
    (t, h, w) position, and the text after the video resumes at the dense position."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(qwen_dir)
    n_frames = 10
    frames = frames_array(n_frames, seed=3)
    meta = checkpoints.qwen_video_metadata(n_frames)
    inputs = processor(
        text=[QWEN.prompt(1)], videos=[frames], video_metadata=[meta],
        do_sample_frames=False, return_tensors="pt",
    )  # fmt: skip
    video_input = {
        "type": "pixel_values_videos",
        "pixel_values_videos": inputs["pixel_values_videos"],
        "video_grid_thw": inputs["video_grid_thw"],
        "second_per_grid_ts": inputs["second_per_grid_ts"],
    }

    def probe(model):
        with torch.no_grad():
            dense = model._process_video_input(video_input)
            pruned = model._postprocess_video_embeds_evs(dense, video_input)
        return dense[0].cpu(), pruned[0].cpu()

    dense, pruned = qwen_llm.apply_model(probe)[0]
    t, h, w = inputs["video_grid_thw"][0].tolist()
    feats = dense.reshape(t, (h // 2) * (w // 2), -1)
    assert_rows_equal(pruned[:, :-4], kept_rows(feats, BUDGET))

    # dense positions from the transformers model's own rule
    hf = AutoModelForImageTextToText.from_pretrained(qwen_dir, dtype=torch.float32)
    pos, _ = hf.model.get_rope_index(
        input_ids=inputs["input_ids"],
        mm_token_type_ids=inputs["mm_token_type_ids"],
        video_grid_thw=inputs["video_grid_thw"],
        second_per_grid_ts=inputs["second_per_grid_ts"],
        attention_mask=inputs["attention_mask"],
    )
    ids = inputs["input_ids"][0]
    video = (ids == QWEN.video_token_id).nonzero()[:, 0]
    base = int(pos[0, 0, video[0] - 1]) + 1  # the token after vision-start
    res_idx = _kept_indices(feats)
    want = pos[:, 0, video[res_idx]].T - base
    got = pruned[:, -4:-1].round().long()
    assert torch.equal(got, want)
    after = int(video[-1]) + 2  # the first text token after vision-end
    # the runner continues the text after the video (vision-end first) at base + channel 3
    assert int(pruned[0, -1]) + base == int(pos[0, 0, after - 1])


def _kept_indices(feats: torch.Tensor) -> torch.Tensor:
    from sharpv_kernels import visual_prune

    return visual_prune(feats, [0, feats.shape[0]], mode="budget", budget=BUDGET).indices.long()


def test_greedy_tokens_match_the_transformers_integration(qwen_llm, qwen_dir):
    check_greedy_matches_hf(qwen_llm, qwen_dir, QWEN, n_frames=(8,))


def test_bad_sharpv_block_fails_at_startup(qwen_dir):
    check_bad_blocks(qwen_dir, QWEN_ARCH)
