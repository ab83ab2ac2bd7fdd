"""End to end: ``lmms-eval eval --model sharpv`` offline on the CPU, on the tiny local task.

Runs the real ``lmms-eval`` command (entry point discovery, task loading from a local
JSON file, generation, scoring, sample logging) for SharpV, the dense model and the
``uniform`` baseline, and checks the results and samples files it writes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lmms_eval")

from lmms_tiny_task import N_FRAMES, TASK  # noqa: E402

N_DOCS = 4


def _run(ckpt: Path, task_dir: Path, out: Path, model_args: str) -> tuple[dict, list[dict]]:
    exe = shutil.which("lmms-eval", path=str(Path(sys.executable).parent))
    assert exe, "lmms-eval is not installed next to this python"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    cmd = [
        exe,
        "eval",
        "--model",
        "sharpv",
        "--model_args",
        f"pretrained={ckpt},max_frames_num={N_FRAMES},device=cpu,{model_args}".rstrip(","),
        "--tasks",
        TASK,
        "--include_path",
        str(task_dir),
        "--batch_size",
        "1",
        "--log_samples",
        "--output_path",
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    log = proc.stdout[-4000:] + proc.stderr[-8000:]
    assert proc.returncode == 0, log
    results = sorted(out.rglob("*_results.json"))
    samples = sorted(out.rglob(f"*_samples_{TASK}.jsonl"))
    # lmms-eval catches some errors (a failed import among them), logs them and still exits
    # 0: a run counts only if it wrote its results
    assert results, f"lmms-eval exited 0 without writing a results file under {out}:\n{log}"
    assert len(results) == 1 and len(samples) == 1, (list(out.rglob("*")), log)
    rows = [json.loads(line) for line in samples[0].read_text().splitlines() if line.strip()]
    return json.loads(results[0].read_text()), rows


def _check_common(results: dict, rows: list[dict]) -> None:
    score = results["results"][TASK]["exact_match,none"]
    assert 0.0 <= score <= 1.0
    assert len(rows) == N_DOCS
    assert results["config"]["model"] == "sharpv"


@pytest.mark.parametrize(
    "label,model_args",
    [("sharpv", "mode=budget,budget=0.3"), ("dense", "dense=true"), ("uniform", "method=uniform")],
)
def test_lmms_eval_runs_sharpv(llava_ov_ckpt, task_dir, tmp_path, label, model_args):
    results, rows = _run(llava_ov_ckpt, task_dir, tmp_path / label, model_args)
    _check_common(results, rows)
    recs = [row["token_counts"][0]["sharpv"] for row in rows]
    assert {r["method"] for r in recs} == {label}
    thr = results["throughput"]
    for key in ("VR", "MR", "token_budget"):
        mean = sum(r[key] for r in recs) / len(recs)
        assert thr[f"avg_sharpv_{key}"] == pytest.approx(mean)
        assert thr[f"avg_sharpv_{key}/{TASK}"] == pytest.approx(mean)
    if label == "dense":
        assert all(r["token_budget"] == 1.0 for r in recs)
        return
    for r in recs:
        assert len(r["frame_ratios"]) == N_FRAMES
        assert 0.0 < r["VR"] < 1.0
        assert r["token_budget"] == pytest.approx(r["VR"] * r["MR"])
    if label == "sharpv":
        assert all(r["dropped_layers"] is not None for r in recs)
    else:
        assert all(r["MR"] == 1.0 for r in recs)
