"""The ``sharpv`` command line: ``demo`` in a subprocess, ``run`` on a tiny saved checkpoint,
and every bad input: one line on stderr, a non-zero exit, no traceback, before any heavy work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
try:
    import sharpv  # noqa: F401
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(ROOT / "python"))

from sharpv.cli import main  # noqa: E402


def sharpv_cmd(
    *args: str, cwd: Path, timeout: int = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m sharpv.cli`` on this tree (the ``sharpv`` script may be another one's)."""
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "python"), str(ROOT), env.get("PYTHONPATH", "")]
    )
    env.pop("TRITON_INTERPRET", None)
    cmd = [sys.executable, "-m", "sharpv.cli"]
    return subprocess.run(
        cmd + list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(p: subprocess.CompletedProcess, *needles: str) -> str:
    """Non-zero exit, exactly one line on stderr (``sharpv: error: ...``), no traceback,
    nothing on stdout (no work started)."""
    assert p.returncode != 0, p.stdout
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sharpv: error: "), p.stderr
    assert p.stdout == "", p.stdout
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_demo_runs_and_writes_both_pngs(tmp_path):
    out = tmp_path / "figs"
    p = sharpv_cmd("demo", "--frames", "8", "--layers", "4", "--max-new-tokens", "3",
                   "--out-dir", str(out), "--no-progress", cwd=tmp_path)  # fmt: skip
    assert p.returncode == 0, p.stderr
    text = p.stdout
    assert "RANDOM weights" in text
    for key in ("VR", "MR", "token budget", "TTFT", "time per output token", "KV cache"):
        assert key in text, key
    assert "per-frame kept fraction" in text and "SharpV keep ratio r_t" in text
    assert "per-layer visual similarity" in text
    # CPU: no allocator peak, so no peak-memory row (resident-set samples are noise)
    assert "peak memory: not measured" in text and "peak memory (" not in text
    for name in ("retention.png", "similarity.png"):
        png = out / name
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny LLaVA-OneVision + tokenizer saved with ``save_pretrained``, and a short video."""
    from sharpv.tiny_models import tiny_llava_onevision, tiny_tokenizer
    from sharpv.video import synthetic_video, write_video

    folder = tmp_path_factory.mktemp("ckpt")
    tok = tiny_tokenizer()
    tiny_llava_onevision(vocab=len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    write_video(folder / "clip.mp4", synthetic_video(10, 64), fps=5)
    (folder / "broken.mp4").write_text("not a video")
    return folder


def test_run_answers_from_a_saved_checkpoint(checkpoint, tmp_path):
    p = sharpv_cmd(
        "run",
        "--model", str(checkpoint),
        "--video", str(checkpoint / "clip.mp4"),
        "--prompt", "what happens in the video ?",
        "--frames", "6",
        "--max-new-tokens", "4",
        "--no-progress",
        cwd=tmp_path,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("answer: ")
    assert "video: 6 frames" in p.stdout
    assert "VR " in p.stdout and "MR " in p.stdout and "token budget" in p.stdout
    assert "per-frame kept fraction" in p.stdout and "SharpV keep ratio r_t" in p.stdout
    assert "TTFT" in p.stdout and "peak memory" not in p.stdout  # CPU: not measured
    assert "KV cache after prefill: " in p.stdout and "(exact; dense " in p.stdout


def test_run_dense_in_process(checkpoint, capsys):
    args = ["run", "--model", str(checkpoint), "--video", str(checkpoint / "clip.mp4")]
    rc = main([*args, "--prompt", "what ?", "--frames", "4", "--dense", "--no-progress",
               "--max-new-tokens", "3"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith("answer: ") and "dense" in out
    assert "MiB (exact)" in out and "VR " not in out


def _one_line_error(capsys) -> str:
    """The in-process counterpart of :func:`assert_one_line_error`."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("sharpv: error: ") and "\n" not in err, err
    return err


def test_run_bad_inputs_give_one_line_errors(checkpoint, tmp_path, capsys):
    clip = str(checkpoint / "clip.mp4")
    base = ["run", "--prompt", "hi", "--no-progress"]
    assert main([*base, "--model", str(checkpoint), "--video", str(tmp_path / "no.mp4")]) == 1
    assert "video not found" in _one_line_error(capsys)
    assert main([*base, "--model", str(checkpoint), "--video", str(checkpoint / "broken.mp4")]) == 1
    assert "cannot read video" in _one_line_error(capsys)
    assert main([*base, "--model", str(tmp_path / "nowhere"), "--video", clip]) == 1
    assert "cannot load model" in _one_line_error(capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*base, "--model", str(empty), "--video", clip]) == 1
    assert "cannot load model" in _one_line_error(capsys)

    from transformers import LlamaConfig, LlamaForCausalLM

    llama = tmp_path / "llama"
    LlamaForCausalLM(
        LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                    num_attention_heads=2, num_key_value_heads=2)
    ).save_pretrained(llama)  # fmt: skip
    capsys.readouterr()  # save_pretrained's progress bar
    assert main([*base, "--model", str(llama), "--video", clip]) == 1
    err = _one_line_error(capsys)
    assert "'llama'" in err and "llava_onevision" in err and "qwen2_5_vl" in err

    assert main([*base, "--model", str(checkpoint), "--video", clip, "--mode", "ratio"]) == 2
    assert "keep_ratio" in _one_line_error(capsys)


