"""``python -m bench model``: a static performance model of every Triton kernel (no GPU needed).

For each op and benchmark shape it runs the real launcher on CPU tensors with the kernels
replaced by recorders (``bench/model_compile.py``), compiles every recorded launch for sm_90
(H100) and sm_80 (A100) with the specialisation the JIT applies, reads registers, shared
memory and SASS from the cubin, and predicts a time from the bytes each kernel moves and the
stated assumptions of ``bench/model_gpu.py``. **Predictions, not measurements.**

Per kernel (one row each): ``registers``, ``shared_bytes``, ``ctas``, ``ctas_per_sm``,
``waves``, ``occupancy`` (resident warps / 64), SASS instructions of the innermost loop that
loads global memory and its loads, ``bytes`` from HBM, ``floor_us`` (the op's floor, on the
total row), ``predicted_us`` (with L2 reuse) and ``predicted_us_no_l2``. A row with
``kernel == "(total)"`` adds the kernels and the idle gaps of one op call.

Usage::

    python -m bench model                    # all ops and shapes, H100 and A100
    python -m bench model --gpus h100 --ops visual_prune --shapes llava-ov-7b

Examples:
    >>> from bench.model import main
    >>> main(["--ops", "layer_similarity", "--shapes", "llava-ov-0.5b"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import datetime as _dt
import inspect
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .model_compile import Launch, compile_launch, cubin_stats, record_launches
from .model_gpu import ASSUMPTIONS, GPU, GPUS
from .visual_cases import SHAPES as VISUAL_SHAPES

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: fraction of the visual tokens kept, for data-dependent sizes: the paper's VR of 32 %
#: (SharpV adaptive, LLaVA-OV-0.5B) for adaptive mode, and the budget of the budget case
KEEP_ADAPTIVE = 0.32
BUDGET = 0.3

#: Memory SharpV shapes: LLaVA-OV (Qwen2) dims, a budget-mode prompt of 32 x 196 x 0.3 = 1882
#: visual tokens between 16 and 48 text tokens, 61 % of the layers dropped (MR 39 %).
MEMORY_SHAPES: dict[str, dict[str, int]] = {
    "llava-ov-0.5b": dict(hidden=896, layers=24, kv_heads=2, head_dim=64, visual=1882),
    "llava-ov-7b": dict(hidden=3584, layers=28, kv_heads=4, head_dim=128, visual=1882),
}
TEXT_BEFORE, TEXT_AFTER = 16, 48
DROP_FRACTION = 0.61
OPS = ("visual_prune", "visual_prune_budget", "layer_similarity", "kv_compact_")


@dataclass
class Traffic:
    """What one kernel launch moves and how long each CTA's main loop is."""

    hbm: float  # bytes from/to HBM, counting re-reads of recently read bytes as HBM
    reread: float = 0.0  # of ``hbm``, bytes re-read soon after an earlier read (L2 candidates)
    rounds: int = 1  # iterations of each CTA's main loop (dependent load rounds)
    hot: bool = False  # reads only small data the previous kernels just wrote (L2 latency)
    steps: int = 0  # dependent arithmetic steps of one CTA (budget bisection), see ASSUMPTIONS


