"""The method registry (issue 22): one option schema, the same verdict in every front end,
built-in and user methods registered the same way, entry-point plug-ins, the worked example."""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import sharpv
from sharpv import methods
from sharpv.methods import REQUIRED, Method, MethodOptionError, Option

ROOT = Path(__file__).resolve().parents[1]
BUILT_INS = {
    "sharpv": "both",
    "memory_sharpv": "intra-llm",
    "dense": "pre-llm",
    "uniform": "pre-llm",
    "random_per_frame": "pre-llm",
    "random_video": "pre-llm",
    "evs": "pre-llm",
    "dycoke_ttm": "pre-llm",
    "fastv": "intra-llm",
}


def _example():
    """``examples/every_kth.py`` imported as ``every_kth`` (it registers the method; the
    vLLM lane imports it under the same name through ``SHARPV_METHOD_MODULES``)."""
    if str(ROOT / "examples") not in sys.path:
        sys.path.insert(0, str(ROOT / "examples"))
    return importlib.import_module("every_kth")


# --------------------------------------------------------------------------- registry
def test_built_ins_are_registered_with_their_stage():
    for name, stage in BUILT_INS.items():
        assert methods.get(name).stage == stage
    assert tuple(methods.names())[: len(BUILT_INS)] == tuple(BUILT_INS)


def test_register_rejects_duplicates_and_bad_declarations():
    m = Method("tmp_dup", "pre-llm", prune=lambda x, cu: None)
    methods.register(m)
    try:
        methods.register(m)  # the same object again is a no-op
        with pytest.raises(ValueError, match="already registered"):
            methods.register(Method("tmp_dup", "pre-llm", prune=lambda x, cu: None))
    finally:
        methods.unregister("tmp_dup")
    with pytest.raises(TypeError):
        methods.register("tmp")
    with pytest.raises(ValueError, match="stage"):
        Method("tmp", "later", prune=lambda x, cu: None)
    with pytest.raises(ValueError, match="needs prune"):
        Method("tmp", "pre-llm")
    with pytest.raises(ValueError, match="must be declared before"):
        Method("tmp", "pre-llm", prune=print, options=(Option("a", int, 1, used_with={"b": 1}),))
    with pytest.raises(MethodOptionError, match="option a of method tmp"):
        Method("tmp", "pre-llm", prune=print, options=(Option("a", int, 0, low=1),))


def test_schema_defaults_are_the_functions_defaults():
    """A baseline's function and its method declare the same defaults."""
    from sharpv import baselines as bl

    for name, fn in [
        ("uniform", bl.uniform),
        ("evs", bl.evs),
        ("dycoke_ttm", bl.dycoke_ttm),
        ("fastv", bl.fastv),
        ("random_video", bl.random_video),
    ]:
        params = inspect.signature(fn).parameters
        for opt in methods.get(name).options:
            if opt.name in params and params[opt.name].default is not inspect.Parameter.empty:
                assert params[opt.name].default == opt.default, (name, opt.name)


# --------------------------------------------------------------------------- validation
TOY = Method(
    "toy",
    "pre-llm",
    options=(
        Option("a", float, 0.5, low=0.0, high=1.0, low_open=True),
        Option("b", float, None, low=0.0, high=1.0, high_open=True),
        Option("kind", str, "x", choices=("x", "y")),
        Option("c", int, REQUIRED, low=2, used_with={"kind": "y"}),
        Option("flag", bool, False),
    ),
    excludes=(("a", "b"),),
    prune=lambda features, cu_frames, **o: None,
)


