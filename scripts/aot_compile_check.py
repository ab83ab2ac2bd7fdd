"""Compile every Triton kernel of the project for a GPU target without a GPU.

Triton's interpreter (what CI runs) does not type-check kernels the way the compiler does
(branch types, specialisation of integer arguments, unsupported ops). This script runs the
real launchers on CPU tensors with the kernels replaced by recorders, so each kernel is
compiled with exactly the arguments, constexprs and launch plan the launcher picks on that
GPU, specialised the way Triton's JIT does it (16-byte alignment of pointers,
divisibility by 16 of integer arguments): the register counts it prints are those of the
kernels that run. The compile code is shared with ``python -m bench model``
(``bench/model_compile.py``).

With ``--fp``, a few representative launches of every kernel instead, and each compiled
kernel's PTX is read for the approximate instructions the kernels must not use
(:data:`APPROX`: ``div.full.f32``, ``div.approx``, ``rsqrt.approx``, ``sqrt.approx``) and its
options for pinned contraction (``enable_fp_fusion=False``).

With ``--frames F [F ...]``, the per-frame kernels (``frame_select_kernel``, ``gather_kernel``)
of ``visual_prune`` at ``f = F`` tokens per frame (LLaVA-OV-7B's width, bf16, the GPU's
plan; adaptive/Dissim, manual/cosine and budget), each with its compile time, stack frame and
spilled bytes (local-memory stores in the SASS): their per-thread state must not grow with
``f`` (issue 19, item 9; ``tests/test_select_state.py``).

Usage: python scripts/aot_compile_check.py [--arch 90] [--fp | --frames 729 4096 16384]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # this script compiles; it never interprets
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.model_compile import (  # noqa: E402
    compile_launch,
    cubin_stats,
    local_stores,
    record_launches,
)
from sharpv_kernels.memory import kernels as MK  # noqa: E402
from sharpv_kernels.memory import launch as ML  # noqa: E402
from sharpv_kernels.visual import kernels as VK  # noqa: E402
from sharpv_kernels.visual import launch as VL  # noqa: E402
from sharpv_kernels.vocab import METRICS, VISUAL_MODES  # noqa: E402

SMS = {90: 132, 80: 108}
#: PTX of approximate float32 division and square roots: none may appear (``--fp``)
APPROX = ("div.full.f32", "div.approx.f32", "div.approx.ftz.f32", "rsqrt.approx",
          "sqrt.approx")  # fmt: skip
DTYPES = (torch.bfloat16, torch.float16, torch.float32)
MODE_KW = {"adaptive": {}, "manual": {}, "ratio": {"keep_ratio": 0.3}, "budget": {"budget": 0.3}}


def _visual_calls(sms: int) -> Iterator[tuple[str, Callable[[], object]]]:
    """Every mode and metric, 1 and 2 videos, at a small shape, LLaVA-OV-7B's in every dtype
    and a large-f shape (729 tokens per frame)."""
    cases = [((3, 7, 40), torch.float32)] + [((32, 196, 3584), dt) for dt in DTYPES]
    cases.append(((16, 729, 1152), torch.bfloat16))
    for (n, f, d), dtype in cases:
        x = torch.empty((n, f, d), dtype=dtype)
        plan = VL.plan_launch(x.shape, x.element_size(), sms)
        for cu in ([0, n], [0, 1, n]):
            cu_t = torch.tensor(cu, dtype=torch.int32)
            for mode in VISUAL_MODES:
                for metric in METRICS:
                    yield (f"visual_prune[{mode},{metric},{dtype},{(n, f, d)},B={len(cu) - 1}]",
                           lambda x=x, cu_t=cu_t, mode=mode, metric=metric, plan=plan:
                           VL.visual_prune_triton(x, cu_t, mode=mode, metric=metric,
                                                  plan=plan, **MODE_KW[mode]))  # fmt: skip
            for metric in METRICS:
                yield (f"visual_scores[{metric},{dtype},{(n, f, d)}]",
                       lambda x=x, cu_t=cu_t, metric=metric, plan=plan:
                       VL.visual_scores_triton(x, cu_t, w=1.0, metric=metric, plan=plan,
                                               check=False))  # fmt: skip


def _fp_calls(sms: int) -> Iterator[tuple[str, Callable[[], object]]]:
    """Every kernel and every metric/mode branch once, at LLaVA-OV-7B's shape in bf16."""
    x = torch.empty((32, 196, 3584), dtype=torch.bfloat16)
    plan = VL.plan_launch(x.shape, x.element_size(), sms)
    cu_t = torch.tensor([0, 16, 32], dtype=torch.int32)
    for mode, metric in (("adaptive", "dissim"), ("manual", "cosine"), ("budget", "dissim")):
        yield (f"visual_prune[{mode},{metric}]",
               lambda mode=mode, metric=metric: VL.visual_prune_triton(
                   x, cu_t, mode=mode, metric=metric, plan=plan, **MODE_KW[mode]))  # fmt: skip
    yield from list(_memory_calls(sms))[:1]
    yield from [c for c in _memory_calls(sms) if c[0].startswith("kv_compact_")][:1]


