"""The checks every SharpV architecture passes in vLLM (one function per SPEC clause);
``test_llava_onevision.py`` and ``test_qwen2_5_vl.py`` run them on their family."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import Family, hf_greedy, vllm_request

from sharpv_kernels import budget_token_count

#: greedy steps compared with the Hugging Face integration
STEPS = 5
#: |logprob(vLLM) - logprob(HF)| allowed per step (float32 on both sides)
LOGPROB_ATOL = 2e-3
#: a step whose top-2 gap is below this is a knife edge: the data must avoid it
MIN_MARGIN = 2e-3


def check_prompt_counts(llm, family: Family) -> None:
    """SPEC "Inside engines" 1: each video holds exactly the budget count (+ extras),
    for several videos and frame counts in one batch."""
    from conftest import BUDGET
    from vllm import SamplingParams

    from sharpv.engines.vllm.checkpoints import make_video

    batch = [[8], [4, 6], [12], [2, 10]]
    requests = [
        vllm_request(family, [make_video(n, seed=10 * i + j) for j, n in enumerate(frames)])
        for i, frames in enumerate(batch)
    ]
    outs = llm.generate(requests, SamplingParams(temperature=0, max_tokens=1))
    for frames, out in zip(batch, outs, strict=True):
        want = sum(
            budget_token_count(BUDGET, family.frames_seen(n), family.tokens_per_frame)
            + family.extra_tokens
            for n in frames
        )
        got = list(out.prompt_token_ids).count(family.video_token_id)
        assert got == want, f"{frames} frames: {got} video tokens, formula gives {want}"


def check_greedy_matches_hf(llm, path, family: Family, n_frames: tuple[int, ...]) -> None:
    """SPEC "Inside engines" 2: same weights, same budget -> same greedy tokens (and the
    same log-probabilities, which positions or a wrong kept set would change)."""
    from conftest import BUDGET
    from vllm import SamplingParams

    from sharpv.engines.vllm.checkpoints import make_video

    videos = [make_video(n, seed=100 + n) for n in n_frames]
    ref = hf_greedy(path, family, videos, BUDGET, STEPS)
    assert min(ref.margins) > MIN_MARGIN, f"knife-edge test data: margins {ref.margins}"
    params = SamplingParams(temperature=0, max_tokens=STEPS, logprobs=1, ignore_eos=True)
    out = llm.generate([vllm_request(family, videos)], params)[0].outputs[0]
    got = list(out.token_ids)
    n = min(len(got), len(ref.tokens))
    assert got[:n] == ref.tokens[:n], f"vLLM {got} vs transformers {ref.tokens}"
    for step in range(n):
        tok = got[step]
        lp_vllm = out.logprobs[step][tok].logprob
        lp_hf = float(ref.logprobs[step][tok])
        assert abs(lp_vllm - lp_hf) < LOGPROB_ATOL, (step, lp_vllm, lp_hf)


def check_bad_blocks(path, arch: str) -> None:
    """A bad ``sharpv`` block fails at start-up with a message naming the option."""
    from conftest import engine_kwargs
    from vllm import LLM

    cases = [
        (None, "need a 'sharpv' block"),
        ({"budget": 1.5}, r"option budget of method sharpv must be a number in \(0, 1\]"),
        ({"budget": 0.3, "memory": True}, "Memory SharpV is not available in vLLM"),
        ({"budget": 0.3, "mode": "adaptive"}, "is only used with mode=budget"),
        ({"budget": 0.3, "keep": 3}, "method sharpv has no option keep"),
        ({"budget": 0.3, "min_keep": -1}, "option min_keep of method sharpv must be"),
        ({"budget": "lots"}, "option budget of method sharpv must be a number in"),
    ]
    for block, message in cases:
        with pytest.raises(Exception, match=message):
            LLM(model=str(path), **engine_kwargs(arch, block))


def kept_rows(frames: torch.Tensor, budget: float) -> torch.Tensor:
    """``(N, d)`` rows ``visual_prune(mode="budget")`` keeps of one ``(n, f, d)`` video."""
    from sharpv_kernels import visual_prune

    res = visual_prune(frames, [0, frames.shape[0]], mode="budget", budget=budget)
    return frames.reshape(-1, frames.shape[-1])[res.indices.long()]


def assert_rows_equal(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape, (tuple(got.shape), tuple(want.shape))
    assert torch.equal(got, want), float((got - want).abs().max())


def frames_array(n: int, seed: int) -> np.ndarray:
    from sharpv.engines.vllm.checkpoints import make_video

    return make_video(n, seed=seed)