def test_run_missing_video_in_subprocess(checkpoint, tmp_path):
    p = sharpv_cmd("run", "--model", str(checkpoint), "--video", "missing.mp4", "--prompt", "x",
                   cwd=tmp_path)  # fmt: skip
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sharpv: error: video not found")


def test_version(tmp_path):
    from sharpv import __version__

    p = sharpv_cmd("--version", cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.strip().startswith(f"sharpv {__version__}"), p


# Each needs only the arguments (no torch import): one line within a few seconds.
ARG_ERRORS = [
    (["demo", "--min-keep", "500"], "option min_keep of method sharpv must be at most f = 196"),
    (["demo", "--min-keep", "-1"], "option min_keep of method sharpv must be an integer >= 0"),
    (
        ["demo", "--keep-ratio", "0.3"],
        "option keep_ratio of method sharpv is only used with mode=ratio",
    ),
    (["demo", "--budget", "0.5"], "option budget of method sharpv is only used with mode=budget"),
    (["demo", "--threshold", "-5"], "threshold of method sharpv is only used with mode=manual"),
    (["demo", "--mode", "ratio"], "option keep_ratio of method sharpv is required"),
    (
        ["demo", "--mode", "budget", "--budget", "1.5"],
        "budget of method sharpv must be a number in (0, 1]",
    ),
    (
        ["demo", "--mode", "ratio", "--keep-ratio", "0"],
        "keep_ratio of method sharpv must be a number in (0, 1]",
    ),
    (
        ["demo", "--memory-threshold", "2"],
        "memory_threshold of method sharpv must be a number in [-1, 1]",
    ),
    (["demo", "--method", "evs", "--memory-threshold", "0.3"], "only used with memory=true"),
    (["demo", "--method", "evs", "--mode", "budget", "--budget", "0.3"], "evs has no option mode"),
    (["demo", "--method", "uniform", "--threshold", "1"], "uniform has no option threshold"),
    (["demo", "--method", "evs", "--no-visual"], "evs has no option visual"),
    (["demo", "--no-visual", "--mode", "manual"], "only used with visual=true, got visual=false"),
    (["demo", "--method-arg", "rate=0.5"], "method sharpv has no option rate"),
    (["demo", "--method", "evs", "--method-arg", "rate"], "expected KEY=VALUE"),
    (["demo", "--frames", "abc"], "--frames"),
    (["demo", "--w", "nan"], "option w of method sharpv must be a finite number, got nan"),
    (["demo", "--mode", "fast"], "option mode of method sharpv must be one of"),
    (["demo", "--device", "foo"], "--device 'foo' is not a torch device"),
    (["demo", "--video", "missing.mp4"], "video not found"),
    (
        ["run", "--model", "m", "--video", "v.mp4", "--prompt", "x", "--budget", "0.5"],
        "option budget",
    ),
]


@pytest.mark.parametrize("argv, needle", ARG_ERRORS, ids=[" ".join(a) for a, _ in ARG_ERRORS])
def test_bad_arguments_fail_fast_in_one_line(argv, needle, tmp_path):
    start = time.perf_counter()
    p = sharpv_cmd(*argv, cwd=tmp_path)
    elapsed = time.perf_counter() - start
    assert_one_line_error(p, needle)
    assert elapsed < 10, f"{elapsed:.1f} s"


def test_cuda_device_without_cuda_fails_fast(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    start = time.perf_counter()
    p = sharpv_cmd("demo", "--device", "cuda", cwd=tmp_path)
    assert_one_line_error(p, "no CUDA device")
    assert time.perf_counter() - start < 10


# Checked by the method's own code on a tiny tensor, before any model work.
METHOD_ERRORS = [
    (["--method", "evs", "--method-arg", "bogus=1"], "bogus"),
    (["--method", "dycoke_ttm", "--method-arg", "prune_ratio=1.5"], "prune_ratio"),
    (["--method", "fastv", "--method-arg", "bogus=1"], "bogus"),
    (["--method", "random_video", "--method-arg", "seed=x"], "seed"),
]


@pytest.mark.parametrize("argv, needle", METHOD_ERRORS, ids=[" ".join(a) for a, _ in METHOD_ERRORS])
def test_bad_method_options_fail_before_any_model_work(argv, needle, tmp_path, capsys):
    rc = main(["demo", "--no-progress", "--out-dir", str(tmp_path), *argv])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""  # the demo did not start
    err = captured.err.strip()
    assert err.startswith("sharpv: error: ") and "\n" not in err and needle in err, err


def test_bad_method_value_in_a_subprocess(tmp_path):
    """The issue's case end to end: no traceback, one line, before the demo starts (the
    pruner's dry run imports torch: allow its import time on a busy machine)."""
    start = time.perf_counter()
    p = sharpv_cmd("demo", "--method", "evs", "--method-arg", "rate=2", cwd=tmp_path)
    elapsed = time.perf_counter() - start
    assert_one_line_error(p, "option rate of method evs must be a number in [0, 1)")
    assert elapsed < 60, f"{elapsed:.1f} s"


def test_fastv_values_checked_before_the_dense_run(tmp_path, capsys):
    """FastV's layer range needs the model: checked on it before anything is generated."""
    rc = main(["demo", "--frames", "2", "--layers", "2", "--no-progress", "--method", "fastv",
               "--method-arg", "layer=5", "--out-dir", str(tmp_path)])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 2
    assert "dense" not in captured.out and "TTFT" not in captured.out
    err = captured.err.strip()
    assert err.startswith("sharpv: error: ") and "\n" not in err and "layer" in err, err


def test_min_keep_zero_is_accepted_as_by_the_op():
    from sharpv.cli import _config, build_parser, check_options

    args = build_parser().parse_args(["demo", "--min-keep", "0"])
    check_options(args, 196)  # the command line's own range is the op's: [0, f]
    assert _config(args).min_keep == 0


def test_demo_on_a_real_video_with_a_baseline(tmp_path):
    """``--video PATH`` with the tiny random model; the table shows what the method kept."""
    from sharpv.video import synthetic_video, write_video

    clip = tmp_path / "clip.mkv"
    write_video(clip, synthetic_video(12, 96), fps=6)
    p = sharpv_cmd(
        "demo", "--video", str(clip), "--frames", "3", "--layers", "2",
        "--max-new-tokens", "2", "--no-progress", "--out-dir", str(tmp_path / "out"),
        "--method", "uniform", "--keep-ratio", "0.25",
        cwd=tmp_path,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert f"video: {clip}, 3 frames x 196 tokens" in p.stdout
    # uniform keeps ceil(0.25 * 196) = 49 tokens in every frame: kept fraction 0.25
    assert p.stdout.count("0.25/ 49") == 3, p.stdout
    assert "SharpV keep ratio r_t" not in p.stdout
    assert (tmp_path / "out" / "retention.png").is_file()


def test_run_rejects_options_before_reading_the_video_or_model(tmp_path):
    """Option errors come first: the model and video named here do not even exist."""
    argv = ["run", "--model", str(tmp_path / "nowhere"), "--video", "none.mp4", "--prompt", "x"]
    p = sharpv_cmd(*argv, "--mode", "manual", "--keep-ratio", "0.2", cwd=tmp_path)
    assert_one_line_error(p, "keep_ratio")


@pytest.mark.parametrize("offline", [True, False])
def test_hub_id_fails_fast_and_names_offline_mode(checkpoint, tmp_path, offline):
    """No network: one line within seconds (no retries) naming offline mode and local paths."""
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    else:  # a hub that refuses connections: what an offline machine sees
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"
        env["HF_HUB_OFFLINE"] = "0"
    start = time.perf_counter()
    clip = str(checkpoint / "clip.mp4")
    argv = ["run", "--model", "sharpv-test/not-a-model", "--video", clip, "--prompt", "x"]
    p = sharpv_cmd(*argv, cwd=tmp_path, env=env)
    elapsed = time.perf_counter() - start
    line = assert_one_line_error(p, "HF_HUB_OFFLINE", "--model /path/to/checkpoint")
    assert ("offline mode is on" if offline else "cannot reach the Hugging Face Hub") in line
    assert elapsed < 30, f"{elapsed:.1f} s"


def test_argument_checks_do_not_import_torch():
    """The fast path stays fast: parsing and option checks import neither torch nor triton."""
    code = (
        "import sys\n"
        "from sharpv.cli import build_parser, check_options\n"
        "check_options(build_parser().parse_args(['demo', '--mode', 'budget', "
        "'--budget', '0.3']), 196)\n"
        "print(sorted(m for m in ('torch', 'triton', 'transformers') if m in sys.modules))\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), str(ROOT)])
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_readme_visual_example_runs_as_written():
    """The README's "Visual SharpV in five lines" block, executed on this (CPU) machine."""
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Visual SharpV in five lines", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    out = scope["out"]
    assert out.tokens.shape[1] == 896 and out.counts.shape == (20,)
    assert int(out.cu_tokens[-1]) == out.tokens.shape[0]


VALID = [
    [],
    ["--mode", "budget", "--budget", "0.3"],
    ["--mode", "manual", "--threshold", "1.2"],
    ["--mode", "ratio", "--keep-ratio", "0.1", "--min-keep", "196"],
    ["--method", "random_video", "--mode", "budget", "--budget", "0.3", "--method-arg", "seed=3"],
    ["--method", "uniform", "--keep-ratio", "0.4", "--min-keep", "2"],
    ["--method", "evs", "--method-arg", "rate=0.5"],
    ["--method", "dycoke_ttm", "--method-arg", "prune_ratio=0.5"],
    ["--method", "fastv", "--method-arg", "layer=2", "--method-arg", "keep_ratio=0.5"],
    ["--no-visual"],
    ["--no-memory", "--metric", "cosine", "--w", "0.5"],
    ["--memory-threshold", "-1"],
]


@pytest.mark.parametrize("argv", VALID, ids=[" ".join(a) or "defaults" for a in VALID])
def test_valid_options_pass_every_up_front_check(argv):
    """The checks reject only what the API rejects: these all pass, pruner dry run included."""
    from sharpv.cli import _check_method, _config, build_parser, check_options

    args = build_parser().parse_args(["demo", *argv])
    check_options(args, 196)
    _check_method(_config(args), 196)


def test_cached_hub_id_runs_offline(checkpoint, tmp_path):
    """Offline with the model in the local cache: no probe, the cached copy is used."""
    commit = "0" * 40
    snapshot = tmp_path / "hf" / "hub" / "models--sharpv-test--tiny" / "snapshots" / commit
    shutil.copytree(checkpoint, snapshot)
    refs = snapshot.parents[1] / "refs"
    refs.mkdir()
    (refs / "main").write_text(commit)
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    p = sharpv_cmd("run", "--model", "sharpv-test/tiny", "--video", str(checkpoint / "clip.mp4"),
                   "--prompt", "what ?", "--frames", "4", "--max-new-tokens", "2",
                   "--no-progress", cwd=tmp_path, env=env)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("answer: ") and "video: 4 frames" in p.stdout


def test_kv_entries_after_prefill_counts_both_stages():
    import torch

    from sharpv.stats import SampleStats, kv_entries_after_prefill

    s = SampleStats(
        frame_ratios=torch.zeros(2),
        frame_counts=torch.tensor([5, 3], dtype=torch.int32),
        tokens_per_frame=torch.tensor([10, 10], dtype=torch.int32),
        memory_ratio=0.5,
    )
    # 100-token prompt, 20 video tokens of which 8 kept, in 4 layers; half their entries dropped
    assert kv_entries_after_prefill(100, 4, None) == 400
    assert kv_entries_after_prefill(100, 4, s) == 4 * (100 - 20 + 8) - 16