#: the kernels whose per-thread state ``--frames`` checks
PER_FRAME_KERNELS = ("frame_select_kernel", "gather_kernel")


def _frames_calls(sms: int, frames: list[int]) -> Iterator[tuple[str, Callable[[], object]]]:
    """``visual_prune`` at ``(n, f, 3584)`` bf16 for each ``f``, one frame (the narrowest
    channel slices) and 32: three mode/metric pairs."""
    for f in frames:
        for n in (1, 32):
            x = torch.empty((n, f, 3584), dtype=torch.bfloat16)
            plan = VL.plan_launch(x.shape, x.element_size(), sms)
            cu_t = torch.tensor([0, n], dtype=torch.int32)
            for mode, metric in (("adaptive", "dissim"), ("manual", "cosine"),
                                 ("budget", "dissim")):  # fmt: skip
                yield (f"visual_prune[{mode},{metric},n={n},f={f}]",
                       lambda x=x, cu_t=cu_t, mode=mode, metric=metric, plan=plan:
                       VL.visual_prune_triton(x, cu_t, mode=mode, metric=metric, plan=plan,
                                              **MODE_KW[mode]))  # fmt: skip


def _fp_problems(launch, compiled) -> list[str]:
    """What breaks the pinned floating point in one compiled kernel."""
    ptx = compiled.asm["ptx"]
    found = [f"{insn} x{ptx.count(insn)}" for insn in APPROX if insn in ptx]
    if launch.kwargs.get("enable_fp_fusion") is not False:
        found.append("launched without enable_fp_fusion=False")
    return found


def _memory_calls(sms: int) -> Iterator[tuple[str, Callable[[], object]]]:
    """Similarity for Qwen2 hidden sizes, compaction for head dims 64 and 128."""
    for dtype in DTYPES:
        for d in (64, 3584):
            h = torch.empty((1, 300, d), dtype=dtype)
            out = torch.empty((4, 1), dtype=torch.float32)
            for idx in (torch.int32, torch.int64):
                s, n = torch.tensor([3], dtype=idx), torch.tensor([200], dtype=idx)
                plan = ML.plan_similarity(tuple(h.shape), h.element_size(), sms)
                yield (f"layer_similarity[{dtype},d={d},{idx}]",
                       lambda h=h, s=s, n=n, out=out, plan=plan:
                       ML.layer_similarity_triton(h, h, s, n, out, 1, plan=plan))  # fmt: skip
        for hd in (64, 128):
            keys = [torch.empty((1, 2, 50, hd), dtype=dtype) for _ in range(3)]
            values = [torch.empty_like(k) for k in keys]
            sim = torch.zeros((3, 1), dtype=torch.float32)
            for len_t in (torch.int32, torch.int64):
                lengths = torch.full((3, 1), 50, dtype=len_t)
                s, n = torch.tensor([3]), torch.tensor([20])
                yield (f"kv_compact_[{dtype},D={hd},lengths={len_t}]",
                       lambda k=keys, v=values, ln=lengths, s=s, n=n, sim=sim:
                       ML.kv_compact_triton(k, v, ln, s, n, sim, 0.2))  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--arch", type=int, default=90, help="CUDA compute capability, e.g. 80, 90")
    p.add_argument("--fp", action="store_true", help="check the PTX for approximate maths")
    p.add_argument("--frames", type=int, nargs="+", help="per-frame kernels at these f")
    args = p.parse_args()
    sms = SMS.get(args.arch, 108)
    seen: set[str] = set()
    failures = 0
    if args.frames:
        calls = list(_frames_calls(sms, args.frames))
    elif args.fp:
        calls = list(_fp_calls(sms))
    else:
        calls = list(_visual_calls(sms)) + list(_memory_calls(sms))
    for call_name, call in calls:
        with record_launches(VK, MK) as log:
            call()
        for launch in log:
            if args.frames and launch.name not in PER_FRAME_KERNELS:
                continue
            key = repr((launch.name, {k: v for k, v in launch.kwargs.items()},
                        [str(a.dtype) if isinstance(a, torch.Tensor) else
                         ("D" if isinstance(a, int) and a % 16 == 0 else
                          "1" if a == 1 else type(a).__name__) for a in launch.args]))  # fmt: skip
            if args.frames:  # each f reported, even where its kernels are those of another f
                key += call_name.split(",f=")[-1]
            if key in seen:
                continue
            seen.add(key)
            name = f"{launch.name} from {call_name}"
            try:
                t0 = time.perf_counter()
                compiled = compile_launch(launch, args.arch)
                seconds = time.perf_counter() - t0
                if args.fp and (problems := _fp_problems(launch, compiled)):
                    raise AssertionError("; ".join(problems))
                st = cubin_stats(compiled)
                print(f"ok   {name}: warps={launch.num_warps} regs={st.registers} "
                      f"stack={st.stack_bytes}B spills={local_stores(compiled)}B "
                      f"shared={st.shared_bytes}B compile={seconds:.1f}s", flush=True)  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - report every kernel
                failures += 1
                print(f"FAIL {name}: {type(exc).__name__}: {str(exc)[:2000]}", flush=True)
    print(f"{len(seen)} kernels compiled for sm_{args.arch}, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
