"""Microbenchmark of ``visual_prune``: sharpv vs the eager reference vs torch.compile of it.

Providers:
  * ``naive``: the literal per-frame reference (``visual_prune_reference``), CPU only;
  * ``eager``: the vectorized plain-PyTorch implementation, eager, on the device;
  * ``compiled``: ``torch.compile`` of that eager implementation;
  * ``sharpv``: ``sharpv_kernels.visual_prune`` (Triton kernels on CUDA; on CPU it is the
    vectorized path behind the op, so it shows the op's dispatch overhead on top).

Per case: median time, the bytes the op must move (read every feature once, write the
kept rows and their int64 indices), GB/s over that floor and, on a GPU, the percentage of
a measured device-to-device copy bandwidth.

Usage::

    python -m bench.bench_visual --device cuda            # bfloat16, all shapes
    python -m bench.bench_visual --device cpu             # float32, all shapes
    python -m bench.bench_visual --device cpu --shapes llava-ov-0.5b --providers sharpv
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

from sharpv_kernels import visual_prune
from sharpv_kernels.visual.naive import visual_prune_reference
from sharpv_kernels.visual.torch_path import visual_prune_torch

from .common import copy_bandwidth, environment, time_fn, write_result
from .visual_cases import SHAPES, video_features

PROVIDERS = ("naive", "eager", "compiled", "sharpv")


def bytes_floor(features: torch.Tensor, n_keep: int) -> int:
    """Bytes any implementation must move: read all features, write kept rows + indices."""
    n, f, d = features.shape
    e = features.element_size()
    return n * f * d * e + n_keep * d * e + n_keep * 8 + n * (4 + 4)


def make_callable(provider: str, x: torch.Tensor, cu: torch.Tensor, mode: str, kw: dict):
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


def run(
    device: str, shapes: list[str], providers: list[str], mode: str, dtype: torch.dtype
) -> dict[str, Any]:
    kw = {"adaptive": {}, "manual": {"threshold": 1.6}, "ratio": {"keep_ratio": 0.3},
          "budget": {"budget": 0.3}}[mode]  # fmt: skip
    peak = copy_bandwidth(device)
    rows = []
    for name in shapes:
        n, f, d = SHAPES[name]
        x = video_features(n, f, d, dtype, device)
        cu = torch.tensor([0, n], dtype=torch.int32, device=device)
        n_keep = int(visual_prune(x, cu, mode=mode, **kw).tokens.shape[0])
        floor = bytes_floor(x, n_keep)
        for provider in providers:
            if provider == "naive" and device != "cpu":
                continue
            case = f"{name}/{mode}"
            fn = make_callable(provider, x, cu, mode, kw)
            try:
                t = time_fn(fn, device, warmup=2 if provider != "naive" else 1,
                            reps=20 if provider != "naive" else 3)  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - record and go on
                rows.append({"op": "visual_prune", "case": case, "shape": name,
                             "provider": provider, "error": repr(exc)[:300]})  # fmt: skip
                continue
            row = {
                "op": "visual_prune", "case": case, "shape": name, "frames": n, "f": f, "d": d,
                "dtype": str(dtype).split(".")[-1], "mode": mode, "provider": provider,
                "n_keep": n_keep, "bytes_floor": floor,
                **t, "gbps": floor / t["median_s"] / 1e9,
            }  # fmt: skip
            if peak:
                row["pct_of_copy_bw"] = 100.0 * floor / t["median_s"] / peak
            rows.append(row)
            print(_fmt(row), flush=True)
    return {"env": environment(device), "copy_bw_bytes_per_s": peak, "kind": "ops",
            "rows": rows}  # fmt: skip


def _fmt(row: dict[str, Any]) -> str:
    pct = f" {row['pct_of_copy_bw']:5.1f}% of copy bw" if "pct_of_copy_bw" in row else ""
    return (
        f"{row['shape']:>14} {row['provider']:>9}: {row['median_s'] * 1e3:9.3f} ms "
        f"{row['gbps']:8.2f} GB/s{pct}  (kept {row['n_keep']})"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--providers", nargs="+", default=list(PROVIDERS), choices=PROVIDERS)
    p.add_argument("--mode", default="adaptive", choices=["adaptive", "manual", "ratio", "budget"])
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    p.add_argument("--no-save", action="store_true", help="print only, write no JSON")
    args = p.parse_args(argv)
    dtype_name = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    result = run(args.device, args.shapes, args.providers, args.mode, getattr(torch, dtype_name))
    result["command"] = "python -m bench.bench_visual " + " ".join(argv or sys.argv[1:])
    if not args.no_save:
        print("wrote", write_result("visual_prune", result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
