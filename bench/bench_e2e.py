"""End to end: LLaVA-OneVision with RANDOM weights, dense vs SharpV vs the baselines.

The model has the language model dimensions of LLaVA-OneVision-0.5B (Qwen2-0.5B: hidden 896,
14 heads, 2 KV heads, MLP 4864, vocabulary 151936) or, with ``--models 7b``, of the 7B
(Qwen2-7B: 3584, 28, 4, 18944, 152064). Weights are random (nothing can be downloaded), so
answers are meaningless and Memory SharpV's layer similarities are those of a random network;
token counts, timings, memory and FLOPs are real measurements of this code. Videos are the
synthetic clips of :func:`sharpv.video.synthetic_video` (static stretch, moving square, scene
cut, moving disc), one per sample, 196 tokens per frame as in the real model.

Methods, each at a budget comparable with SharpV's:

* ``dense``; ``sharpv_adaptive`` (paper defaults, Memory SharpV M = 0.2);
  ``sharpv_manual`` (K = 1.6, M = 0.2);
* ``uniform`` at SharpV adaptive's VR (measured on the same batch), ``random_per_frame`` and
  ``random_video`` (SharpV adaptive's counts/totals by construction), ``evs`` at pruning rate
  ``1 - VR``; ``dycoke_ttm_0.7`` and ``dycoke_ttm_0.5`` (K = 0.7 / 0.5, DyCoke's stage 1
  only); ``fastv`` (K = 3, 30 % of the visual tokens kept for layers >= 3, eager attention in
  layer 2). Baselines run without Memory SharpV.

Reported per (model, frames, batch, method): VR, MR, token budget, prompt tokens entering the
LLM, TTFT (vision, pruning and prefill), time per output token, peak memory (CUDA allocator
peak on GPU, sampled resident-set growth on CPU), the pruning time alone and its share of
TTFT, and an analytic estimate of the LM's prefill FLOPs (for the layers run, and for the
real depth).

    python -m bench e2e --quick             # CPU preset, < 10 min on 2 cores
    python -m bench e2e --preset gpu        # 0.5B and 7B dims, full depth, real SigLIP dims
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import torch

from .bench_ops import _env
from .common import write_result

#: Qwen2 LM of LLaVA-OneVision: hidden, heads, kv heads, MLP, vocab, layers, tied embeddings.
LM = {
    "0.5b": dict(hidden=896, heads=14, kv_heads=2, inter=4864, vocab=151936, layers=24, tie=True),
    "7b": dict(hidden=3584, heads=28, kv_heads=4, inter=18944, vocab=152064, layers=28, tie=False),
}
#: SigLIP-so400m/14 @ 384 of LLaVA-OneVision, and a tiny stand-in for CPU runs.
TOWERS = {
    "siglip-so400m": dict(hidden=1152, inter=4304, layers=26, heads=16),
    "tiny": dict(hidden=64, inter=128, layers=1, heads=2),
}
PRESETS: dict[str, dict[str, Any]] = {
    "quick": dict(device="cpu", dtype="float32", models=["0.5b"], layers=4, tower="tiny",
                  cases=[(8, 1), (16, 1), (32, 1), (8, 4)], new_tokens=8, repeats=1),
    "cpu": dict(device="cpu", dtype="float32", models=["0.5b"], layers=4, tower="tiny",
                frames=[8, 16, 32], batches=[1, 4], new_tokens=16, repeats=2),
    "gpu": dict(device="cuda", dtype="bfloat16", models=["0.5b", "7b"], layers=None,
                tower="siglip-so400m", frames=[8, 16, 32], batches=[1, 4], new_tokens=64,
                repeats=3),
}  # fmt: skip
METHODS = (
    "dense", "sharpv_adaptive", "sharpv_manual", "uniform", "random_per_frame",
    "random_video", "evs", "dycoke_ttm_0.7", "dycoke_ttm_0.5", "fastv",
)  # fmt: skip
IMAGE_SIZE, PATCH = 384, 14
F = ((IMAGE_SIZE // PATCH) + 1) // 2  # 14
F = F * F  # 196 tokens per frame


def build_model(model: str, layers: int | None, tower: str, dtype: torch.dtype, device: str):
    """LLaVA-OneVision with the given LM dimensions (``layers`` decoder layers, the real
    count when None), the given vision tower, random weights, SDPA attention."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        Qwen2Config,
        SiglipVisionConfig,
    )

    from sharpv.tiny_models import BOS_ID, EOS_ID, IMAGE_ID, PAD_ID, VIDEO_ID

    lm, tw = LM[model], TOWERS[tower]
    torch.manual_seed(0)
    vision = SiglipVisionConfig(
        hidden_size=tw["hidden"], intermediate_size=tw["inter"], num_hidden_layers=tw["layers"],
        num_attention_heads=tw["heads"], image_size=IMAGE_SIZE, patch_size=PATCH,
        vision_use_head=False,
    )  # fmt: skip
    text = Qwen2Config(
        vocab_size=lm["vocab"], hidden_size=lm["hidden"], intermediate_size=lm["inter"],
        num_hidden_layers=layers or lm["layers"], num_attention_heads=lm["heads"],
        num_key_value_heads=lm["kv_heads"], max_position_embeddings=32768,
        tie_word_embeddings=lm["tie"], pad_token_id=PAD_ID, bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
    )  # fmt: skip
    config = LlavaOnevisionConfig(
        vision_config=vision, text_config=text, image_token_index=IMAGE_ID,
        video_token_index=VIDEO_ID, vision_feature_select_strategy="full",
        vision_feature_layer=-1, tie_word_embeddings=lm["tie"],
        image_grid_pinpoints=[[IMAGE_SIZE, IMAGE_SIZE]],
    )  # fmt: skip
    config._attn_implementation = "sdpa"
    with torch.device(device):
        m = LlavaOnevisionForConditionalGeneration(config)
    m = m.to(dtype).eval()
    gc = m.generation_config
    gc.pad_token_id, gc.bos_token_id, gc.eos_token_id = PAD_ID, BOS_ID, EOS_ID
    return m


