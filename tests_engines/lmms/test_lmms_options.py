"""``--model_args`` of the lmms-eval ``sharpv`` model: parsing, mode selection, clear errors."""

from __future__ import annotations

import pytest

from sharpv import methods
from sharpv.config import SharpVConfig
from sharpv.engines.lmms.options import method_option_names, parse_model_args
from sharpv.engines.lmms.records import TaskMeans, dense_record, throughput_metrics
from sharpv_kernels.vocab import (
    DEFAULT_MEMORY_THRESHOLD,
    DEFAULT_MODE,
    DEFAULT_THRESHOLD,
    DEFAULT_W,
)


def test_defaults_are_the_paper_defaults():
    o = parse_model_args({"pretrained": "m"})
    assert o.config == SharpVConfig()
    assert (o.config.mode, o.config.w, o.config.threshold) == (
        DEFAULT_MODE,
        DEFAULT_W,
        DEFAULT_THRESHOLD,
    )
    assert o.config.memory_threshold == DEFAULT_MEMORY_THRESHOLD and o.config.memory
    assert o.frames_as_video
    assert (o.dense, o.max_frames_num, o.batch_size, o.device, o.dtype) == (
        False,
        32,
        1,
        None,
        "auto",
    )


@pytest.mark.parametrize("raw", [{"budget": 0.3}, {"budget": "0.3"}])
def test_budget_alone_is_an_error_as_in_every_front_end(raw):
    """No mode is inferred (issue 22): the same text as the Python API and the CLI."""
    with pytest.raises(ValueError) as e:
        parse_model_args({"pretrained": "m", **raw})
    with pytest.raises(ValueError) as same:
        SharpVConfig(budget=0.3)
    assert str(e.value) == str(same.value)
    assert "budget of method sharpv is only used with mode=budget" in str(e.value)
    c = parse_model_args({"pretrained": "m", "mode": "budget", **raw}).config
    assert (c.mode, c.budget) == ("budget", 0.3)


def test_options_of_another_mode_or_method_are_errors():
    with pytest.raises(ValueError, match="keep_ratio of method sharpv is only used with mode"):
        parse_model_args({"pretrained": "m", "mode": "budget", "budget": 0.2, "keep_ratio": 0.5})
    with pytest.raises(ValueError, match="method evs has no option budget"):
        parse_model_args({"pretrained": "m", "method": "evs", "budget": 0.3})
    c = parse_model_args({"pretrained": "m", "mode": "manual", "threshold": 1.6}).config
    assert (c.mode, c.threshold) == ("manual", 1.6)


def test_every_config_field_is_accepted_as_lmms_eval_passes_it():
    o = parse_model_args(
        {
            "pretrained": "m",
            "mode": "manual",
            "w": 1,  # lmms-eval turns "1" into an int
            "threshold": 1.6,
            "min_keep": 2,
            "metric": "cosine",
            "visual": True,
            "memory": False,  # memory_threshold would now be an unused option: an error
            "device": "cpu",
            "dtype": "float32",
            "attn_implementation": "sdpa",
            "max_frames_num": 8,
            "batch_size": 2,
            "max_batch_size": None,
            "frames_as_video": "false",
        }
    )
    c = o.config
    assert o.frames_as_video is False
    assert (c.w, c.min_keep, c.metric, c.memory, c.visual) == (1.0, 2, "cosine", False, True)
    assert (o.device, o.dtype, o.attn_implementation, o.max_frames_num, o.batch_size) == (
        "cpu",
        "float32",
        "sdpa",
        8,
        2,
    )


def test_dense_takes_no_pruning_option():
    o = parse_model_args({"pretrained": "m", "dense": True})
    assert o.dense and o.config is None
    assert parse_model_args({"pretrained": "m", "dense": "false"}).config is not None
    with pytest.raises(ValueError, match="budget"):
        parse_model_args({"pretrained": "m", "dense": True, "budget": 0.3})
    with pytest.raises(ValueError, match="method"):
        parse_model_args({"pretrained": "m", "dense": True, "method": "evs"})


