"""Memory SharpV benchmark: decode time per output token and KV-cache bytes, dense vs Memory
SharpV, and ``kv_compact_`` against a gather-then-contiguous compaction of the same cache.

Not a test. Random weights with the dimensions of Qwen2-0.5B / Qwen2-7B and only a few decoder
layers (per-layer figures scale linearly). Writes one JSON file under ``bench/results/`` with the
device, the torch/triton/transformers versions and the git commit.

    python bench/bench_memory.py                       # CPU preset (a few minutes)
    python bench/bench_memory.py --preset gpu          # 0.5B and 7B, 2k/8k/32k visual tokens
    python bench/bench_memory.py --models 7b --visual 32768 --device cuda

Memory SharpV runs with ``--threshold`` (default 2.0: every layer but layer 0 dropped, the
largest saving; random weights give no meaningful similarities). TPOT is the mean wall time
between consecutive generated tokens after the first (timed in a logits processor, with a device
synchronisation on CUDA).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT))

DIMS = {
    # hidden, heads, kv heads, intermediate, vocab, real number of layers
    "0.5b": dict(hidden=896, heads=14, kv_heads=2, inter=4864, vocab=151936, layers=24),
    "7b": dict(hidden=3584, heads=28, kv_heads=4, inter=18944, vocab=152064, layers=28),
}
PRESETS = {
    "cpu": dict(models=["0.5b"], visual=[2048, 8192], layers=2, new_tokens=16,
                compact=[("0.5b", 2048), ("0.5b", 8192), ("7b", 2048)]),
    "gpu": dict(models=["0.5b", "7b"], visual=[2048, 8192, 32768], layers=4, new_tokens=64,
                compact=[("0.5b", 2048), ("0.5b", 8192), ("0.5b", 32768), ("7b", 2048),
                         ("7b", 8192), ("7b", 32768)]),
}  # fmt: skip
TEXT_BEFORE, TEXT_AFTER = 16, 48  # prompt tokens around the visual span


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _env(device: torch.device) -> dict:
    import transformers
    import triton

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
            ).stdout.strip()
        )
    except Exception:  # noqa: BLE001
        commit, dirty = "unknown", None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "device": str(device),
        "device_name": name or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "git_commit": commit,
        "git_dirty": dirty,
        "triton_interpret": os.environ.get("TRITON_INTERPRET", "0"),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _model(dims: dict, layers: int, dtype: torch.dtype, device: torch.device, vocab=None):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=vocab or dims["vocab"], hidden_size=dims["hidden"],
        intermediate_size=dims["inter"],
        num_hidden_layers=layers, num_attention_heads=dims["heads"],
        num_key_value_heads=dims["kv_heads"], max_position_embeddings=65536,
        attn_implementation="sdpa", tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(cfg).to(dtype).eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


class _Clock:
    """Logits processor recording a timestamp per generated token."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: list[float] = []

    def __call__(self, input_ids, scores):
        _sync(self.device)
        self.times.append(time.perf_counter())
        return scores


def _cache_bytes(cache) -> int:
    from sharpv.cache import CompactingCache

    if isinstance(cache, CompactingCache):
        return cache.nbytes()
    total = 0
    for layer in cache.layers:
        if getattr(layer, "keys", None) is not None:
            total += layer.keys.nbytes + layer.values.nbytes
    return total


def _generate(model, emb, attn, new_tokens, device):
    from transformers import LogitsProcessorList

    clock = _Clock(device)
    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            inputs_embeds=emb, attention_mask=attn, max_new_tokens=new_tokens, do_sample=False,
            logits_processor=LogitsProcessorList([clock]), return_dict_in_generate=True,
        )  # fmt: skip
    ts = clock.times
    steps = [b - a for a, b in zip(ts[:-1], ts[1:], strict=True)]
    return {
        "prefill_s": ts[0] - t0,
        "tpot_ms": 1e3 * sum(steps) / max(1, len(steps)),
        "kv_bytes": _cache_bytes(out.past_key_values),
    }


def bench_decode(name, n_visual, layers, new_tokens, threshold, dtype, device, repeats, vocab):
    import sharpv

    dims = DIMS[name]
    model = _model(dims, layers, dtype, device, vocab)
    seq = TEXT_BEFORE + n_visual + TEXT_AFTER
    g = torch.Generator(device="cpu").manual_seed(1)
    emb = (torch.randn(1, seq, dims["hidden"], generator=g) * 0.02).to(device, dtype)
    attn = torch.ones(1, seq, dtype=torch.long, device=device)
    vis = torch.zeros(1, seq, dtype=torch.bool)
    vis[0, TEXT_BEFORE : TEXT_BEFORE + n_visual] = True
    rows = {"dense": [], "memory_sharpv": []}
    for _ in range(repeats):
        rows["dense"].append(_generate(model, emb, attn, new_tokens, device))
        with sharpv.memory_sharpv(model, vis, threshold=threshold) as state:
            rows["memory_sharpv"].append(_generate(model, emb, attn, new_tokens, device))
    best = {k: min(v, key=lambda r: r["tpot_ms"]) for k, v in rows.items()}
    del model
    return {
        "model": f"qwen2-{name}-dims", "layers": layers, "vocab": vocab or dims["vocab"],
        "visual_tokens": n_visual,
        "prompt_tokens": seq, "new_tokens": new_tokens, "dtype": str(dtype), "threshold": threshold,
        "dropped_layers": int(state.dropped.sum()), "memory_ratio": float(state.memory_ratio[0]),
        "dense": best["dense"], "memory_sharpv": best["memory_sharpv"],
        "tpot_speedup": best["dense"]["tpot_ms"] / best["memory_sharpv"]["tpot_ms"],
        "kv_bytes_ratio": best["memory_sharpv"]["kv_bytes"] / best["dense"]["kv_bytes"],
    }  # fmt: skip