def build_inputs(frames: int, batch: int, device: str, dtype: torch.dtype) -> dict[str, Any]:
    """One synthetic clip per sample (different seeds), LLaVA-OV placeholder expansion."""
    from sharpv.tiny_models import BOS_ID, FIRST_TEXT_ID, VIDEO_ID
    from sharpv.video import SIGLIP_MEAN, SIGLIP_STD, frames_to_pixels, synthetic_video

    text_before = list(range(FIRST_TEXT_ID, FIRST_TEXT_ID + 12))
    text_after = list(range(FIRST_TEXT_ID + 12, FIRST_TEXT_ID + 24))
    ids = [BOS_ID, *text_before, *([VIDEO_ID] * (frames * F + 1)), *text_after]
    pixels = torch.stack([
        frames_to_pixels(synthetic_video(frames, IMAGE_SIZE, seed=s), IMAGE_SIZE,
                         SIGLIP_MEAN, SIGLIP_STD)
        for s in range(batch)
    ])  # fmt: skip
    input_ids = torch.tensor([ids] * batch, device=device)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values_videos": pixels.to(device, dtype),
    }


def prefill_flops(
    model: str, layers: int, seq_per_layer: list[int], batch: int, with_head: bool = True
) -> float:
    """Analytic FLOPs of the LM's prefill (multiply-add = 2 FLOPs), vision tower excluded.

    Per layer with ``S`` tokens per sample: ``2 S P`` for the projections and the MLP
    (``P`` weights: q, k, v, o, gate, up, down) plus ``2 S^2 H d_h`` for ``QK^T`` and ``AV``
    over the causal half; plus the LM head on the last token (``2 d V``). ``seq_per_layer``
    gives ``S`` of every layer (length ``layers``).
    """
    lm = LM[model]
    d, H, kv = lm["hidden"], lm["heads"], lm["kv_heads"]
    hd = d // H
    p = d * H * hd + 2 * d * kv * hd + H * hd * d + 3 * d * lm["inter"]
    total = sum(2 * s * p + 2 * s * s * H * hd for s in seq_per_layer[:layers])
    if with_head:
        total += 2 * d * lm["vocab"]
    return float(total * batch)


