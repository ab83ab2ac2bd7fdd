"""Shared benchmark plumbing: timing, environment record, copy bandwidth, JSON output.

Timing: warm-up runs, then the median of many timed runs; CUDA events on a GPU (one
synchronisation per timed run), ``time.perf_counter`` on CPU.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_fn(
    fn: Callable[[], Any], device: str, *, warmup: int = 3, reps: int = 20, max_s: float = 20.0
) -> dict[str, float]:
    """Median/min/max seconds of ``fn()`` after ``warmup`` calls (fewer reps if slow)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times: list[float] = []
    budget_end = time.perf_counter() + max_s
    for _ in range(reps):
        if device.startswith("cuda"):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        if time.perf_counter() > budget_end and len(times) >= 3:
            break
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "reps": len(times),
    }


def copy_bandwidth(device: str, nbytes: int = 1 << 30) -> float | None:
    """Measured device-to-device copy bandwidth in bytes/s (read + write), GPU only."""
    if not device.startswith("cuda"):
        return None
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    t = time_fn(lambda: dst.copy_(src), device, warmup=5, reps=30)
    return 2 * nbytes / t["median_s"]


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent,
        )  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def environment(device: str) -> dict[str, Any]:
    """Device name, driver, library versions and git commit for a result file."""
    import triton

    env: dict[str, Any] = {
        "device": device,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "git_commit": _git_commit(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "triton_interpret": os.environ.get("TRITON_INTERPRET", "0"),
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        env["device_name"] = props.name
        env["cuda"] = torch.version.cuda
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            env["driver"] = smi.stdout.strip().splitlines()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):
            env["driver"] = "unknown"
    else:
        env["device_name"] = platform.processor() or platform.machine()
        env["cpu_threads"] = torch.get_num_threads()
    return env


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as JSON to ``bench/results/<name>-<device>-<timestamp>.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    dev = payload["env"]["device"].split(":")[0]
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    path = RESULTS_DIR / f"{name}-{dev}-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