@pytest.mark.parametrize(
    "method,extra",
    [
        ("uniform", {"keep_ratio": 0.3}),
        ("random_per_frame", {"seed": 3}),
        ("random_video", {"seed": 1, "mode": "budget", "budget": 0.2}),
        ("evs", {"rate": 0.7}),
        ("dycoke_ttm", {"prune_ratio": 0.5, "window": 4}),
        ("fastv", {"layer": 3, "keep_ratio": 0.3}),
    ],
)
def test_baselines_and_their_options(method, extra):
    c = parse_model_args({"pretrained": "m", "method": method, **extra}).config
    assert c.method == method
    assert {k: c.options[k] for k in extra} == extra
    assert c.memory is False  # baselines run without Memory SharpV unless asked
    assert c == SharpVConfig(method=method, method_options=extra)


def test_every_method_is_accepted():
    for method in methods.names():
        assert parse_model_args({"pretrained": "m", "method": method}).config.method == method


def test_method_option_names_come_from_the_registry():
    assert method_option_names("evs") == ("rate", "memory", "memory_threshold")
    assert set(method_option_names("dycoke_ttm")) >= {"prune_ratio", "window"}
    assert "seed" in method_option_names("random_per_frame")
    assert method_option_names("fastv") == ("layer", "keep_ratio", "memory")


@pytest.mark.parametrize(
    "args,named",
    [
        ({}, "pretrained"),
        ({"pretrained": ""}, "pretrained"),
        ({"pretrained": "m", "budget": 1.5}, "budget"),
        ({"pretrained": "m", "budget": "abc"}, "budget"),
        ({"pretrained": "m", "mode": "fast"}, "mode"),
        ({"pretrained": "m", "metric": "l2"}, "metric"),
        ({"pretrained": "m", "memory_threshold": 2}, "memory_threshold"),
        ({"pretrained": "m", "min_keep": -1}, "min_keep"),
        ({"pretrained": "m", "min_keep": 1.5}, "min_keep"),
        ({"pretrained": "m", "max_frames_num": 0}, "max_frames_num"),
        ({"pretrained": "m", "dtype": "float8"}, "dtype"),
        ({"pretrained": "m", "memory": "maybe"}, "memory"),
        ({"pretrained": "m", "memory": 1}, "memory"),
        ({"pretrained": "m", "method": "prumerge"}, "method"),
        ({"pretrained": "m", "rate": 0.7}, "rate"),  # an evs option without method=evs
        ({"pretrained": "m", "method": "evs", "seed": 1}, "seed"),
        ({"pretrained": "m", "method": "fastv", "memory": True}, "memory"),
        ({"pretrained": "m", "method": "evs", "rate": "x"}, "rate"),
        ({"pretrained": "m", "bugdet": 0.3}, "bugdet"),
    ],
)
def test_bad_model_args_name_the_argument(args, named):
    with pytest.raises(ValueError, match=named):
        parse_model_args(args)


def test_records_and_means():
    r = dense_record()
    assert (r["VR"], r["MR"], r["token_budget"]) == (1.0, 1.0, 1.0)
    m = throughput_metrics({"VR": 0.5, "MR": 0.25, "token_budget": 0.125}, "videomme")
    assert m == {
        "sharpv_VR": 0.5,
        "sharpv_VR/videomme": 0.5,
        "sharpv_MR": 0.25,
        "sharpv_MR/videomme": 0.25,
        "sharpv_token_budget": 0.125,
        "sharpv_token_budget/videomme": 0.125,
    }
    t = TaskMeans()
    t.add("a", {"VR": 0.5, "MR": 1.0, "token_budget": 0.5})
    t.add("b", {"VR": 0.1, "MR": 0.5, "token_budget": 0.05})
    t.add("b", {"VR": 0.3, "MR": 0.5, "token_budget": 0.15})
    means = t.means()
    assert means["b"]["samples"] == 2 and means["b"]["VR"] == pytest.approx(0.2)
    lines = t.lines()
    assert len(lines) == 3 and "mean over 2 tasks" in lines[-1]
    assert "VR 35.0%" in lines[-1]  # (0.5 + 0.2) / 2: the paper averages over datasets


def test_importing_sharpv_never_imports_lmms_eval():
    import subprocess
    import sys

    code = (
        "import sys, sharpv, sharpv.engines, sharpv.engines.lmms, "
        "sharpv.engines.lmms.options, sharpv.engines.lmms.records\n"
        "sharpv.SharpVConfig\n"
        "assert 'lmms_eval' not in sys.modules, 'sharpv imported lmms_eval'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