@pytest.mark.parametrize(
    "opts, message",
    [
        ({"z": 1}, "method toy has no option z (its options: a, b, kind, c, flag)"),
        ({"a": 0.2, "b": 0.1}, "options a and b of method toy exclude each other; give one"),
        ({"a": 0}, "option a of method toy must be a number in (0, 1], got 0.0"),
        ({"b": 1}, "option b of method toy must be a number in [0, 1), got 1.0"),
        ({"a": "nan"}, "option a of method toy must be a number in (0, 1], got nan"),
        ({"a": True}, "option a of method toy must be a number in (0, 1], got True"),
        ({"kind": "z"}, "option kind of method toy must be one of x, y, got 'z'"),
        ({"c": 3}, "option c of method toy is only used with kind=y, got kind=x"),
        ({"kind": "y"}, "option c of method toy is required with kind=y: an integer >= 2"),
        ({"kind": "y", "c": "2.5"}, "option c of method toy must be an integer >= 2, got '2.5'"),
        ({"flag": 1}, "option flag of method toy must be true or false, got 1"),
    ],
)
def test_each_rule_names_the_option(opts, message):
    with pytest.raises(MethodOptionError) as e:
        TOY.validate(opts)
    assert str(e.value) == message
    assert isinstance(e.value, ValueError)


def test_strings_are_coerced_and_none_is_not_given():
    r = TOY.validate({"a": "0.25", "kind": "y", "c": "3", "flag": "TRUE", "b": None})
    assert dict(r) == {"a": 0.25, "b": None, "kind": "y", "c": 3, "flag": True}
    assert r.given == {"a", "kind", "c", "flag"}
    with pytest.raises(MethodOptionError, match="finite"):
        methods.validate("sharpv", {"w": "inf"})


def test_unknown_method_lists_the_registered_ones():
    with pytest.raises(MethodOptionError, match="unknown method 'nope': method must be one of"):
        methods.validate("nope", {})


# --------------------------------------------------------------------------- front ends
BAD = [
    ("sharpv", {"budget": 0.3}),
    ("sharpv", {"mode": "budget", "budget": 1.5}),
    ("sharpv", {"mode": "budget", "budget": 0.3, "keep_ratio": 0.3}),
    ("sharpv", {"w": float("nan")}),
    ("sharpv", {"mode": "fast"}),
    ("sharpv", {"memory": False, "memory_threshold": 0.5}),
    ("sharpv", {"min_keep": "x"}),
    ("evs", {"budget": 0.3}),
    ("evs", {"rate": 1.0}),
    ("dycoke_ttm", {"window": 1}),
    ("fastv", {"memory": True}),
    ("uniform", {"threshold": 1.0}),
    ("nope", {}),
    ("every_kth", {"k": 0}),
]


def _text(v):
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


@pytest.fixture
def no_model(monkeypatch):
    """Every way the front ends build or load a model raises."""

    def boom(*a, **k):
        raise AssertionError("a model was constructed")

    import sharpv.adapters
    import sharpv.cli
    import sharpv.tiny_models

    monkeypatch.setattr(sharpv.tiny_models, "tiny_llava_onevision", boom)
    monkeypatch.setattr(sharpv.cli, "_load_model", boom)
    monkeypatch.setattr(sharpv.cli, "_load_config", boom)
    monkeypatch.setattr(sharpv.adapters, "load_model", boom)


