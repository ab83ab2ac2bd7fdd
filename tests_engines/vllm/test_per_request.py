"""Per-request SharpV options (``mm_processor_kwargs={"sharpv": {...}}``) in one engine.

One engine per family serves a batch whose requests carry different budgets (and some
none); each request's prompt holds its own budget count, and its greedy output equals that
of an engine started with the request's settings server-wide (the reference engines run the
same requests alone, one budget each). A bad block fails its request with the start-up
message, and the engine goes on.
"""

from __future__ import annotations

import pytest
from conftest import BUDGET, LLAVA_ARCH, QWEN_ARCH, engine_kwargs, release
from reference import LLAVA, QWEN, vllm_request

from sharpv.engines.vllm.checkpoints import make_video
from sharpv_kernels import budget_token_count

STEPS = 4
#: (per-request block or None, frames of each video); None = the server's budget
BATCH = [
    ({"budget": 0.6}, [8]),
    (None, [6]),
    ({"budget": 0.15}, [8, 4]),
    ({"budget": 0.6}, [10]),
    (None, [8]),
]


def _requests(family) -> list[dict]:
    out = []
    for i, (block, frames) in enumerate(BATCH):
        videos = [make_video(n, seed=300 + 10 * i + j) for j, n in enumerate(frames)]
        req = vllm_request(family, videos)
        if block is not None:
            req["mm_processor_kwargs"] = {"sharpv": block}
        out.append(req)
    return out


def _greedy(llm, requests) -> list[list[int]]:
    from vllm import SamplingParams

    params = SamplingParams(temperature=0, max_tokens=STEPS, ignore_eos=True)
    return [list(o.outputs[0].token_ids) for o in llm.generate(requests, params, use_tqdm=False)]


@pytest.mark.parametrize("family, arch, dirname", [(QWEN, QWEN_ARCH, "qwen_dir"),
                                                   (LLAVA, LLAVA_ARCH, "llava_dir")])  # fmt: skip
def test_mixed_batch_matches_per_budget_engines(family, arch, dirname, request):
    from vllm import LLM, SamplingParams

    path = request.getfixturevalue(dirname)
    requests = _requests(family)
    llm = LLM(model=str(path), **engine_kwargs(arch, {"budget": BUDGET}, mm_processor_cache_gb=0))
    try:
        outs = llm.generate(requests, SamplingParams(temperature=0, max_tokens=STEPS,
                                                     ignore_eos=True), use_tqdm=False)  # fmt: skip
        for (block, frames), out in zip(BATCH, outs, strict=True):
            budget = BUDGET if block is None else block["budget"]
            want = sum(
                budget_token_count(budget, family.frames_seen(n), family.tokens_per_frame)
                + family.extra_tokens
                for n in frames
            )
            got = list(out.prompt_token_ids).count(family.video_token_id)
            assert got == want, (block, frames, got, want)
        mixed = [list(o.outputs[0].token_ids) for o in outs]

        # a bad block fails its request with the start-up check's message; the engine goes on
        bad = dict(requests[1], mm_processor_kwargs={"sharpv": {"budget": 1.5}})
        with pytest.raises(ValueError, match=r"option budget of method sharpv must be a number in"):
            llm.generate([bad], use_tqdm=False)
        bad["mm_processor_kwargs"] = {"sharpv": {"budget": 0.3, "memory": True}}
        with pytest.raises(ValueError, match="Memory SharpV is not available in vLLM"):
            llm.generate([bad], use_tqdm=False)
        assert _greedy(llm, [requests[1]]) == [mixed[1]]
    finally:
        release(llm)

    by_budget: dict[float, list[int]] = {}
    for i, (block, _) in enumerate(BATCH):
        by_budget.setdefault(BUDGET if block is None else block["budget"], []).append(i)
    for budget, members in by_budget.items():
        if budget == BUDGET:
            continue  # the engine above is the server-wide one for these
        ref = LLM(model=str(path), **engine_kwargs(arch, {"budget": budget},
                                                   mm_processor_cache_gb=0))  # fmt: skip
        try:
            plain = [{k: v for k, v in requests[i].items() if k != "mm_processor_kwargs"}
                     for i in members]  # fmt: skip
            got = _greedy(ref, plain)
        finally:
            release(ref)
        for i, tokens in zip(members, got, strict=True):
            assert mixed[i] == tokens, (budget, i, mixed[i], tokens)