class _StageTimes:
    """``on_stage`` callback of :func:`sharpv.apply_sharpv`: seconds per visual-path stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def take(self, stage: str) -> float:
        """Seconds recorded for ``stage`` since the last ``take`` of it."""
        return self.seconds.pop(stage, 0.0)


def method_config(method: str, vr_adaptive: float | None):
    """The :class:`sharpv.SharpVConfig` of a benchmark method (None for dense)."""
    from sharpv import SharpVConfig

    if method == "dense":
        return None
    if method == "sharpv_adaptive":
        return SharpVConfig()
    if method == "sharpv_manual":
        return SharpVConfig(mode="manual", threshold=1.6)
    if method in ("random_per_frame", "random_video"):
        return SharpVConfig(method=method, memory=False, method_options={"seed": 0})
    if method == "uniform":
        return SharpVConfig(method="uniform", memory=False,
                            method_options={"keep_ratio": vr_adaptive})  # fmt: skip
    if method == "evs":
        return SharpVConfig(method="evs", memory=False,
                            method_options={"rate": max(0.0, 1.0 - vr_adaptive)})  # fmt: skip
    if method.startswith("dycoke_ttm_"):
        k = float(method.rsplit("_", 1)[1])
        return SharpVConfig(method="dycoke_ttm", memory=False,
                            method_options={"prune_ratio": k})  # fmt: skip
    if method == "fastv":
        return SharpVConfig(method="fastv", memory=False,
                            method_options={"layer": 3, "keep_ratio": 0.3})  # fmt: skip
    raise ValueError(f"unknown method {method!r}")


def run_one(
    model, inputs, method, config, new_tokens, repeats, device, name, n_layers, warmup=False
):
    """Generate ``repeats`` times with one method; median timings and the ratios."""
    from sharpv import apply_sharpv, revert_sharpv
    from sharpv.timing import measure_generate

    runs, prune_s = [], []
    stages = _StageTimes()
    if config is not None:
        apply_sharpv(model, config, on_stage=stages)
    try:
        if warmup:  # untimed: Triton JIT compilation and the first CUDA allocations
            with torch.inference_mode():
                measure_generate(model, inputs, 2)
        stages.seconds.clear()  # not the warm-up's
        for _ in range(repeats):
            with torch.inference_mode():
                runs.append(measure_generate(model, inputs, new_tokens))
            prune_s.append(stages.take("prune"))
        stats = model.sharpv_stats if config is not None else None
    finally:
        revert_sharpv(model)
    B, S = inputs["input_ids"].shape
    n_vis = int((inputs["input_ids"][0] == model.config.video_token_index).sum()) - 1
    if stats is None:
        vr = mr = 1.0
        seq_in = [S] * B
    else:
        vr, mr = stats.visual_ratio, stats.memory_ratio
        seq_in = [int(x) for x in stats.prompt_tokens_kept]
    s_llm = max(seq_in)
    per_layer = [s_llm] * n_layers
    per_layer_full = [s_llm] * LM[name]["layers"]
    if method == "fastv":
        from sharpv.baselines import fastv_keep_count

        s_after = S - n_vis + fastv_keep_count(n_vis, 0.3)
        per_layer = [S] * 3 + [s_after] * (n_layers - 3)
        per_layer_full = [S] * 3 + [s_after] * (LM[name]["layers"] - 3)
    ttft = statistics.median(r.ttft_s for r in runs)
    prune = statistics.median(prune_s)
    return {
        "method": method,
        "config": None if config is None else {k: v for k, v in config.to_dict().items()},
        "VR": vr, "MR": mr, "token_budget": vr * mr,
        "visual_tokens_per_sample": n_vis, "prompt_tokens_in": S,
        "prompt_tokens_llm": seq_in,
        "ttft_s": ttft, "ttft_all_s": [r.ttft_s for r in runs],
        "tpot_s": statistics.median(r.tpot_s for r in runs),
        "peak_mem_bytes": max(r.peak_mem_bytes for r in runs),
        "prune_s": prune, "prune_share_of_ttft": prune / ttft if ttft else None,
        "prefill_tflops": prefill_flops(name, n_layers, per_layer, B) / 1e12,
        "prefill_tflops_full_depth": prefill_flops(name, LM[name]["layers"], per_layer_full,
                                                   B) / 1e12,
        "new_tokens": runs[0].new_tokens, "repeats": repeats,
    }  # fmt: skip


def run(preset: dict[str, Any], methods: list[str], echo=print) -> dict[str, Any]:
    from sharpv.timing import measure_generate

    device, dtype = preset["device"], getattr(torch, preset["dtype"])
    results = []
    for name in preset["models"]:
        model = build_model(name, preset["layers"], preset["tower"], dtype, device)
        n_layers = model.config.text_config.num_hidden_layers
        cases = preset.get("cases") or [
            (fr, b) for fr in preset["frames"] for b in preset["batches"]
        ]
        for frames, batch in cases:
            inputs = build_inputs(frames, batch, device, dtype)
            with torch.inference_mode():  # warm-up (allocator, kernels)
                measure_generate(model, inputs, 2)
            vr_adaptive = None
            rows = []
            for method in methods:
                if method in ("uniform", "evs") and vr_adaptive is None:
                    cfg0 = method_config("sharpv_adaptive", None)
                    r0 = run_one(model, inputs, "sharpv_adaptive", cfg0, 1, 1, device,
                                 name, n_layers)  # fmt: skip
                    vr_adaptive = r0["VR"]
                cfg = method_config(method, vr_adaptive)
                r = run_one(model, inputs, method, cfg, preset["new_tokens"],
                            preset["repeats"], device, name, n_layers,
                            warmup=device.startswith("cuda"))  # fmt: skip
                if method == "sharpv_adaptive":
                    vr_adaptive = r["VR"]
                r.update(model=f"llava-ov-{name}-dims", layers=n_layers, frames=frames,
                         batch=batch)  # fmt: skip
                rows.append(r)
                echo(_fmt(r))
            results += rows
        del model
    return {"kind": "e2e", "rows": results, "goals": goals(results)}


def goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's goals per (model, frames, batch): TTFT >= 1.65x dense at SharpV's adaptive
    budget, decode time per output token below dense, pruning < 2 % of TTFT."""
    out = []
    keys = sorted({(r["model"], r["frames"], r["batch"]) for r in rows})
    for key in keys:
        group = {r["method"]: r for r in rows if (r["model"], r["frames"], r["batch"]) == key}
        d, a = group.get("dense"), group.get("sharpv_adaptive")
        if not d or not a:
            continue
        speed = d["ttft_s"] / a["ttft_s"]
        out.append({
            "model": key[0], "frames": key[1], "batch": key[2],
            "ttft_speedup": speed, "ttft_goal_1.65x": speed >= 1.65,
            "tpot_ratio": a["tpot_s"] / d["tpot_s"], "tpot_better": a["tpot_s"] < d["tpot_s"],
            "prune_share": a["prune_share_of_ttft"],
            "prune_under_2pct": a["prune_share_of_ttft"] is not None
            and a["prune_share_of_ttft"] < 0.02,
        })  # fmt: skip
    return out


