"""Smoke test of the benchmark suite (``python -m bench``) on tiny shapes: every op and
provider runs, the e2e harness runs every method, and the report renders both."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
try:
    import sharpv  # noqa: F401
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(ROOT / "python"))

from bench import bench_e2e, bench_ops, report  # noqa: E402


def test_ops_smoke(monkeypatch, tmp_path):
    monkeypatch.setitem(bench_ops.SHAPES, "tiny", (4, 16, 32))
    monkeypatch.setitem(bench_ops.LM_DIMS, "tiny", (32, 2, 8, 4))
    result = bench_ops.run(
        device="cpu", dtype=torch.float32, visual_shapes=["tiny"], lm_cases=[("tiny", 40)],
        ops=list(bench_ops.OPS), providers=["naive", "eager", "gather", "sharpv"],
        modes=list(bench_ops.MODES), naive=True, reps=2,
    )  # fmt: skip
    rows = result["rows"]
    assert not [r for r in rows if "error" in r]
    ops = {(r["op"], r["provider"]) for r in rows}
    for op in bench_ops.OPS:
        assert (op, "sharpv") in ops and (op, "eager") in ops
    assert ("kv_compact_", "gather") in ops
    assert all(r["median_s"] > 0 and r["bytes_floor"] > 0 for r in rows)
    result["command"] = "test"
    path = tmp_path / "ops-cpu-test.json"
    path.write_text(json.dumps(result))
    md, md_path, png = report.render(path, tmp_path)
    assert "| visual_prune | tiny/adaptive | sharpv |" in md and png.stat().st_size > 0


def test_e2e_smoke(monkeypatch, tmp_path):
    small = dict(hidden=64, heads=4, kv_heads=2, inter=128, vocab=256, layers=4, tie=True)
    monkeypatch.setitem(bench_e2e.LM, "0.5b", small)
    preset = dict(device="cpu", dtype="float32", models=["0.5b"], layers=4, tower="tiny",
                  cases=[(4, 2)], new_tokens=2, repeats=1)  # fmt: skip
    result = bench_e2e.run(preset, list(bench_e2e.METHODS), echo=lambda s: None)
    rows = {r["method"]: r for r in result["rows"]}
    assert set(rows) == set(bench_e2e.METHODS)
    assert rows["dense"]["VR"] == 1.0 and rows["fastv"]["VR"] == 1.0
    assert rows["fastv"]["MR"] < 1.0
    a = rows["sharpv_adaptive"]
    assert rows["random_per_frame"]["VR"] == pytest.approx(a["VR"])
    assert rows["random_video"]["VR"] == pytest.approx(a["VR"])
    assert rows["fastv"]["prefill_tflops"] < rows["dense"]["prefill_tflops"]
    assert all(r["ttft_s"] > 0 for r in rows.values())
    # pruning time comes from apply_sharpv's on_stage callback (dense has no SharpV call)
    assert a["prune_s"] > 0 and rows["uniform"]["prune_s"] > 0
    assert rows["dense"]["prune_s"] == 0
    assert len(result["goals"]) == 1
    result.update(env={"device": "cpu"}, preset=preset, command="test")
    path = tmp_path / "e2e-cpu-test.json"
    path.write_text(json.dumps(result))
    md, _, png = report.render(path, tmp_path)
    assert "SharpV (Adaptive)" in md and "FastV" in md and png.stat().st_size > 0
