"""The worked example of docs/methods.md under vLLM: a user's method, defined outside the
package (examples/every_kth.py) and made known to vLLM's processes through
``SHARPV_METHOD_MODULES``, served by the SharpV architectures with ``"method": "every_kth"``;
each video holds exactly the method's declared count, and the kept rows are the method's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import LLAVA_ARCH, engine_kwargs, release
from reference import LLAVA, vllm_request

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def every_kth(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setenv("SHARPV_METHOD_MODULES", "every_kth")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(EXAMPLES), *sys.path]))
    import every_kth as module

    return module


def test_user_method_sizes_the_prompt_and_prunes(llava_dir, every_kth):
    from vllm import LLM, SamplingParams

    from sharpv.engines.vllm.checkpoints import make_video

    k = 3
    llm = LLM(model=str(llava_dir), **engine_kwargs(LLAVA_ARCH, {"method": "every_kth", "k": k}))
    try:
        frames = [[8], [4, 6]]
        requests = [
            vllm_request(LLAVA, [make_video(n, seed=7 * i + j) for j, n in enumerate(videos)])
            for i, videos in enumerate(frames)
        ]
        outs = llm.generate(requests, SamplingParams(temperature=0, max_tokens=2))
        f = LLAVA.tokens_per_frame
        for videos, out in zip(frames, outs, strict=True):
            want = sum(
                every_kth.METHOD.token_count(LLAVA.frames_seen(n), f, k=k) + LLAVA.extra_tokens
                for n in videos
            )
            got = list(out.prompt_token_ids).count(LLAVA.video_token_id)
            assert got == want, (videos, got, want)
            assert len(out.outputs[0].token_ids) == 2
        # a per-request block of the same method, and a bad one with the registry's message
        per_request = dict(requests[0], mm_processor_kwargs={"sharpv": {"k": 1}})
        out = llm.generate([per_request], SamplingParams(temperature=0, max_tokens=1))[0]
        n = LLAVA.frames_seen(8)
        assert list(out.prompt_token_ids).count(LLAVA.video_token_id) == n * f + LLAVA.extra_tokens
        bad = dict(requests[0], mm_processor_kwargs={"sharpv": {"k": 0}})
        with pytest.raises(ValueError, match="option k of method every_kth must be"):
            llm.generate([bad], use_tqdm=False)
    finally:
        release(llm)