def _gather_compact(keys, values, keep):
    """Baseline: per layer, gather the kept positions and make the result contiguous."""
    new_k, new_v = [], []
    for k, v, idx in zip(keys, values, keep, strict=True):
        if idx is None:
            new_k.append(k)
            new_v.append(v)
        else:
            new_k.append(k[:, :, idx].contiguous())
            new_v.append(v[:, :, idx].contiguous())
    return new_k, new_v


def _time(fn, device, repeats):
    """Median wall time of ``repeats`` calls after two warm-up calls."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def bench_compact(name, n_visual, dtype, device, repeats, drop_fraction=0.5):
    from sharpv_kernels import kv_compact_

    dims = DIMS[name]
    n_layers, heads = dims["layers"], dims["kv_heads"]
    head_dim = dims["hidden"] // dims["heads"]
    seq = TEXT_BEFORE + n_visual + TEXT_AFTER
    shape = (1, heads, seq, head_dim)
    keys = [torch.randn(shape, device=device, dtype=dtype) for _ in range(n_layers)]
    values = [torch.randn_like(k) for k in keys]
    n_drop = int(round(drop_fraction * (n_layers - 1)))
    sim = torch.ones(n_layers, 1, device=device)
    sim[n_layers - n_drop :] = 0.0  # the deepest layers are dropped
    s = torch.tensor([TEXT_BEFORE], device=device)
    n = torch.tensor([n_visual], device=device)
    lengths0 = torch.full((n_layers, 1), seq, dtype=torch.int32, device=device)
    lengths = lengths0.clone()

    def inplace():
        lengths.copy_(lengths0)
        kv_compact_(keys, values, lengths, s, n, sim, 0.2)

    keep_idx = torch.cat([torch.arange(TEXT_BEFORE), torch.arange(TEXT_BEFORE + n_visual, seq)])
    keep_idx = keep_idx.to(device)
    keep = [keep_idx if float(sim[layer, 0]) < 0.2 else None for layer in range(n_layers)]
    t_inplace = _time(inplace, device, repeats)
    t_gather = _time(lambda: _gather_compact(keys, values, keep), device, repeats)
    row_bytes = 2 * heads * head_dim * keys[0].element_size()
    return {
        "model": f"qwen2-{name}-dims", "layers": n_layers, "kv_heads": heads,
        "head_dim": head_dim, "visual_tokens": n_visual, "cache_tokens": seq,
        "dropped_layers": n_drop, "dtype": str(dtype),
        "kv_compact_ms": 1e3 * t_inplace, "gather_contiguous_ms": 1e3 * t_gather,
        "speedup": t_gather / t_inplace,
        "bytes_moved_in_place": n_drop * TEXT_AFTER * row_bytes * 2,
        "bytes_moved_gather": n_drop * (seq - n_visual) * row_bytes * 2,
        "note": "kv_compact_ time includes its argument checks (one device-to-host copy)",
    }  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default=None)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--models", nargs="+", choices=sorted(DIMS))
    p.add_argument("--visual", nargs="+", type=int, help="visual token counts")
    p.add_argument("--layers", type=int, help="decoder layers of the decode benchmark")
    p.add_argument("--new-tokens", type=int)
    p.add_argument("--threshold", type=float, default=2.0)
    p.add_argument(
        "--vocab", type=int, default=None,
        help="vocabulary of the decode model (default: the real one; a small one makes the "
        "attention share of TPOT visible with few layers)",
    )  # fmt: skip
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--skip-decode", action="store_true")
    p.add_argument("--skip-compact", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    preset = dict(PRESETS[a.preset or ("gpu" if device.type == "cuda" else "cpu")])
    models = a.models or preset["models"]
    visual = a.visual or preset["visual"]
    layers = a.layers or preset["layers"]
    new_tokens = a.new_tokens or preset["new_tokens"]
    dtype = getattr(torch, a.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    compact = preset["compact"]
    if a.models or a.visual:
        compact = [(m, v) for m in models for v in visual]

    result = {"benchmark": "memory_sharpv", "env": _env(device), "decode": [], "compact": []}
    if not a.skip_decode:
        for name in models:
            for n_visual in visual:
                row = bench_decode(
                    name,
                    n_visual,
                    layers,
                    new_tokens,
                    a.threshold,
                    dtype,
                    device,
                    a.repeats,
                    a.vocab,
                )
                print(json.dumps(row), flush=True)
                result["decode"].append(row)
    if not a.skip_compact:
        for name, n_visual in compact:
            row = bench_compact(name, n_visual, dtype, device, max(10, a.repeats))
            print(json.dumps(row), flush=True)
            result["compact"].append(row)
    out = a.out
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = ROOT / "bench" / "results" / f"memory_{device.type}_{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
