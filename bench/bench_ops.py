"""Microbenchmarks of every ``torch.ops.sharpv`` operator against its floor.

Ops and providers (each row: one op, one case, one provider):

* ``visual_prune`` (modes ``adaptive``, ``manual``, ``ratio``, ``budget``) and
  ``visual_scores``: ``naive`` (the literal per-frame reference, CPU only), ``eager`` (the
  vectorized plain-PyTorch implementation, on the device), ``compiled`` (``torch.compile`` of
  ``eager``), ``sharpv`` (the op: Triton kernels on CUDA, the vectorized path on CPU);
* ``layer_similarity``: ``naive`` (per-sample reference), ``eager``, ``compiled``, ``sharpv``;
* ``kv_compact_``: ``naive`` (out-of-place reference), ``eager`` (the vectorized in-place
  path), ``compiled``, ``gather`` (per dropped layer: index the kept positions and make the
  result contiguous, what a cache without in-place compaction does), ``sharpv``.

Per row: median seconds of many runs after warm-up (CUDA events on a GPU), the bytes the op
must move (``bytes_floor``), GB/s over that floor and, on a GPU, the percentage of a measured
device-to-device copy bandwidth. JSON under ``bench/results/`` (device, versions, commit).

    python -m bench ops                     # CPU preset (float32, 0.5B shapes)
    python -m bench ops --preset gpu        # bfloat16, 0.5B/7B/long-video shapes, on CUDA
    python -m bench ops --ops visual_prune --providers eager sharpv --no-save
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

import sharpv_kernels  # noqa: F401  (registers torch.ops.sharpv)
from sharpv_kernels import visual_prune, visual_scores
from sharpv_kernels.ops.visual_prune.naive import visual_prune_reference, visual_scores_reference
from sharpv_kernels.ops.visual_prune.torch_path import visual_prune_torch, visual_scores_torch

from .bench_visual import bytes_floor as visual_prune_bytes
from .common import copy_bandwidth, environment, time_fn, write_result
from .visual_cases import SHAPES, video_features

OPS = ("visual_prune", "visual_scores", "layer_similarity", "kv_compact_")
PROVIDERS = ("naive", "eager", "compiled", "gather", "sharpv")
MODES = {"adaptive": {}, "manual": {"threshold": 1.6}, "ratio": {"keep_ratio": 0.3},
         "budget": {"budget": 0.3}}  # fmt: skip

#: Qwen2 LM dimensions: hidden, kv heads, head dim, layers.
LM_DIMS = {"0.5b": (896, 2, 64, 24), "7b": (3584, 4, 128, 28)}
TEXT_BEFORE, TEXT_AFTER = 16, 48  # prompt tokens around the visual span

PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {
        "device": "cpu", "dtype": "float32", "visual_shapes": ["llava-ov-0.5b"],
        "lm_cases": [("0.5b", 32 * 196)], "naive": True,
    },
    "gpu": {
        "device": "cuda", "dtype": "bfloat16",
        "visual_shapes": ["llava-ov-0.5b", "llava-ov-7b", "pllava-7b", "long-video-7b"],
        "lm_cases": [("0.5b", 32 * 196), ("7b", 32 * 196), ("7b", 256 * 196)], "naive": False,
    },
}  # fmt: skip


def _compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    return torch.compile(fn, dynamic=False)


# --------------------------------------------------------------------------- cases
def visual_cases(
    shape: str, dtype: torch.dtype, device: str, modes: list[str]
) -> list[dict[str, Any]]:
    """``visual_prune`` (one case per mode) and ``visual_scores`` cases of one shape."""
    n, f, d = SHAPES[shape]
    x = video_features(n, f, d, dtype, device)
    cu = torch.tensor([0, n], dtype=torch.int32, device=device)
    cases = []
    for mode in modes:
        kw = MODES[mode]
        n_keep = int(visual_prune(x, cu, mode=mode, **kw).tokens.shape[0])
        comp: dict[str, Any] = {}

        def compiled(mode=mode, kw=kw, comp=comp):
            fn = comp.setdefault("fn", _compiled(visual_prune_torch))
            return fn(x, cu, mode=mode, **kw)

        cases.append({
            "op": "visual_prune", "case": f"{shape}/{mode}",
            "meta": {"shape": shape, "frames": n, "f": f, "d": d, "mode": mode,
                     "n_keep": n_keep},
            "bytes_floor": visual_prune_bytes(x, n_keep),
            "providers": {
                "naive": lambda mode=mode, kw=kw: visual_prune_reference(x, cu, mode=mode, **kw),
                "eager": lambda mode=mode, kw=kw: visual_prune_torch(x, cu, mode=mode, **kw),
                "compiled": compiled,
                "sharpv": lambda mode=mode, kw=kw: visual_prune(x, cu, mode=mode, **kw),
            },
        })  # fmt: skip
    comp_s: dict[str, Any] = {}

    def scores_compiled():
        fn = comp_s.setdefault("fn", _compiled(visual_scores_torch))
        return fn(x, cu, 1.0, "dissim")

    cases.append({
        "op": "visual_scores", "case": shape,
        "meta": {"shape": shape, "frames": n, "f": f, "d": d},
        # read the features once, write S, T, I (float32) and r
        "bytes_floor": n * f * d * x.element_size() + 3 * n * f * 4 + n * 4,
        "providers": {
            "naive": lambda: visual_scores_reference(x, cu),
            "eager": lambda: visual_scores_torch(x, cu, 1.0, "dissim"),
            "compiled": scores_compiled,
            "sharpv": lambda: visual_scores(x, cu),
        },
    })  # fmt: skip
    return cases


def memory_cases(model: str, n_visual: int, dtype: torch.dtype, device: str) -> list[dict]:
    """``layer_similarity`` and ``kv_compact_`` cases with one Qwen2 LM's dimensions."""
    from sharpv_kernels import kv_compact_, layer_similarity
    from sharpv_kernels.ops.kv_compact import kv_compact_reference, kv_compact_torch
    from sharpv_kernels.ops.layer_similarity import (
        layer_similarity_reference,
        layer_similarity_torch,
    )

    hidden, kv_heads, head_dim, n_layers = LM_DIMS[model]
    seq = TEXT_BEFORE + n_visual + TEXT_AFTER
    g = torch.Generator().manual_seed(0)
    h = torch.randn(1, seq, hidden, generator=g).to(device, dtype)
    ref = torch.randn(1, seq, hidden, generator=g).to(device, dtype)
    s = torch.tensor([TEXT_BEFORE], device=device)
    n = torch.tensor([n_visual], device=device)
    out = torch.ones(n_layers, 1, dtype=torch.float32, device=device)
    comp: dict[str, Any] = {}

    def sim_compiled():
        fn = comp.setdefault("sim", _compiled(layer_similarity_torch))
        fn(h, ref, s, n, out, 1)

    name = f"qwen2-{model}/{n_visual}vis"
    cases = [{
        "op": "layer_similarity", "case": name,
        "meta": {"model": model, "hidden": hidden, "visual_tokens": n_visual, "seq": seq},
        "bytes_floor": 2 * n_visual * hidden * h.element_size() + 4,
        "providers": {
            "naive": lambda: layer_similarity_reference(h, ref, s, n),
            "eager": lambda: layer_similarity_torch(h, ref, s, n, out, 1),
            "compiled": sim_compiled,
            "sharpv": lambda: layer_similarity(h, ref, s, n, out, 1),
        },
    }]  # fmt: skip

    shape = (1, kv_heads, seq, head_dim)
    keys = [torch.randn(shape, generator=g).to(device, dtype) for _ in range(n_layers)]
    values = [torch.randn(shape, generator=g).to(device, dtype) for _ in range(n_layers)]
    n_drop = n_layers // 2
    sim = torch.ones(n_layers, 1, device=device)
    sim[n_layers - n_drop :] = 0.0  # the deepest half of the layers is dropped
    lengths0 = torch.full((n_layers, 1), seq, dtype=torch.int32, device=device)
    lengths = lengths0.clone()
    keep_idx = torch.cat([torch.arange(TEXT_BEFORE), torch.arange(TEXT_BEFORE + n_visual, seq)])
    keep_idx = keep_idx.to(device)
    dropped = [layer for layer in range(n_layers) if float(sim[layer, 0]) < 0.2]

    def run(fn):
        def call():
            lengths.copy_(lengths0)
            fn(keys, values, lengths, s, n, sim, 0.2)

        return call

    def gather():
        # index_select returns a new contiguous tensor (advanced indexing ``k[:, :, idx]`` is
        # the same operation but ~30x slower on CPU in torch 2.13)
        return [(torch.index_select(keys[i], 2, keep_idx), torch.index_select(values[i], 2,
                 keep_idx)) for i in dropped]  # fmt: skip

    def compact_compiled():
        fn = comp.setdefault("kv", _compiled(kv_compact_torch))
        lengths.copy_(lengths0)
        fn(keys, values, lengths, s, n, sim, 0.2)

    row = 2 * kv_heads * head_dim * keys[0].element_size()  # one position, K and V
    cases.append({
        "op": "kv_compact_", "case": f"{name}/{n_drop}of{n_layers}dropped",
        "meta": {"model": model, "layers": n_layers, "kv_heads": kv_heads,
                 "head_dim": head_dim, "visual_tokens": n_visual, "cache_tokens": seq,
                 "dropped_layers": n_drop},
        # in place: the entries after the span are read and written once per dropped layer
        "bytes_floor": n_drop * TEXT_AFTER * row * 2,
        "bytes_gather": n_drop * (seq - n_visual) * row * 2,
        "providers": {
            "naive": lambda: kv_compact_reference(keys, values, lengths0, s, n, sim, 0.2),
            "eager": run(kv_compact_torch),
            "compiled": compact_compiled,
            "gather": gather,
            "sharpv": run(kv_compact_),
        },
    })  # fmt: skip
    return cases


