"""Microbenchmark of ``visual_prune`` against its floor: one read of the features plus
writing the kept rows, in the features' own dtype.

The floor of a dtype (``floor/<dtype>``) is the sum of two timed operations:

  * ``floor_read/<dtype>``: one read of the features as stored, ``torch.amax`` over the last
    dim of an integer view of the same bytes (int32 for float32, int16 for bfloat16 and
    float16): a bandwidth-bound reduction that converts nothing, so it reads bfloat16
    features at half the bytes of float32;
  * ``floor_write/<dtype>``: writing ``n_keep`` rows of that dtype (``n_keep``: the rows
    the op keeps on these features) into preallocated memory, ``out.fill_(0)``.

Every ratio ``x_floor`` of a row is against its own dtype's floor. The older floor,
``torch.linalg.vector_norm`` of the same features in float32 (``floor_f32norm``, the same
for every dtype), stays as the extra column ``x_floor_f32norm``.

Providers:
  * ``naive``: the literal per-frame reference (``visual_prune_reference``), CPU only;
  * ``eager``: the plain PyTorch path (``visual/torch_path.py``) called directly: on CPU the
    cache-blocked pass the op runs; on a GPU one unblocked pass of about 25 aten ops (the
    GPU baseline, as ``SHARPV_BACKEND=torch`` runs it);
  * ``compiled``: ``torch.compile`` of that eager implementation;
  * ``sharpv``: ``sharpv_kernels.visual_prune`` as users call it (Triton kernels on CUDA; on
    CPU the native kernel's score pass and the PyTorch path's selection and gather, with the
    op's checks and dispatch; the PyTorch path alone where no C compiler is found).

Every provider of a shape, and both parts of every floor, are timed interleaved,
round-robin, in the same run (one call of each per round), so that load on the machine hits
them alike; rows give the median and the minimum over the rounds, and the ratios
``x_floor`` (median over the floor's median: the sum of its parts' medians),
``x_floor_min`` (minimum over the sum of the parts' minima) and, on CPU, ``x_floor_cpu``
(median process CPU time over the floor parts' summed CPU medians: robust to other
processes on a shared machine). On a GPU the rows
also give GB/s over the bytes the op must move and the percentage of a measured
device-to-device copy bandwidth.

Usage::

    python -m bench.bench_visual --device cpu --dtypes float32 bfloat16 --providers eager sharpv
    python -m bench.bench_visual --device cuda            # bfloat16, all shapes, all providers
    python -m bench.bench_visual --device cpu --shapes llava-ov-0.5b --providers sharpv
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from sharpv_kernels import visual_prune
from sharpv_kernels.ops.visual_prune.naive import visual_prune_reference
from sharpv_kernels.ops.visual_prune.native import native_unavailable_reason
from sharpv_kernels.ops.visual_prune.torch_path import visual_prune_torch

from .common import copy_bandwidth, environment, sync, write_result
from .visual_cases import SHAPES, video_features

PROVIDERS = ("naive", "eager", "compiled", "sharpv")
MODE_KW = {"adaptive": {}, "manual": {"threshold": 1.6}, "ratio": {"keep_ratio": 0.3},
           "budget": {"budget": 0.3}}  # fmt: skip


def bytes_floor(features: torch.Tensor, n_keep: int) -> int:
    """Bytes any implementation must move: read all features, write kept rows + indices."""
    n, f, d = features.shape
    e = features.element_size()
    return n * f * d * e + n_keep * d * e + n_keep * 8 + n * (4 + 4)


#: the floor's definition, as the result JSON records it
FLOOR_DOC = (
    "per dtype: torch.amax(features.view(int16/int32), dim=-1) (one read of the features as "
    "stored) + preallocated (n_keep, d).fill_(0) of that dtype (writing the kept rows), both "
    "timed interleaved with the providers, medians (minima) summed; x_floor_f32norm: against "
    "torch.linalg.vector_norm(features.float(), dim=-1)"
)


def floor_parts(x: torch.Tensor, n_keep: int) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """The two timed parts of the floor of features ``x``: one read of its bytes (``amax``
    over an integer view, no conversion) and writing ``n_keep`` rows of its dtype into
    preallocated memory."""
    ints = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[x.element_size()]
    view = x.contiguous().view(ints)
    out = torch.empty((n_keep, x.shape[-1]), dtype=x.dtype, device=x.device)
    return (lambda: torch.amax(view, dim=-1)), (lambda: out.fill_(0))


def make_callable(provider: str, x: torch.Tensor, cu: torch.Tensor, mode: str, kw: dict):
    """A no-argument call of ``provider`` on features ``x``."""
    if provider == "naive":
        return lambda: visual_prune_reference(x, cu, mode=mode, **kw)
    if provider == "eager":
        return lambda: visual_prune_torch(x, cu, mode=mode, **kw)
    if provider == "compiled":
        fn = torch.compile(visual_prune_torch, dynamic=False)
        return lambda: fn(x, cu, mode=mode, **kw)
    if provider == "sharpv":
        return lambda: visual_prune(x, cu, mode=mode, **kw)
    raise ValueError(f"unknown provider {provider!r}")


def time_interleaved(
    fns: dict[str, Callable[[], Any]], device: str, *, rounds: int, max_s: float = 60.0
) -> dict[str, dict[str, float]]:
    """Median and minimum seconds of each function, called once per round in turn.

    Wall-clock seconds, and on CPU also the process's CPU seconds (``cpu_median_s``, all
    threads): on a shared machine a long call is preempted more often than a short one,
    which inflates wall-clock ratios but not CPU-time ratios. One warm-up round first;
    stops early (after at least 3 rounds) past ``max_s``.
    """
    for fn in fns.values():
        fn()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    end = time.perf_counter() + max_s
    for _ in range(rounds):
        for name, fn in fns.items():
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
        if time.perf_counter() > end and len(times[next(iter(fns))]) >= 3:
            break
    out: dict[str, dict[str, float]] = {}
    for name, ts in times.items():
        out[name] = {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts),
                     "reps": len(ts)}  # fmt: skip
        if device == "cpu":
            out[name]["cpu_median_s"] = statistics.median(cpu[name])
    return out


def run(
    device: str,
    shapes: list[str],
    providers: list[str],
    mode: str,
    dtypes: list[torch.dtype],
    rounds: int = 7,
) -> dict[str, Any]:
    """Time every provider at every shape and dtype, interleaved with the floor."""
    kw = MODE_KW[mode]
    peak = copy_bandwidth(device)
    rows = []
    for name in shapes:
        n, f, d = SHAPES[name]
        x32 = video_features(n, f, d, torch.float32, device)
        cu = torch.tensor([0, n], dtype=torch.int32, device=device)
        fns: dict[str, Callable[[], Any]] = {
            "floor_f32norm": lambda x32=x32: torch.linalg.vector_norm(x32, dim=-1)
        }
        meta: dict[str, tuple[torch.Tensor, str, str]] = {
            "floor_f32norm": (x32, "float32", "floor_f32norm")
        }
        keep: dict[str, int] = {}
        for dtype in dtypes:
            x = x32 if dtype == torch.float32 else x32.to(dtype)
            dname = str(dtype).split(".")[-1]
            keep[dname] = int(visual_prune(x, cu, mode=mode, **kw).tokens.shape[0])
            fns[f"floor_read/{dname}"], fns[f"floor_write/{dname}"] = floor_parts(x, keep[dname])
            meta[f"floor_read/{dname}"] = (x, dname, "floor_read")
            meta[f"floor_write/{dname}"] = (x, dname, "floor_write")
            for provider in providers:
                if provider == "naive" and device != "cpu":
                    continue
                fns[f"{provider}/{dname}"] = make_callable(provider, x, cu, mode, kw)
                meta[f"{provider}/{dname}"] = (x, dname, provider)
        t = time_interleaved(fns, device, rounds=rounds)
        for dname in keep:  # each dtype's floor: its read plus its write
            r, w = t[f"floor_read/{dname}"], t[f"floor_write/{dname}"]
            t[f"floor/{dname}"] = {k: r[k] + w[k] for k in r if k.endswith("_s")}
            t[f"floor/{dname}"]["reps"] = r["reps"]
            meta[f"floor/{dname}"] = (meta[f"floor_read/{dname}"][0], dname, "floor")
        old = t["floor_f32norm"]
        for key, (x, dname, provider) in meta.items():
            n_keep = keep.get(dname, 0)
            floor = t[f"floor/{dname}"] if dname in keep else old
            moved = bytes_floor(x, n_keep)
            row = {
                "op": "visual_prune", "case": f"{name}/{mode}", "shape": name, "frames": n,
                "f": f, "d": d, "dtype": dname, "mode": mode, "provider": provider,
                "n_keep": n_keep, "bytes_floor": moved, **t[key],
                "gbps": moved / t[key]["median_s"] / 1e9,
                "floor_median_s": floor["median_s"],
                "x_floor": t[key]["median_s"] / floor["median_s"],
                "x_floor_min": t[key]["min_s"] / floor["min_s"],
                "x_floor_f32norm": t[key]["median_s"] / old["median_s"],
            }  # fmt: skip
            if "cpu_median_s" in floor:
                row["x_floor_cpu"] = t[key]["cpu_median_s"] / floor["cpu_median_s"]
            if provider == "floor_read":  # the read's own bandwidth: is it bandwidth-bound?
                row["read_gbps"] = x.numel() * x.element_size() / t[key]["median_s"] / 1e9
            if peak:
                row["pct_of_copy_bw"] = 100.0 * moved / t[key]["median_s"] / peak
            rows.append(row)
            print(_fmt(row), flush=True)
    return {"env": environment(device), "copy_bw_bytes_per_s": peak, "kind": "ops",
            "floor": FLOOR_DOC,
            "rows": rows}  # fmt: skip


def _fmt(row: dict[str, Any]) -> str:
    pct = f" {row['pct_of_copy_bw']:5.1f}% of copy bw" if "pct_of_copy_bw" in row else ""
    bw = f" read {row['read_gbps']:.1f} GB/s" if "read_gbps" in row else ""
    return (
        f"{row['shape']:>14} {row['provider']:>13} {row['dtype']:>8}: "
        f"{row['median_s'] * 1e3:9.3f} ms  {row['x_floor']:6.2f}x floor "
        f"(min {row['x_floor_min']:5.2f}x, CPU time {row.get('x_floor_cpu', 0.0):5.2f}x, "
        f"{row['x_floor_f32norm']:5.2f}x f32 norm){pct}{bw}  (kept {row['n_keep']})"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--providers", nargs="+", default=list(PROVIDERS), choices=PROVIDERS)
    p.add_argument("--mode", default="adaptive", choices=list(MODE_KW))
    p.add_argument(
        "--dtypes", nargs="+", default=None, choices=["float32", "float16", "bfloat16"],
        help="input dtypes (default: bfloat16 on CUDA, float32 and bfloat16 on CPU)",
    )  # fmt: skip
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"],
                   help="one input dtype (same as --dtypes with one value)")  # fmt: skip
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds per shape")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--no-save", action="store_true", help="print only, write no JSON")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.dtypes or ([args.dtype] if args.dtype else None)
    if names is None:
        names = ["bfloat16"] if args.device.startswith("cuda") else ["float32", "bfloat16"]
    result = run(
        args.device, args.shapes, args.providers, args.mode,
        [getattr(torch, n) for n in names], rounds=args.rounds,
    )  # fmt: skip
    if args.device == "cpu":  # what the ``sharpv`` provider ran on
        why = native_unavailable_reason()
        result["sharpv_cpu_backend"] = "native" if why is None else f"torch ({why})"
    result["command"] = "python -m bench.bench_visual " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    if not args.no_save:
        print("wrote", write_result("visual_prune", result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