@pytest.mark.parametrize("name, opts", BAD, ids=[f"{n}-{o}" for n, o in BAD])
def test_same_error_in_every_front_end_before_any_model(name, opts, no_model, capsys, tmp_path):
    _example()
    from sharpv.cli import main
    from sharpv.engines.lmms.options import parse_model_args

    with pytest.raises(MethodOptionError) as reg:
        methods.validate(name, opts)
    expected = str(reg.value)
    assert any(k in expected for k in opts) or name == "nope"

    with pytest.raises(MethodOptionError) as api:
        sharpv.SharpVConfig(method=name, method_options=opts)
    assert str(api.value) == expected
    with pytest.raises(MethodOptionError) as applied:  # before the model is even looked at
        sharpv.apply_sharpv(object(), method=name, **opts)
    assert str(applied.value) == expected

    with pytest.raises(ValueError) as lmms:
        parse_model_args({"pretrained": "m", "method": name, **opts})
    assert str(lmms.value) == expected

    argv = ["--method", name]
    for k, v in opts.items():
        argv += ["--opt", f"{k}={_text(v)}"]
    for cmd in (["demo", "--no-progress", "--out-dir", str(tmp_path)],
                ["run", "--model", "m", "--video", "v.mp4", "--prompt", "x"]):  # fmt: skip
        assert main([*cmd, *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"sharpv: error: {expected}"


def test_cli_shortcut_flags_give_the_registry_text(capsys, tmp_path):
    from sharpv.cli import main

    assert main(["demo", "--out-dir", str(tmp_path), "--budget", "0.3"]) == 2
    with pytest.raises(MethodOptionError) as e:
        sharpv.SharpVConfig(budget=0.3)
    assert capsys.readouterr().err.strip() == f"sharpv: error: {e.value}"
    assert main(["demo", "--out-dir", str(tmp_path), "--w", "2", "--opt", "w=3"]) == 2
    assert "option w of method sharpv is given twice" in capsys.readouterr().err


def test_sharpv_methods_lists_every_method_and_option(capsys):
    from sharpv.cli import main

    _example()
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in methods.names():
        assert f"\n{name} (" in "\n" + out
        for opt in methods.get(name).schema:
            assert f"    {opt.name}: " in out
    assert "budget: a number in (0, 1] (required; only with visual=true, mode=budget)" in out
    assert main(["methods", "nope"]) == 2


def test_config_keeps_its_call_forms():
    c = sharpv.SharpVConfig(mode="budget", budget=0.3)
    assert c == sharpv.SharpVConfig(method_options={"mode": "budget", "budget": "0.3"})
    assert c.options["budget"] == 0.3 and c.memory and c.visual
    e = sharpv.SharpVConfig(method="evs", memory=False, method_options={"rate": 0.5})
    assert (e.memory, e.mode, e.options["rate"]) == (False, None, 0.5)
    with pytest.raises(MethodOptionError, match="given twice"):
        sharpv.SharpVConfig(budget=0.3, method_options={"budget": 0.2, "mode": "budget"})
    with pytest.raises(TypeError, match="either config"):
        sharpv.apply_sharpv(object(), sharpv.SharpVConfig(), method="evs")


# --------------------------------------------------------------------------- token counts
@pytest.mark.parametrize(
    "name, opts",
    [
        ("sharpv", {"mode": "budget", "budget": 0.3, "memory": False}),
        ("sharpv", {"mode": "ratio", "keep_ratio": 0.4, "min_keep": 2, "memory": False}),
        ("dense", {}),
        ("uniform", {"keep_ratio": 0.25}),
        ("random_video", {"mode": "budget", "budget": 0.5}),
        ("evs", {"rate": 0.6}),
        ("dycoke_ttm", {"prune_ratio": 0.5}),
        ("every_kth", {"k": 3}),
    ],
)
def test_engine_token_count_is_what_the_method_keeps(name, opts):
    _example()
    em = methods.engine_options(name, opts)
    prune = em.method.pruner(em.options)
    g = torch.Generator().manual_seed(0)
    for n in (1, 5, 6):
        x = torch.randn(n, 10, 8, generator=g)
        assert int(prune(x, [0, n]).cu_tokens[-1]) == em.token_count(n, 10), (name, n)


def test_engine_options_refuses_content_dependent_counts_and_intra_llm_stages():
    with pytest.raises(MethodOptionError, match="depends on the content"):
        methods.engine_options("sharpv", {"memory": False})
    with pytest.raises(MethodOptionError, match="inside the LLM"):
        methods.engine_options("sharpv", {"mode": "budget", "budget": 0.3})
    with pytest.raises(MethodOptionError, match="inside the LLM"):
        methods.engine_options("fastv", {})
    with pytest.raises(MethodOptionError, match="budget of method sharpv must be"):
        methods.engine_options("sharpv", {"mode": "budget", "budget": 2, "memory": False})


# --------------------------------------------------------------------------- worked example
def test_example_method_through_apply_sharpv():
    _example()
    from sharpv.tiny_models import BOS_ID, VIDEO_ID, tiny_llava_onevision

    model = tiny_llava_onevision(layers=2, seed=0)
    ids = torch.tensor([[BOS_ID] + [VIDEO_ID] * (3 * 4 + 1)])  # 3 frames of 4 tokens, newline
    pixels = torch.randn(1, 3, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    sharpv.apply_sharpv(model, method="every_kth", k=2)
    with torch.no_grad():
        out = model.generate(input_ids=ids, pixel_values_videos=pixels, max_new_tokens=2,
                             do_sample=False)  # fmt: skip
    assert out.shape[1] == ids.shape[1] + 2
    s = model.sharpv_stats[0]
    assert s.frame_counts.tolist() == [2, 2, 2] and s.visual_ratio == 0.5
    assert model.sharpv_config.options == methods.validate("every_kth", {"k": 2})


def test_example_method_through_the_cli(tmp_path, capsys):
    _example()
    from sharpv.cli import main

    rc = main(["demo", "--method", "every_kth", "--opt", "k=2", "--frames", "2", "--layers", "2",
               "--max-new-tokens", "2", "--no-progress", "--out-dir", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "config: SharpVConfig(method='every_kth', options={'k': 2})" in out
    assert "VR (visual tokens kept)           100.0%         50.0%" in out


def test_example_method_through_the_lmms_options():
    _example()
    from sharpv.engines.lmms.options import parse_model_args

    o = parse_model_args({"pretrained": "m", "method": "every_kth", "k": "3"})
    assert o.config.method == "every_kth" and o.config.options["k"] == 3


# --------------------------------------------------------------------------- entry points
PLUGIN = """
from sharpv.methods import PRE_LLM, Method, Option

def _half(features, cu_frames, *, keep):
    from sharpv.baselines import uniform
    return uniform(features, cu_frames, keep_ratio=keep)

METHOD = Method("half_plugin", PRE_LLM, options=(Option("keep", float, 0.5, low=0, high=1,
                low_open=True),), prune=_half)
"""


def _dist(site: Path, name: str, value: str, module: str | None = None) -> None:
    if module is not None:
        (site / f"{name}.py").write_text(textwrap.dedent(module))
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[sharpv.methods]\n{value}\n")


def test_entry_point_plugin_is_loaded_lazily_once(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _dist(site, "fake_plugin", "half_plugin = fake_plugin:METHOD", PLUGIN)
    _dist(site, "broken_plugin", "broken = broken_plugin:NOTHING", "X = 1\n")
    code = textwrap.dedent(
        """
        import sys, warnings
        import sharpv.methods as m
        print("imported" if "fake_plugin" in sys.modules else "lazy")
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            print(m.get("half_plugin").stage, dict(m.validate("half_plugin", {"keep": "0.25"})))
            print(len(w), "broken" in str(w[0].message) if w else None)
        m.names()
        try:
            m.validate("half_plugin", {"keep": 2})
        except ValueError as e:
            print(e)
        print("torch" in sys.modules)
        """
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT / "python"), str(ROOT)])
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "lazy"
    assert lines[1] == "pre-llm {'keep': 0.25}"
    assert lines[2] == "1 True"  # the broken plug-in warns once; the others still load
    assert lines[3] == "option keep of method half_plugin must be a number in (0, 1], got 2.0"
    assert lines[4] == "False"  # the registry and a plug-in's declaration import no torch


def test_registry_imports_no_torch():
    code = (
        "import sys, sharpv.methods as m; m.validate('sharpv', {}); print('torch' in sys.modules)"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), str(ROOT)])
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "False", p.stderr
