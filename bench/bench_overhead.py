"""Host overhead of one ``visual_prune`` call on the way to its launches, kernels stubbed.

What a call costs the CPU besides Triton's own launch path (``JITFunction.run`` and the
driver, about 8.7-12.5 us per launch in published measurements, see ``bench/NOTES.md``):
argument checks, the ``torch.library`` dispatch, planning, buffer allocation, the header
read. Every ``@triton.jit`` kernel is replaced by a stub that does nothing (two of them write
the two-word header the host reads), so what is timed is exactly the
op's Python. Runs on CPU tensors with ``TRITON_INTERPRET=1`` set only so that the Triton
backend accepts CPU tensors; the stubs never reach the interpreter. Allocation is the CPU
allocator's, not CUDA's caching allocator (similar cost per call for these sizes), and a
CPU ``cu_frames`` is not copied to a device (on CUDA: a pinned, non-blocking copy more).

The stubs' own work (writing the header: a few tensor element writes, and taking the
launch's arguments) is timed alone as well, per row: the five launches of one call of that
row are recorded (grids, positional and keyword arguments) and replayed (``stubs_us``), and
``op_us`` = ``median_us - stubs_us`` is the op's own Python: what ``python -m bench model``
adds before the first launch (whose own cost, argument binding included, is the model's
host time per launch).

Usage: python -m bench.bench_overhead [--calls 3000] [--out bench/results/overhead-cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ["SHARPV_BACKEND"] = "triton"

import torch  # noqa: E402

import sharpv_kernels as sk  # noqa: E402
from sharpv_kernels.ops.visual_prune import kernels as VK  # noqa: E402
from sharpv_kernels.ops.visual_prune.launch import visual_prune_triton  # noqa: E402

#: LLaVA-OV-7B at 384 px: 32 frames of 196 tokens of 3584 channels, bfloat16
SHAPE = (32, 196, 3584)
MODES = {"budget": {"budget": 0.3}, "ratio": {"keep_ratio": 0.3}, "adaptive": {}}
KERNELS = ("frame_norms_kernel", "frame_scores_kernel", "frame_select_kernel",
           "video_counts_kernel", "gather_kernel")  # fmt: skip


class _Stub:
    """``kernel[grid](...)`` that does nothing but what the host reads back: pass 1 sets the
    two-word header to (30% of the tokens kept, no error), the gather kernel to its output
    size (the count a sync-free call asserts). While :attr:`recording` is a list, every
    launch appends ``(stub, grid, args, kwargs)`` to it (see :func:`_stubs_alone`)."""

    header: torch.Tensor | None = None
    recording: list | None = None

    def __init__(self, name: str) -> None:
        self.name = name

    def __getitem__(self, grid):
        fn = _set_header if self.name == "frame_norms_kernel" else (
            _count_gathered if self.name == "gather_kernel" else _nothing)  # fmt: skip
        if _Stub.recording is None:
            return fn

        def record(*args, **kwargs):
            _Stub.recording.append((self, grid, args, kwargs))
            return fn(*args, **kwargs)

        return record


def _set_header(*args, **kwargs):
    x, _Stub.header = args[0], args[5]
    _Stub.header[0], _Stub.header[1] = int(0.3 * x.shape[0] * x.shape[1]), 0


def _count_gathered(*args, **kwargs):
    _Stub.header[0] = args[6]


def _nothing(*args, **kwargs):
    return None


def _stubs_alone(call):
    """The stub launches of one ``call``, replayed alone with the very arguments the call
    passed them (their grids, positional arguments and keyword arguments): the launches' own
    cost, subtracted from the call's time. (A real launch's argument binding is part of
    Triton's launch time, which ``python -m bench model`` adds separately.)"""
    _Stub.recording = []
    try:
        call()
        launches = _Stub.recording
    finally:
        _Stub.recording = None

    def run() -> None:
        for stub, grid, args, kwargs in launches:
            stub[grid](*args, **kwargs)

    return run


def _time(fn, calls: int) -> dict[str, float]:
    for _ in range(50):
        fn()
    per = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        fn()
        per.append((time.perf_counter_ns() - t0) / 1e3)
    per.sort()
    return {"median_us": round(statistics.median(per), 2), "p10_us": round(per[len(per) // 10], 2),
            "p90_us": round(per[9 * len(per) // 10], 2)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    saved = {name: getattr(VK, name) for name in KERNELS}
    for name in KERNELS:
        setattr(VK, name, _Stub(name))
    rows = []
    try:
        x = torch.zeros(SHAPE, dtype=torch.bfloat16)
        cu_list = [0, SHAPE[0]]
        cu_t = torch.tensor(cu_list, dtype=torch.int32)
        for mode, kw in MODES.items():
            calls = {
                "visual_prune (public API, list cu_frames)":
                    lambda kw=kw, mode=mode: sk.visual_prune(x, cu_list, mode=mode, **kw),
                "visual_prune (public API, int32 tensor cu_frames)":
                    lambda kw=kw, mode=mode: sk.visual_prune(x, cu_t, mode=mode, **kw),
                "visual_prune_triton (launcher only)":
                    lambda kw=kw, mode=mode: visual_prune_triton(x, cu_t, mode=mode, **kw),
            }  # fmt: skip
            for what, fn in calls.items():
                stubs_us = _time(_stubs_alone(fn), args.calls)["median_us"]
                r = {"mode": mode, "call": what, **_time(fn, args.calls), "stubs_us": stubs_us}
                r["op_us"] = round(r["median_us"] - stubs_us, 2)
                rows.append(r)
                print(f"{mode:9s} {what:52s} median {r['median_us']:7.1f} us "
                      f"(p10 {r['p10_us']:.1f}, p90 {r['p90_us']:.1f}), stubs {stubs_us:.1f} us, "
                      f"op {r['op_us']:.1f} us")  # fmt: skip
    finally:
        for name, k in saved.items():
            setattr(VK, name, k)
    payload = {
        "what": "visual_prune host overhead per call, Triton kernels stubbed (no launch cost)",
        "shape": list(SHAPE), "dtype": "bfloat16", "calls": args.calls,
        "command": "python -m bench.bench_overhead",
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "cpus": os.cpu_count()},
        "rows": rows,
    }  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