# --------------------------------------------------------------------------- per-kernel bytes


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _cdiv(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def traffic(launch: Launch, keep: float) -> Traffic:
    """Bytes and loop length of one launch; ``keep`` is the kept fraction of the tokens."""
    a = launch.named
    name = launch.name
    kw = launch.kwargs
    if name in ("frame_stats_kernel",):  # before the rebuild: one pass, prev frame re-read
        x = _nbytes(a["x_ptr"][:, :, : a["d"]])
        out = _nbytes(a["part_ptr"]) + _nbytes(a["msq_ptr"])
        return Traffic(2 * x + out, reread=x, rounds=_cdiv(a["d_split"], kw["BLOCK_D"]))
    if name == "frame_norms_kernel":  # pass 1: norms and column sums
        x = _nbytes(a["x_ptr"][:, :, : a["d"]])
        out = sum(_nbytes(a[k]) for k in ("nrm_ptr", "col_ptr", "msq_ptr"))
        return Traffic(x + out, rounds=_cdiv(a["f"], kw["BLOCK_T"]))
    if name == "frame_scores_kernel":  # pass 2: unit-vector differences, frames in reverse
        x = _nbytes(a["x_ptr"][:, :, : a["d"]])
        small = sum(_nbytes(a[k]) for k in ("nrm_ptr", "col_ptr", "msq_ptr", "part_ptr"))
        if "frames_per_prog" in a:  # chunks of frames, two per iteration, + the frame before
            n, chunks = a["x_ptr"].shape[0], launch.grid[2]
            walk = min(a["frames_per_prog"], n) + (chunks > 1)  # frames per program
            extra = (chunks - 1) * x / n
            return Traffic(x + extra + small, reread=x + extra, rounds=_cdiv(walk, 2))
        n_frames = a["x_ptr"].shape[0] // max(1, launch.grid[2])  # frames per video
        return Traffic(x + small, reread=x, rounds=n_frames)
    if name == "frame_select_kernel":
        big = [k for k in ("part_ptr", "nrm_ptr") if k in a]
        rd = sum(_nbytes(a[k]) for k in big)
        if "nx2" in str(kw):  # pragma: no cover - placeholder for other layouts
            rd += 0
        if name == "frame_select_kernel" and "msq_ptr" in a and "nrm_ptr" not in a:
            rd *= 2  # before the rebuild: the previous frame's partials are read again
        outs = [k for k in ("i_ptr", "r_ptr", "rank_ptr", "cnt_ptr") if k in a]
        if kw.get("STORE_ST"):
            outs += ["s_ptr", "tt_ptr"]
        wr = sum(_nbytes(a[k]) for k in outs)
        f = a["f"]
        if "BLOCK_S2" in kw:  # after the rebuild: partials in 2-D loads, rank loop on L1
            rounds = 2
        else:
            rounds = a.get("n_split", 1) + _cdiv(f, kw.get("BLOCK_J", f))
        return Traffic(rd + wr, rounds=rounds, hot=True)
    if name == "video_counts_kernel":
        small = sum(_nbytes(v) for v in a.values() if isinstance(v, torch.Tensor))
        chunks = _cdiv(a["n_frames"], kw["BLOCK_N"])
        steps = kw["STEPS"] * chunks if kw["MODE"] == 3 else 0  # budget bisection
        return Traffic(small, rounds=chunks, hot=True, steps=steps)
    if name == "gather_kernel":
        x = a["x_ptr"]
        n, f = x.shape[0], x.shape[1]
        d = a["d"]
        rows = keep * n * f
        moved = 2 * rows * d * x.element_size() + rows * 8  # kept rows in and out, indices
        small = _nbytes(a["rank_ptr"]) + 4 * n
        per_prog = a.get("d_per_prog", kw.get("D_PER_PROG", d))
        rounds = _cdiv(per_prog, kw["BLOCK_D"])
        if "BLOCK_R" in kw:  # after the rebuild: chunks of kept rows, each a dense tile
            rounds *= _cdiv(math.ceil(keep * f), kw["BLOCK_R"])
        if kw.get("MODE") == 3 and "STEPS" in kw:  # budget bisection inside every CTA
            rounds += kw["STEPS"] * _cdiv(n, kw["BLOCK_N"])
        return Traffic(moved + small, rounds=rounds)
    if name == "_sim_partial_kernel":
        span = int(a["len_ptr"].max()) if a["len_ptr"].numel() else 0
        bsz = a["h_ptr"].shape[0]
        d = a["D"]
        rows = bsz * span
        moved = rows * d * (a["h_ptr"].element_size() + a["r_ptr"].element_size())
        return Traffic(moved + _nbytes(a["part_ptr"]), rounds=_cdiv(d, kw["BLOCK_D"]))
    if name == "_sim_finish_kernel":
        return Traffic(_nbytes(a["part_ptr"]) + _nbytes(a["out_ptr"]), hot=True)
    if name == "_kv_compact_kernel":
        moved = a["_moved_bytes"]
        return Traffic(moved, rounds=max(1, _cdiv(a["_moved_rows"], kw["BLOCK_T"])))
    return Traffic(sum(_nbytes(v) for v in a.values() if isinstance(v, torch.Tensor)))


# --------------------------------------------------------------------------- timing model


def occupancy(gpu: GPU, regs: int, warps: int, shared: int) -> int:
    """Resident CTAs per SM from registers (256-register warp granules), warps and shared."""
    per_warp = _cdiv(max(regs, 1) * 32, 256) * 256
    by_regs = gpu.regs_per_sm // (per_warp * warps)
    by_warps = gpu.max_warps_per_sm // warps
    by_shared = gpu.shared_per_sm // (shared + 1024) if shared else gpu.max_ctas_per_sm
    return max(0, min(by_regs, by_warps, by_shared, gpu.max_ctas_per_sm))


def kernel_time_us(gpu: GPU, launch: Launch, stats, t: Traffic, per_sm: int, use_l2: bool) -> float:
    """Predicted duration of one kernel (no launch gap), microseconds."""
    ctas = launch.ctas
    slots = max(1, per_sm * gpu.sms)
    hbm = t.hbm - (min(t.reread, gpu.l2_reuse_bytes) if use_l2 else 0.0)
    sm_bw = float(ASSUMPTIONS["per_sm_bw_share"]) * gpu.copy_bw / gpu.sms
    # bandwidth: full waves at the copy bandwidth, the last partial wave on its SMs only
    per_cta = hbm / ctas
    full = (ctas // slots) * slots
    last = ctas - full
    t_bw = full * per_cta / gpu.copy_bw
    if last:
        active = min(gpu.sms, last)
        t_bw += last * per_cta / min(gpu.copy_bw, active * sm_bw)
    # latency: each CTA's dependent load rounds, fewer when the loop is pipelined
    stages = max(1, int(launch.kwargs.get("num_stages", 3))) if stats.pipelined else 1
    waves = _cdiv(ctas, slots)
    lat = float(ASSUMPTIONS["l2_latency_us" if t.hot else "mem_latency_us"])
    t_lat = waves * math.ceil(t.rounds / stages) * lat * 1e-6
    t_lat += waves * t.steps * float(ASSUMPTIONS["reduction_step_us"]) * 1e-6
    # issue: warp instructions of the main loop
    insns = max(stats.loop_instructions, 1) * t.rounds * launch.num_warps * ctas
    t_issue = insns / (gpu.sms * float(ASSUMPTIONS["ipc_per_sm"]) * gpu.clock_hz)
    return 1e6 * max(t_bw, t_lat, t_issue)


# --------------------------------------------------------------------------- op cases


@dataclass
class Case:
    op: str
    shape: str
    keep: float
    floor_bytes: float
    run: Callable[[GPU], None]
    extra: dict[str, Any]


def _plan(gpu: GPU, family: str, shape: tuple[int, ...], element_size: int) -> dict[str, Any]:
    """``{"plan": ...}``: the launch plan the launcher would pick on ``gpu``."""
    from sharpv_kernels.ops.kv_compact import launch as CL
    from sharpv_kernels.ops.layer_similarity import launch as ML
    from sharpv_kernels.ops.visual_prune import launch as VL

    if family == "visual":
        if not hasattr(VL, "plan_launch"):  # the kernels before the rebuild planned alone
            return {}
        return {"plan": VL.plan_launch(shape, element_size, gpu.sms)}
    if family == "similarity" and hasattr(ML, "plan_similarity"):
        takes_shared = "shared_per_sm" in inspect.signature(ML.plan_similarity).parameters
        extra = {"shared_per_sm": gpu.shared_per_sm} if takes_shared else {}
        return {"plan": ML.plan_similarity(shape, element_size, gpu.sms, **extra)}
    if family == "compact" and hasattr(ML, "plan_compact"):
        return {"plan": CL.plan_compact(shape, element_size)}
    return {}


def _visual_case(op: str, shape: str, dtype: torch.dtype) -> Case:
    from sharpv_kernels.ops.visual_prune.launch import visual_prune_triton

    n, f, d = VISUAL_SHAPES[shape]
    x = torch.empty((n, f, d), dtype=dtype)
    cu = torch.tensor([0, n], dtype=torch.int32)
    if op == "visual_prune":
        keep, kw = KEEP_ADAPTIVE, {"mode": "adaptive"}
    else:
        keep, kw = BUDGET, {"mode": "budget", "budget": BUDGET}
    rows = keep * n * f
    floor = _nbytes(x) + rows * d * x.element_size() + rows * 8 + n * 8

    def run(gpu: GPU) -> None:
        visual_prune_triton(x, cu, **kw, **_plan(gpu, "visual", x.shape, x.element_size()))

    return Case(op, shape, keep, floor, run, {"dtype": str(dtype), "mode": kw["mode"]})


def _memory_case(op: str, shape: str, dtype: torch.dtype) -> Case:
    from sharpv_kernels.ops.kv_compact.launch import kv_compact_triton
    from sharpv_kernels.ops.layer_similarity.launch import layer_similarity_triton

    m = MEMORY_SHAPES[shape]
    seq = TEXT_BEFORE + m["visual"] + TEXT_AFTER
    start = torch.tensor([TEXT_BEFORE], dtype=torch.int64)
    span = torch.tensor([m["visual"]], dtype=torch.int64)
    elt = torch.empty((), dtype=dtype).element_size()
    if op == "layer_similarity":
        h = torch.empty((1, seq, m["hidden"]), dtype=dtype)
        ref = torch.empty_like(h)
        out = torch.empty((m["layers"], 1), dtype=torch.float32)
        floor = 2 * m["visual"] * m["hidden"] * elt

        def run(gpu: GPU) -> None:
            plan = _plan(gpu, "similarity", tuple(h.shape), elt)
            layer_similarity_triton(h, ref, start, span, out, 1, **plan)

        return Case(op, shape, 1.0, floor, run, {"dtype": str(dtype), "span": m["visual"]})
    n_layers, heads, hd = m["layers"], m["kv_heads"], m["head_dim"]
    keys = [torch.empty((1, heads, seq, hd), dtype=dtype) for _ in range(n_layers)]
    values = [torch.empty_like(k) for k in keys]
    n_drop = round(DROP_FRACTION * (n_layers - 1))
    sim = torch.ones((n_layers, 1), dtype=torch.float32)
    sim[n_layers - n_drop :] = 0.0
    lengths = torch.full((n_layers, 1), seq, dtype=torch.int32)
    rows = n_drop * heads * TEXT_AFTER
    moved = 2 * 2 * rows * hd * elt  # keys and values, read and written
    extra = {"dtype": str(dtype), "dropped_layers": n_drop, "_moved_bytes": moved,
             "_moved_rows": TEXT_AFTER}  # fmt: skip

    def run(gpu: GPU) -> None:
        plan = _plan(gpu, "compact", tuple(keys[0].shape), elt)
        kv_compact_triton(keys, values, lengths, start, span, sim, 0.2, **plan)

    return Case(op, shape, 1.0, moved, run, extra)


def cases(ops: list[str], shapes: list[str], dtype: torch.dtype) -> list[Case]:
    out = []
    for op in ops:
        names = VISUAL_SHAPES if op.startswith("visual") else MEMORY_SHAPES
        for shape in shapes:
            if shape in names:
                fn = _visual_case if op.startswith("visual") else _memory_case
                out.append(fn(op, shape, dtype))
    return out


# --------------------------------------------------------------------------- driver


def _record(case: Case, gpu: GPU) -> tuple[list[Launch], list[int]]:
    """Launches of one op call and the launch counts at which the host read a tensor back."""
    from sharpv_kernels.ops.kv_compact import kernels as KK
    from sharpv_kernels.ops.layer_similarity import kernels as SK
    from sharpv_kernels.ops.visual_prune import kernels as VK

    syncs: list[int] = []
    real_item, real_tolist = torch.Tensor.item, torch.Tensor.tolist
    with record_launches(VK, SK, KK) as log:

        def item(self):
            syncs.append(len(log))
            return real_item(self)

        def tolist(self):
            syncs.append(len(log))
            return real_tolist(self)

        torch.Tensor.item, torch.Tensor.tolist = item, tolist
        try:
            case.run(gpu)
        finally:
            torch.Tensor.item, torch.Tensor.tolist = real_item, real_tolist
    for lc in log:
        lc.named.update({k: v for k, v in case.extra.items() if k.startswith("_")})
    return list(log), syncs


#: the op's measured Python overhead per call (``python -m bench.bench_overhead``)
OVERHEAD_JSON = Path(__file__).resolve().parent / "results" / "overhead-cpu.json"


def op_python_us(op: str) -> float:
    """Median host overhead of one public ``visual_prune`` call (list ``cu_frames``) from
    :data:`OVERHEAD_JSON`, for that op's mode, less the benchmark stubs' own work (``op_us``
    where recorded); 0 for the ops not measured there."""
    if not op.startswith("visual_prune") or not OVERHEAD_JSON.exists():
        return 0.0
    mode = "budget" if op.endswith("budget") else "adaptive"
    rows = json.loads(OVERHEAD_JSON.read_text())["rows"]
    return next(
        r.get("op_us", r["median_us"])
        for r in rows
        if r["mode"] == mode and r["call"].startswith("visual_prune (public API, list")
    )


def model_rows(case: Case, gpu: GPU, cache: dict) -> list[dict[str, Any]]:
    launches, syncs = _record(case, gpu)
    py_us = op_python_us(case.op)
    rows: list[dict[str, Any]] = []
    total = {True: 0.0, False: 0.0}
    # one timeline per L2 assumption: the host enqueues each launch (host_launch_us), waits
    # for the GPU at a read-back (readback_us); a kernel starts launch_gap_us after the
    # previous one ends, or when the host has enqueued it, whichever is later
    host = {True: py_us, False: py_us}  # the op's Python runs before its first launch
    gpu_t = {True: 0.0, False: 0.0}
    a_launch, a_gap = float(ASSUMPTIONS["host_launch_us"]), float(ASSUMPTIONS["launch_gap_us"])
    a_read = float(ASSUMPTIONS["readback_us"])
    hbm_total = 0.0
    for i, lc in enumerate(launches):
        key = (lc.name, gpu.arch, repr(sorted((k, str(v)) for k, v in lc.kwargs.items())),
               tuple(str(type(a)) + (str(a.dtype) if isinstance(a, torch.Tensor) else str(a))
                     for a in lc.args))  # fmt: skip
        if key not in cache:
            cache[key] = cubin_stats(compile_launch(lc, gpu.arch))
        st = cache[key]
        t = traffic(lc, case.keep)
        per_sm = occupancy(gpu, st.registers, lc.num_warps, st.shared_bytes)
        slots = max(1, per_sm * gpu.sms)
        pred = {u: kernel_time_us(gpu, lc, st, t, per_sm, u) for u in (True, False)}
        for u in (True, False):
            total[u] += pred[u]
            if i and any(s == i for s in syncs):  # the host reads back before this launch
                host[u] = max(host[u], gpu_t[u]) + a_read
            host[u] += a_launch
            start = max(gpu_t[u] + (a_gap if i else 0.0), host[u])
            gap = start - gpu_t[u] if i else start
            gpu_t[u] = start + pred[u]
        hbm = t.hbm - min(t.reread, gpu.l2_reuse_bytes)
        hbm_total += t.hbm
        rows.append({
            "op": case.op, "shape": case.shape, "device": gpu.name, "kernel": lc.name,
            "grid": list(lc.grid), "num_warps": lc.num_warps,
            "constexprs": {k: v for k, v in lc.kwargs.items() if k.isupper()},
            "registers": st.registers, "stack_bytes": st.stack_bytes,
            "shared_bytes": st.shared_bytes, "ctas": lc.ctas, "ctas_per_sm": per_sm,
            "waves": round(lc.ctas / slots, 3),
            "occupancy": round(per_sm * lc.num_warps / gpu.max_warps_per_sm, 3),
            "sass_instructions": st.sass_instructions,
            "sass_loop_instructions": st.loop_instructions, "sass_loop_loads": st.loop_loads,
            "software_pipelined": st.pipelined, "loop_rounds": t.rounds,
            "bytes": round(hbm), "bytes_no_l2": round(t.hbm), "reread_bytes": round(t.reread),
            "gap_before_us": round(gap, 2), "floor_us": None,
            "predicted_us": round(pred[True], 2), "predicted_us_no_l2": round(pred[False], 2),
        })  # fmt: skip
    final = bool(syncs) and syncs[-1] == len(launches)
    end = {u: max(gpu_t[u], host[u]) + (a_read if final else 0.0) for u in (True, False)}
    floor_us = 1e6 * case.floor_bytes / gpu.copy_bw
    pred_l2, pred_no = end[True], end[False]
    rows.append({
        "op": case.op, "shape": case.shape, "device": gpu.name, "kernel": "(total)",
        "launches": len(launches), "host_syncs_mid_op": sum(0 < s < len(launches) for s in syncs),
        "registers": None, "shared_bytes": None, "ctas": sum(r["ctas"] for r in rows),
        "waves": None, "bytes": round(sum(r["bytes"] for r in rows)),
        "bytes_no_l2": round(hbm_total), "floor_bytes": round(case.floor_bytes),
        "floor_us": round(floor_us, 2), "kernels_us": round(total[True], 2),
        "gpu_busy_us": round(total[False], 2), "gpu_busy_us_l2": round(total[True], 2),
        "op_python_us": py_us, "end_to_end_us": round(pred_no, 2),
        "x_floor_gpu_busy": round(total[False] / floor_us, 2),
        "x_floor_end_to_end": round(pred_no / floor_us, 2),
        "idle_us": round(pred_l2 - total[True], 2),
        "predicted_us": round(pred_l2, 2), "predicted_us_no_l2": round(pred_no, 2),
        "x_floor": round(pred_l2 / floor_us, 2), "x_floor_no_l2": round(pred_no / floor_us, 2),
        **{k: v for k, v in case.extra.items() if not k.startswith("_")},
    })  # fmt: skip
    return rows


def _git_commit() -> str:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parent)  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def markdown(payload: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    """The "Predicted GPU performance (static model)" tables of ``docs/benchmarks.md``."""
    rows = payload["rows"]
    prev = {}
    if before is not None:
        prev = {(r["op"], r["shape"], r["device"]): r for r in before["rows"]
                if r["kernel"] == "(total)"}  # fmt: skip
    out = [
        f"Predicted by `{payload['command']}` at commit `{payload['git_commit'][:7]}` "
        f"({payload['date_utc']}); **not measured**. dtype {payload['dtype']}; "
        f"{payload['keep_adaptive']:.0%} of the tokens kept in adaptive mode, budget "
        f"{payload['budget']}.",
        "",
        "| op | shape | GPU | launches | predicted µs (L2 reuse / none) | floor µs | × floor |"
        + (" before: µs, × floor |" if prev else ""),
        "| --- | --- | --- | ---: | ---: | ---: | ---: |" + (" ---: |" if prev else ""),
    ]
    for r in rows:
        if r["kernel"] != "(total)":
            continue
        line = (f"| `{r['op']}` | {r['shape']} | {r['device'].split(' (')[0]} | {r['launches']} "
                f"| {r['predicted_us']:.1f} / {r['predicted_us_no_l2']:.1f} | {r['floor_us']:.1f} "
                f"| {r['x_floor']:.2f} |")  # fmt: skip
        b = prev.get((r["op"], r["shape"], r["device"]))
        if prev:
            line += f" {b['predicted_us']:.1f}, {b['x_floor']:.2f} |" if b else " - |"
        out.append(line)
    out += [
        "",
        "Per kernel at LLaVA-OV-7B's shape on H100 (registers per thread, CTAs, waves = CTAs "
        "over resident slots, SASS instructions of the main loop, software pipelining):",
        "",
        "| op | kernel | regs | shared B | warps | CTAs | CTAs/SM | waves | loop SASS | pipelined "
        "| HBM MB | predicted µs |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for r in rows:
        if r["kernel"] == "(total)" or r["shape"] != "llava-ov-7b" or "H100" not in r["device"]:
            continue
        out.append(
            f"| `{r['op']}` | `{r['kernel']}` | {r['registers']} | {r['shared_bytes']} "
            f"| {r['num_warps']} | {r['ctas']} | {r['ctas_per_sm']} | {r['waves']:.2f} "
            f"| {r['sass_loop_instructions']} | {'yes' if r['software_pipelined'] else 'no'} "
            f"| {r['bytes'] / 1e6:.1f} | {r['predicted_us']:.1f} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench model", description=__doc__.split("\n")[0])
    p.add_argument("--gpus", nargs="+", default=list(GPUS), choices=list(GPUS))
    p.add_argument("--ops", nargs="+", default=list(OPS), choices=list(OPS))
    p.add_argument("--shapes", nargs="+", default=list(VISUAL_SHAPES))
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--out", default=None, help="JSON path (default bench/results/model-<stamp>)")
    p.add_argument(
        "--markdown",
        nargs="+",
        metavar="JSON",
        help="print the markdown tables of a result file (optionally: AFTER BEFORE)",
    )
    args = p.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") == "1" and not args.markdown:
        print("python -m bench model compiles the kernels: unset TRITON_INTERPRET")
        return 2
    if args.markdown:
        after = json.loads(Path(args.markdown[0]).read_text())
        before = json.loads(Path(args.markdown[1]).read_text()) if len(args.markdown) > 1 else None
        print(markdown(after, before), end="")
        return 0
    dtype = getattr(torch, args.dtype)
    cache: dict = {}
    rows: list[dict[str, Any]] = []
    for case in cases(args.ops, args.shapes, dtype):
        for g in args.gpus:
            rows += model_rows(case, GPUS[g], cache)
            tot = rows[-1]
            print(f"{case.op:20s} {case.shape:14s} {g}: predicted GPU-busy "
                  f"{tot['gpu_busy_us']:8.1f} us (x{tot['x_floor_gpu_busy']}), end-to-end "
                  f"{tot['end_to_end_us']:8.1f} us (x{tot['x_floor_end_to_end']}; "
                  f"{tot['op_python_us']:.0f} us of it the op's Python), floor "
                  f"{tot['floor_us']:7.1f} us", flush=True)  # fmt: skip
    given = argv if argv is not None else sys.argv[1:]
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    path = Path(args.out) if args.out else RESULTS_DIR / f"model-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "kind": "static performance model: PREDICTED, not measured (no GPU was used)",
        "command": " ".join(["python -m bench model", *given]),
        "git_commit": _git_commit(), "date_utc": stamp,
        "gpus": {k: GPUS[k].as_dict() for k in args.gpus}, "assumptions": ASSUMPTIONS,
        "keep_adaptive": KEEP_ADAPTIVE, "budget": BUDGET, "dtype": args.dtype,
        "rows": rows,
    }  # fmt: skip
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
