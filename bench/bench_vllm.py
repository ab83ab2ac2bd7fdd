"""``python -m bench vllm``: dense vs SharpV (budget) vs vLLM's EVS inside vLLM, same retention.

Runs in the vLLM lane's venv (``.venv-vllm/bin/python -m bench vllm``). The parent writes one
tiny random-weight Qwen2.5-VL checkpoint, then starts one fresh process per method so that
no engine state is shared:

* ``dense``: vLLM's ``Qwen2_5_VLForConditionalGeneration``, every video token;
* ``sharpv``: ``SharpVQwen2_5_VLForConditionalGeneration`` with ``{"budget": b}``;
* ``evs``: vLLM's own ``--video-pruning-rate 1 - b`` (EVS). vLLM's CPU runner never turns on
  the M-RoPE recompute EVS needs, so this benchmark (not the plugin) sets that runner flag
  for EVS itself.

Each process measures, on videos it has not seen before (the processor cache is off):

* TTFT: wall time of one request with one video and ``max_tokens=1`` (median and minimum
  of ``--reps``; on a shared machine the minimum is the less disturbed estimate);
* throughput: ``--batch`` requests with one video each, ``--new-tokens`` greedy tokens each,
  generated tokens per second of wall time (median and maximum of ``--reps``);
* the pruning step's own cost: ``_postprocess_video_embeds_evs`` (SharpV's or EVS's kept
  set, positions appended) on one video's embeddings, median of 20 calls; dense has none.

The JSON goes to ``bench/results/vllm-cpu-<UTC time>.json``. These are CPU numbers of a tiny
model; they say nothing about GPU speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

METHODS = ("dense", "sharpv", "evs")
DENSE_ARCH = "Qwen2_5_VLForConditionalGeneration"
SHARPV_ARCH = "SharpVQwen2_5_VLForConditionalGeneration"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench vllm", description=__doc__.split("\n")[0])
    p.add_argument("--budget", type=float, default=0.3, help="retention b (EVS rate 1 - b)")
    p.add_argument("--frames", type=int, default=16, help="frames per video")
    p.add_argument("--frame-size", type=int, default=224, help="frame side in pixels")
    p.add_argument("--batch", type=int, default=4, help="requests in the throughput run")
    p.add_argument("--new-tokens", type=int, default=16, help="tokens per request")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    p.add_argument("--out", type=Path, default=None, help="result file (default: bench/results)")
    p.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    return p


def _engine(method: str, path: Path, budget: float):
    from vllm import LLM

    overrides: dict[str, Any] = {
        "architectures": [SHARPV_ARCH if method == "sharpv" else DENSE_ARCH]
    }
    extra: dict[str, Any] = {}
    if method == "sharpv":
        overrides["sharpv"] = {"budget": budget}
    if method == "evs":
        extra["video_pruning_rate"] = 1.0 - budget
    llm = LLM(
        model=str(path),
        dtype="float32",
        enforce_eager=True,
        max_model_len=4096,
        limit_mm_per_prompt={"video": 1, "image": 0},
        mm_processor_cache_gb=0,
        seed=0,
        hf_overrides=overrides,
        **extra,
    )
    if method == "evs":  # the CPU runner never enables EVS's M-RoPE recompute (see above)
        llm.collective_rpc(_enable_recompute)
    return llm


def _enable_recompute(worker: Any) -> None:
    worker.model_runner.is_multimodal_pruning_enabled = True


def _request(frames: int, seed: int, size: int) -> dict:
    from sharpv.engines.vllm.checkpoints import make_video, qwen_video_metadata

    video = make_video(frames, seed=seed, size=size)
    return {
        "prompt": "<|vision_start|><|video_pad|><|vision_end|> what happens in the video ?",
        "multi_modal_data": {"video": (video, qwen_video_metadata(frames))},
    }


def _prune_cost(llm, frames: int, size: int) -> float | None:
    """Median seconds of the model's pruning hook on one video's embeddings."""
    from transformers import AutoProcessor

    from sharpv.engines.vllm.checkpoints import make_video, qwen_video_metadata

    path = llm.llm_engine.model_config.model
    vp = AutoProcessor.from_pretrained(path).video_processor
    out = vp(
        [make_video(frames, seed=999, size=size)],
        video_metadata=[qwen_video_metadata(frames)],
        do_sample_frames=False,
        return_tensors="pt",
    )
    video_input = {
        "type": "pixel_values_videos",
        "pixel_values_videos": out["pixel_values_videos"],
        "video_grid_thw": out["video_grid_thw"],
        "second_per_grid_ts": out.get("second_per_grid_ts", None),
    }
    if video_input["second_per_grid_ts"] is None:
        import torch

        video_input["second_per_grid_ts"] = torch.ones(1)

    def probe(model) -> float:
        import torch

        with torch.no_grad():
            emb = model._process_video_input(video_input)
            times = []
            for _ in range(20):
                t0 = time.perf_counter()
                model._postprocess_video_embeds_evs(emb, video_input)
                times.append(time.perf_counter() - t0)
        return statistics.median(times)

    return llm.apply_model(probe)[0]


def _worker(args: argparse.Namespace) -> dict[str, Any]:
    from vllm import SamplingParams

    t0 = time.perf_counter()
    llm = _engine(args.worker, args.checkpoint, args.budget)
    startup = time.perf_counter() - t0
    seed = iter(range(1000))
    warm_up = [_request(args.frames, next(seed), args.frame_size)]
    llm.generate(warm_up, SamplingParams(temperature=0, max_tokens=2), use_tqdm=False)
    one = SamplingParams(temperature=0, max_tokens=1)
    ttft, prompt_tokens = [], 0
    for _ in range(args.reps):
        req = _request(args.frames, next(seed), args.frame_size)
        t = time.perf_counter()
        out = llm.generate([req], one, use_tqdm=False)[0]
        ttft.append(time.perf_counter() - t)
        prompt_tokens = len(out.prompt_token_ids)
    many = SamplingParams(temperature=0, max_tokens=args.new_tokens, ignore_eos=True)
    tput = []
    for _ in range(args.reps):
        reqs = [_request(args.frames, next(seed), args.frame_size) for _ in range(args.batch)]
        t = time.perf_counter()
        outs = llm.generate(reqs, many, use_tqdm=False)
        dt = time.perf_counter() - t
        tput.append(sum(len(o.outputs[0].token_ids) for o in outs) / dt)
    prune = None if args.worker == "dense" else _prune_cost(llm, args.frames, args.frame_size)
    return {
        "method": args.worker,
        "startup_s": startup,
        "prompt_tokens": prompt_tokens,
        "ttft_median_s": statistics.median(ttft),
        "ttft_min_s": min(ttft),
        "ttft_all_s": ttft,
        "throughput_tok_s": statistics.median(tput),
        "throughput_max_tok_s": max(tput),
        "throughput_all_tok_s": tput,
        "prune_step_median_s": prune,
    }


def _environment() -> dict[str, Any]:
    import platform

    import torch
    import transformers
    import vllm

    from .common import _git_commit

    return {
        "device": "cpu",
        "device_name": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "vllm": vllm.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "git_commit": _git_commit(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.worker:
        print("BENCH_ROW " + json.dumps(_worker(args)), flush=True)
        return 0
    from sharpv.engines.vllm.checkpoints import write_qwen2_5_vl

    methods = [m for m in args.methods.split(",") if m]
    bad = sorted(set(methods) - set(METHODS))
    if bad:
        raise SystemExit(f"--methods: unknown {bad}; choose from {METHODS}")
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"),
               HF_HUB_OFFLINE="1", VLLM_ENABLE_V1_MULTIPROCESSING="0")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = write_qwen2_5_vl(Path(tmp) / "qwen2_5_vl", frame_size=args.frame_size)
        for method in methods:
            cmd = [sys.executable, "-m", "bench", "vllm", "--worker", method,
                   "--checkpoint", str(path)] + _shared_flags(args)  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            row = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_ROW ")]
            if proc.returncode != 0 or not row:
                sys.stderr.write(proc.stderr[-4000:])
                raise SystemExit(f"bench vllm: the {method} process failed ({proc.returncode})")
            rows.append(json.loads(row[-1][len("BENCH_ROW ") :]))
            _print_row(rows[-1])
    payload = {
        "benchmark": "vllm",
        "command": "python -m bench vllm " + " ".join(argv or sys.argv[2:]),
        "config": {k: v for k, v in vars(args).items() if k not in ("worker", "checkpoint", "out")},
        "model": "tiny random-weight Qwen2.5-VL (hidden 128, 4 layers, ViT 32 x 2 blocks)",
        "env": _environment(),
        "rows": rows,
    }
    payload["config"]["out"] = None
    out = args.out or _default_out()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 0


def _shared_flags(args: argparse.Namespace) -> list[str]:
    return [
        "--budget", str(args.budget), "--frames", str(args.frames),
        "--frame-size", str(args.frame_size), "--batch", str(args.batch),
        "--new-tokens", str(args.new_tokens), "--reps", str(args.reps),
    ]  # fmt: skip


def _default_out() -> Path:
    from .common import RESULTS_DIR

    return RESULTS_DIR / f"vllm-cpu-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"


def _print_row(row: dict[str, Any]) -> None:
    prune = row["prune_step_median_s"]
    print(
        f"{row['method']:>7}: prompt {row['prompt_tokens']:5d} tok, "
        f"TTFT median {1e3 * row['ttft_median_s']:7.1f} ms (min {1e3 * row['ttft_min_s']:7.1f}), "
        f"{row['throughput_tok_s']:6.1f} tok/s (max {row['throughput_max_tok_s']:6.1f}), "
        f"prune step {'-' if prune is None else f'{1e3 * prune:.2f} ms'}",
        flush=True,
    )