# --------------------------------------------------------------------------- run
def run(
    *,
    device: str,
    dtype: torch.dtype,
    visual_shapes: list[str],
    lm_cases: list[tuple[str, int]],
    ops: list[str],
    providers: list[str],
    modes: list[str],
    naive: bool,
    reps: int,
) -> dict[str, Any]:
    """Time every (op, case, provider); returns the JSON payload (without ``command``)."""
    peak = copy_bandwidth(device)
    cases: list[dict[str, Any]] = []
    for shape in visual_shapes:
        cases += [c for c in visual_cases(shape, dtype, device, modes) if c["op"] in ops]
    if {"layer_similarity", "kv_compact_"} & set(ops):
        for model, n_vis in lm_cases:
            cases += [c for c in memory_cases(model, n_vis, dtype, device) if c["op"] in ops]
    rows = []
    for case in cases:
        for provider in providers:
            fn = case["providers"].get(provider)
            if fn is None or (provider == "naive" and not naive):
                continue
            base = {"op": case["op"], "case": case["case"], "provider": provider,
                    "dtype": str(dtype).split(".")[-1], **case["meta"]}  # fmt: skip
            try:
                t0 = time.perf_counter()
                fn()  # first call: compilation for ``compiled``
                first = time.perf_counter() - t0
                slow = provider == "naive"
                t = time_fn(fn, device, warmup=1 if slow else 3, reps=3 if slow else reps)
            except Exception as exc:  # noqa: BLE001 - record and go on
                rows.append({**base, "error": repr(exc)[:300]})
                print(f"{case['op']:>16} {case['case']:>30} {provider:>8}: ERROR {exc!r}"[:200])
                continue
            floor = case["bytes_floor"]
            row = {**base, **t, "first_call_s": first, "bytes_floor": floor,
                   "gbps": floor / t["median_s"] / 1e9}  # fmt: skip
            if "bytes_gather" in case:
                row["bytes_gather"] = case["bytes_gather"]
            if peak:
                row["pct_of_copy_bw"] = 100.0 * floor / t["median_s"] / peak
            rows.append(row)
            print(_fmt(row), flush=True)
    return {"kind": "ops", "env": _env(device), "copy_bw_bytes_per_s": peak, "rows": rows}


