"""The ``sharpv`` block: parsing, start-up errors, the prompt count and the kept indices
(no engine needed)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from sharpv.engines.vllm.settings import (
    MEMORY_UNSUPPORTED,
    VllmSharpVSettings,
    settings_from_hf_config,
    validate_block,
)
from sharpv.methods import MethodOptionError
from sharpv_kernels import budget_token_count, visual_prune


def _cfg(block):
    return SimpleNamespace(sharpv=block)


def test_defaults_and_every_option():
    s = settings_from_hf_config(_cfg({"budget": 0.25}))
    assert (s["budget"], s["min_keep"], s["w"], s["metric"]) == (0.25, 1, 1.0, "dissim")
    assert (s.method, s["mode"], s["memory"]) == ("sharpv", "budget", False)  # engine defaults
    s = settings_from_hf_config(
        _cfg({"budget": 1, "min_keep": 2, "w": 0.5, "metric": "cosine", "mode": "budget",
              "memory": False, "visual": True})
    )  # fmt: skip
    assert (s["budget"], s["min_keep"], s["w"], s["metric"]) == (1, 2, 0.5, "cosine")


def _registry_error(method: str, options: dict) -> str:
    """The message the Python API gives for the same options (SPEC "Inside engines" 4)."""
    from sharpv.methods import validate

    with pytest.raises(MethodOptionError) as err:
        validate(method, options)
    return str(err.value)


@pytest.mark.parametrize(
    "block, error, message",
    [
        (None, ValueError, "need a 'sharpv' block"),
        ([0.3], TypeError, "sharpv must be a JSON object"),
        ({}, ValueError, "option budget of method sharpv is required"),
        (
            {"budget": 0.0},
            ValueError,
            r"option budget of method sharpv must be a number in \(0, 1\]",
        ),
        ({"budget": 1.01}, ValueError, r"must be a number in \(0, 1\], got 1.01"),
        ({"budget": math.nan}, ValueError, r"must be a number in \(0, 1\], got nan"),
        ({"budget": True}, TypeError, "option budget of method sharpv must be a number"),
        ({"budget": 0.3, "min_keep": -1}, ValueError, "option min_keep of method sharpv must be"),
        ({"budget": 0.3, "min_keep": 1.0}, TypeError, "option min_keep of method sharpv must be"),
        ({"budget": 0.3, "w": math.inf}, ValueError, "option w of method sharpv must be a finite"),
        ({"budget": 0.3, "metric": "l2"}, ValueError, "option metric of method sharpv must be one"),
        ({"budget": 0.3, "mode": "adaptive"}, ValueError, "only used with mode=budget"),
        ({"budget": 0.3, "memory": True}, ValueError, "Memory SharpV is not available"),
        ({"budget": 0.3, "ratio": 0.1}, ValueError, "method sharpv has no option ratio"),
        ({"method": "fastv"}, ValueError, "method fastv acts inside the LLM"),
        ({"method": "sharpv", "mode": "adaptive"}, ValueError, "depends on the content"),
        ({"method": "nope"}, ValueError, "unknown method 'nope'"),
        ({"budget": [0.3]}, ValueError, "option budget of method sharpv must be a number"),
    ],
)
def test_bad_blocks_name_the_option(block, error, message):
    with pytest.raises(error, match=message):
        settings_from_hf_config(_cfg(block))


@pytest.mark.parametrize(
    "block", [{"budget": 1.5}, {"budget": 0.3, "w": math.nan}, {"budget": 0.3, "keep": 1}]
)
def test_errors_are_the_python_apis(block):
    """A bad block gets the registry's message, word for word (SPEC "Inside engines" 4)."""
    want = _registry_error("sharpv", {"mode": "budget", "memory": False, **block})
    with pytest.raises(MethodOptionError) as err:
        settings_from_hf_config(_cfg(block))
    assert str(err.value) == want


def test_memory_message_says_why():
    assert "block table" in MEMORY_UNSUPPORTED


def test_any_method_with_a_fixed_count_is_accepted():
    """Issue 22: any registered method whose count is fixed before the features exist."""
    s = settings_from_hf_config(_cfg({"method": "evs", "rate": 0.5}))
    assert s.video_tokens(4, 10) == 20
    frames = torch.randn(4, 10, 8, generator=torch.Generator().manual_seed(0))
    assert s.prune(frames).numel() == 20


