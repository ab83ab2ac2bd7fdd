"""The ``sharpv`` command line: ``demo`` in a subprocess, ``run`` on a tiny saved checkpoint."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
try:
    import sharpv  # noqa: F401
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(ROOT / "python"))

from sharpv.cli import main  # noqa: E402


def sharpv_cmd(*args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run the ``sharpv`` console script (``python -m sharpv.cli`` when not installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "python"), str(ROOT), env.get("PYTHONPATH", "")]
    )
    env.pop("TRITON_INTERPRET", None)
    exe = shutil.which("sharpv")
    cmd = [exe] if exe else [sys.executable, "-m", "sharpv.cli"]
    return subprocess.run(
        cmd + list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_demo_runs_and_writes_both_pngs(tmp_path):
    out = tmp_path / "figs"
    p = sharpv_cmd("demo", "--frames", "16", "--out-dir", str(out), "--no-progress", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    text = p.stdout
    assert "RANDOM weights" in text
    for key in ("VR", "MR", "token budget", "TTFT", "time per output token", "peak memory"):
        assert key in text, key
    assert "per-frame keep ratio" in text and "per-layer visual similarity" in text
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
    assert "per-frame keep ratio" in p.stdout and "TTFT" in p.stdout


def test_run_dense_in_process(checkpoint, capsys):
    args = ["run", "--model", str(checkpoint), "--video", str(checkpoint / "clip.mp4")]
    rc = main([*args, "--prompt", "what ?", "--frames", "4", "--dense", "--no-progress",
               "--max-new-tokens", "3"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith("answer: ") and "dense" in out


def _one_line_error(capsys) -> str:
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

    assert main([*base, "--model", str(checkpoint), "--video", clip, "--mode", "ratio"]) == 1
    assert "keep_ratio" in _one_line_error(capsys)


def test_run_missing_video_in_subprocess(checkpoint, tmp_path):
    p = sharpv_cmd("run", "--model", str(checkpoint), "--video", "missing.mp4", "--prompt", "x",
                   cwd=tmp_path)  # fmt: skip
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sharpv: error: video not found")