def _fmt(r: dict[str, Any]) -> str:
    return (
        f"{r['model']} L{r['layers']} {r['frames']:3d}f b{r['batch']} {r['method']:>16}: "
        f"VR {r['VR']:6.1%} MR {r['MR']:6.1%} budget {r['token_budget']:6.1%} "
        f"TTFT {r['ttft_s'] * 1e3:8.1f} ms TPOT {r['tpot_s'] * 1e3:7.1f} ms "
        f"prune {r['prune_s'] * 1e3:6.2f} ms peak {r['peak_mem_bytes'] / 2**20:7.1f} MiB "
        f"{r['prefill_tflops']:.3f} TFLOP"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench e2e", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the quick CPU preset (< 10 min)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--models", nargs="+", choices=sorted(LM), default=None)
    p.add_argument("--layers", type=int, default=None, help="decoder layers (default: preset)")
    p.add_argument("--frames", nargs="+", type=int, default=None)
    p.add_argument("--batches", nargs="+", type=int, default=None)
    p.add_argument("--new-tokens", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    name = (
        "quick" if args.quick else args.preset or ("gpu" if torch.cuda.is_available() else "quick")
    )
    preset = dict(PRESETS[name])
    for key in ("device", "models", "layers", "frames", "batches", "new_tokens", "repeats"):
        if getattr(args, key) is not None:
            preset[key] = getattr(args, key)
    if args.frames or args.batches:  # an explicit grid replaces the preset's cases
        preset["frames"] = args.frames or sorted({c[0] for c in preset.get("cases", [])})
        preset["batches"] = args.batches or sorted({c[1] for c in preset.get("cases", [])})
        preset.pop("cases", None)
    if preset["device"].startswith("cuda") and not torch.cuda.is_available():
        p.error("this preset needs CUDA; use --quick or --preset cpu")
    if "fastv" in args.methods and (preset["layers"] or 24) < 4:
        p.error("fastv (K = 3) needs at least 4 decoder layers")
    t0 = time.perf_counter()
    result = run(preset, args.methods)
    result["wall_s"] = time.perf_counter() - t0
    result["preset"] = {"name": name, **preset}
    result["env"] = _env(preset["device"])
    result["note"] = (
        "random weights (nothing downloaded); LM with the real model's dimensions"
        + (f" but {preset['layers']} decoder layers" if preset["layers"] else "")
        + f"; vision tower {preset['tower']!r}"
    )
    result["command"] = "python -m bench e2e " + " ".join(
        argv if argv is not None else sys.argv[2:]
    )
    print(f"wall time {result['wall_s']:.0f} s")
    for g in result["goals"]:
        print(g)
    if not args.no_save:
        print("wrote", write_result("e2e", result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