@pytest.mark.parametrize("budget", [0.05, 0.1, 0.3, 0.5, 0.999, 1.0])
@pytest.mark.parametrize("n, f", [(1, 1), (3, 7), (8, 16), (32, 196)])
def test_prompt_count_is_the_shared_formula(budget, n, f):
    s = validate_block({"budget": budget})
    assert s.video_tokens(n, f) == budget_token_count(budget, n, f, 1)


def test_min_keep_above_the_frame_size_is_refused():
    with pytest.raises(ValueError, match="exceeds the 4 tokens"):
        validate_block({"budget": 0.5, "min_keep": 5}).video_tokens(3, 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n, f, d", [(1, 5, 8), (6, 9, 16), (11, 4, 3)])
def test_kept_indices_are_the_ops(dtype, n, f, d):
    g = torch.Generator().manual_seed(n * 100 + f)
    frames = torch.randn(n, f, d, generator=g).to(dtype)
    s = validate_block({"budget": 0.3, "min_keep": 1, "w": 0.7, "metric": "cosine"})
    got = s.prune(frames)
    want = visual_prune(frames, [0, n], mode="budget", budget=0.3, min_keep=1, w=0.7,
                        metric="cosine").indices  # fmt: skip
    assert got.dtype == torch.int64
    assert torch.equal(got, want.long())
    assert got.numel() == s.video_tokens(n, f)
    assert torch.all(got[1:] > got[:-1])  # (frame, token) order


def test_request_block_overrides_the_servers_keys():
    from sharpv.engines.vllm.settings import request_settings

    cfg = _cfg({"budget": 0.3, "w": 0.5, "metric": "cosine"})
    assert request_settings(cfg, None) == validate_block({"budget": 0.3, "w": 0.5,
                                                           "metric": "cosine"})  # fmt: skip
    assert request_settings(cfg, {"budget": 0.7}) == validate_block(
        {"budget": 0.7, "w": 0.5, "metric": "cosine"}
    )
    assert request_settings(cfg, {"metric": "dissim"})["metric"] == "dissim"


@pytest.mark.parametrize(
    "block, error, message",
    [
        (
            {"budget": 1.5},
            ValueError,
            r"option budget of method sharpv must be a number in \(0, 1\]",
        ),
        ({"memory": True}, ValueError, "Memory SharpV is not available"),
        ({"ratio": 0.1}, ValueError, "method sharpv has no option ratio"),
        (0.3, TypeError, "sharpv must be a JSON object"),
    ],
)
def test_bad_request_blocks_fail_as_bad_server_blocks(block, error, message):
    from sharpv.engines.vllm.settings import request_settings

    with pytest.raises(error, match=message):
        request_settings(_cfg({"budget": 0.3}), block)
    if isinstance(block, dict):  # the same block as the server's gives the same error
        with pytest.raises(error, match=message):
            settings_from_hf_config(_cfg({"budget": 0.3, **block}))


def test_options_row_round_trip():
    s = validate_block({"budget": 0.123456789, "min_keep": 3, "w": -0.25, "metric": "cosine"})
    assert VllmSharpVSettings.from_row(s.as_row().tolist()) == s
    e = validate_block({"method": "evs", "rate": 0.25})
    assert VllmSharpVSettings.from_row(e.as_row().tolist()) == e


def test_batched_pruning_equals_one_call_per_video():
    """Videos grouped by (shape, settings): one op call per group, the same kept rows as
    one ``visual_prune`` call per video."""
    from sharpv.engines.vllm.pruning import prune_videos, settings_per_video

    g = torch.Generator().manual_seed(0)
    shapes = [(4, 6), (3, 6), (5, 9), (2, 6), (4, 9)]
    videos = [torch.randn(n, f, 8, generator=g) for n, f in shapes]
    a = validate_block({"budget": 0.3})
    b = validate_block({"budget": 0.6, "min_keep": 2, "w": 0.5})
    rows = torch.stack([s.as_row() for s in (a, b, a, a, a)])
    settings = settings_per_video(rows, len(videos), default=b)
    groups = prune_videos(videos, settings)
    assert len(groups) == 3  # (6, a): videos 0 and 3; (6, b): 1; (9, a): 2 and 4
    seen = []
    for group in groups:
        flat = group.packed.reshape(-1, 8).index_select(0, group.indices)
        for i, rows_i in zip(group.videos, flat.split(group.sizes), strict=True):
            s = settings[i]
            want = s.prune(videos[i])
            assert torch.equal(rows_i, videos[i].reshape(-1, 8)[want])
            seen.append(i)
    assert sorted(seen) == list(range(5))
    assert settings_per_video(None, 2, default=a) == [a, a]