def _env(device: str) -> dict[str, Any]:
    env = environment(device)
    try:
        import transformers

        env["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover
        pass
    return env


def _fmt(row: dict[str, Any]) -> str:
    pct = f" {row['pct_of_copy_bw']:5.1f}% of copy bw" if "pct_of_copy_bw" in row else ""
    return (
        f"{row['op']:>16} {row['case']:>30} {row['provider']:>8}: "
        f"{row['median_s'] * 1e3:10.3f} ms {row['gbps']:8.2f} GB/s{pct}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench ops",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="cpu (default without a GPU) or gpu")  # fmt: skip
    p.add_argument("--device", default=None, help="override the preset's device")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None)
    p.add_argument("--ops", nargs="+", choices=OPS, default=list(OPS))
    p.add_argument("--providers", nargs="+", choices=PROVIDERS, default=list(PROVIDERS))
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    p.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=None)
    p.add_argument("--reps", type=int, default=20, help="timed runs per row (median)")
    p.add_argument("--no-save", action="store_true", help="print only, write no JSON")
    args = p.parse_args(argv)
    preset_name = args.preset or ("gpu" if torch.cuda.is_available() else "cpu")
    preset = PRESETS[preset_name]
    device = args.device or preset["device"]
    if device.startswith("cuda") and not torch.cuda.is_available():
        p.error("the gpu preset needs CUDA; use --preset cpu")
    dtype = getattr(torch, args.dtype or preset["dtype"])
    result = run(
        device=device, dtype=dtype, visual_shapes=args.shapes or preset["visual_shapes"],
        lm_cases=preset["lm_cases"], ops=args.ops, providers=args.providers,
        modes=args.modes, naive=preset["naive"] and device == "cpu", reps=args.reps,
    )  # fmt: skip
    result["preset"] = preset_name
    result["command"] = "python -m bench ops " + " ".join(
        argv if argv is not None else sys.argv[2:]
    )
    if not args.no_save:
        print("wrote", write_result("ops", result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
