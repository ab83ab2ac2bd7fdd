"""The ``sharpv`` command line: ``sharpv demo`` and ``sharpv run``.

Errors a user can cause (missing or unreadable video, unsupported model type, a model that
cannot be loaded, bad options) print one line ``sharpv: error: ...`` and exit with code 2
(argument errors) or 1 (everything else).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main", "build_parser", "CLIError"]


class CLIError(Exception):
    """An error reported as one line, exit code 1."""


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _add_sharpv_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("SharpV options (paper defaults)")
    g.add_argument("--mode", default="adaptive", choices=["adaptive", "manual", "ratio", "budget"])
    g.add_argument("--w", type=float, default=1.0, help="spatial weight w (default 1.0)")
    g.add_argument("--threshold", type=float, default=1.6, help="K of --mode manual")
    g.add_argument("--keep-ratio", type=float, default=None, help="for --mode ratio")
    g.add_argument("--budget", type=float, default=None, help="for --mode budget")
    g.add_argument("--min-keep", type=int, default=1)
    g.add_argument("--metric", default="dissim", choices=["dissim", "cosine"])
    g.add_argument("--memory-threshold", type=float, default=0.2, help="M (default 0.2)")
    g.add_argument("--no-visual", action="store_true", help="skip Visual SharpV")
    g.add_argument("--no-memory", action="store_true", help="skip Memory SharpV")
    from .config import METHODS

    m = p.add_argument_group("method (SharpV or a baseline of sharpv.baselines)")
    m.add_argument(
        "--method",
        default="sharpv",
        choices=METHODS,
        help="pruning method (default sharpv); baselines run without Memory SharpV",
    )
    m.add_argument(
        "--method-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option of the baseline, repeatable: rate=0.7 (evs), prune_ratio=0.5 "
        "(dycoke_ttm), keep_ratio=0.3 (uniform, fastv), layer=3 (fastv), seed=1 (random_*)",
    )


def _method_options(items: list[str]) -> dict[str, Any] | None:
    """``["rate=0.7", "seed=1"]`` -> ``{"rate": 0.7, "seed": 1}`` (ints, then floats, else str)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CLIError(f"bad --method-arg {item!r}: expected KEY=VALUE")
        value: Any = raw
        for conv in (int, float):
            try:
                value = conv(raw)
                break
            except ValueError:
                continue
        out[key.strip().replace("-", "_")] = value
    return out or None


def _config(args: argparse.Namespace):
    from .config import SharpVConfig

    method = getattr(args, "method", "sharpv")
    try:
        return SharpVConfig(
            visual=not args.no_visual,
            memory=not args.no_memory and method == "sharpv",
            method=method,
            method_options=_method_options(getattr(args, "method_arg", [])),
            mode=args.mode,
            w=args.w,
            threshold=args.threshold,
            keep_ratio=args.keep_ratio,
            budget=args.budget,
            min_keep=args.min_keep,
            metric=args.metric,
            memory_threshold=args.memory_threshold,
        )
    except (TypeError, ValueError) as e:
        raise CLIError(f"bad SharpV option: {e}") from None


def _check_method_options(config: Any) -> None:
    """Fail early (one line) on baseline options the method does not take."""
    if config.method in ("sharpv", "fastv") or not config.method_options:
        if config.method == "fastv":
            bad = set(config.method_options or {}) - {"layer", "keep_ratio"}
            if bad:
                raise CLIError(f"bad --method-arg for fastv: {sorted(bad)}")
        return
    import inspect

    from .baselines import PRE_LLM_METHODS

    params = inspect.signature(PRE_LLM_METHODS[config.method]).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    bad = [k for k in config.method_options if k not in params]
    if bad and not takes_any:
        raise CLIError(f"bad --method-arg for {config.method}: {bad}")


def build_parser() -> argparse.ArgumentParser:
    """The ``sharpv`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="sharpv",
        description="SharpV: adaptive video-token and KV-cache pruning for video LLMs.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = sub.add_parser(
        "demo",
        help="dense vs SharpV on a synthetic video with a random-weight model (no download)",
        description="Runs anywhere with nothing downloaded: builds a video and a small "
        "LLaVA-OneVision with RANDOM weights in code, runs dense and SharpV, prints the "
        "statistics and writes retention.png and similarity.png.",
    )
    d.add_argument("--frames", type=_positive_int, default=32)
    d.add_argument("--out-dir", default="sharpv-demo", help="folder of the PNGs")
    d.add_argument("--max-new-tokens", type=_positive_int, default=12)
    d.add_argument("--layers", type=_positive_int, default=8, help="LM decoder layers")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--device", default="cpu")
    d.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_sharpv_options(d)

    r = sub.add_parser(
        "run",
        help="answer a prompt about a video with a real checkpoint",
        description="Loads a checkpoint (local folder or hub id), decodes the video with "
        "PyAV, answers the prompt and prints SharpV's statistics.",
    )
    r.add_argument("--model", required=True, help="hub id or local folder")
    r.add_argument("--video", required=True, help="video file")
    r.add_argument("--prompt", required=True, help="question about the video")
    r.add_argument("--frames", type=_positive_int, default=32, help="frames sampled uniformly")
    r.add_argument("--dense", action="store_true", help="run the dense model (no SharpV)")
    r.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    r.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    r.add_argument("--max-new-tokens", type=_positive_int, default=64)
    r.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_sharpv_options(r)
    return parser


# --------------------------------------------------------------------------- demo
def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    config = _config(args)
    _check_method_options(config)
    run_demo(
        frames=args.frames,
        out_dir=args.out_dir,
        max_new_tokens=args.max_new_tokens,
        layers=args.layers,
        seed=args.seed,
        device=args.device,
        config=config,
        progress=not args.no_progress,
    )
    return 0


# --------------------------------------------------------------------------- run
def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _load_model(name: str, device: str, dtype_name: str):
    import torch
    import transformers
    from transformers import AutoConfig

    from .adapters import UnsupportedModelError, get_adapter

    local = os.path.expanduser(name)
    if (os.path.isabs(local) or name.startswith((".", "~"))) and not os.path.isdir(local):
        raise CLIError(f"cannot load model {name!r}: no such folder")
    try:
        config = AutoConfig.from_pretrained(local if os.path.isdir(local) else name)
    except Exception as e:
        raise CLIError(f"cannot load model {name!r}: {_first_line(e)}") from None
    try:
        adapter = get_adapter(config)
    except UnsupportedModelError as e:
        raise CLIError(str(e)) from None
    if dtype_name == "auto":
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        dtype = getattr(torch, dtype_name)
    try:
        cls = getattr(transformers, config.architectures[0], None) if config.architectures else None
        cls = cls or transformers.AutoModelForImageTextToText
        model = cls.from_pretrained(name, dtype=dtype).to(device).eval()
    except Exception as e:
        raise CLIError(f"cannot load model {name!r}: {_first_line(e)}") from None
    return model, adapter


def _inputs(name: str, model, adapter, frames, prompt: str):
    """Processor outputs if the checkpoint's processor works here, else the adapter's own
    processor-free preprocessing. Returns ``(inputs, tokenizer_or_processor)``."""
    try:
        from transformers import AutoProcessor

        proc = AutoProcessor.from_pretrained(name)
        if not hasattr(proc, "video_processor") or getattr(proc, "chat_template", None) is None:
            raise ValueError("no usable video processor")
        msgs = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
        text = proc.apply_chat_template(msgs, add_generation_prompt=True)
        inputs = proc(text=[text], videos=[list(frames)], return_tensors="pt")
        return dict(inputs), proc
    except Exception:
        pass
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name)
    except Exception as e:
        raise CLIError(f"cannot load the tokenizer of {name!r}: {_first_line(e)}") from None
    try:
        return adapter.build_inputs(model, tok, frames, prompt), tok
    except NotImplementedError as e:
        raise CLIError(str(e)) from None


def _cmd_run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from .demo import measure_generate
    from .integration import apply_sharpv
    from .video import VideoReadError, read_video

    config = _config(args)
    _check_method_options(config)
    try:
        frames = read_video(args.video, args.frames)
    except VideoReadError as e:
        raise CLIError(str(e)) from None
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, adapter = _load_model(args.model, device, args.dtype)
    inputs, tok = _inputs(args.model, model, adapter, frames, args.prompt)
    dtype = next(model.parameters()).dtype
    inputs = {
        k: (v.to(device, dtype) if v.is_floating_point() else v.to(device))
        if isinstance(v, torch.Tensor)
        else v
        for k, v in inputs.items()
    }
    if not args.dense:
        apply_sharpv(model, config)
    with torch.inference_mode():
        with tqdm(
            total=args.max_new_tokens, desc="generate", disable=args.no_progress, file=sys.stderr
        ) as bar:
            m = _measure(measure_generate, model, inputs, args.max_new_tokens, bar)
    decode = getattr(tok, "batch_decode", None) or tok.tokenizer.batch_decode
    answer = decode([m.tokens], skip_special_tokens=True)[0].strip()
    print(f"answer: {answer}")
    print(
        f"video: {frames.shape[0]} frames; prompt {inputs['input_ids'].shape[1]} tokens; "
        f"{'dense' if args.dense else _label(config)} on {device}"
    )
    if not args.dense:
        _print_stats(model.sharpv_stats[0], config.memory_threshold)
    print(
        f"TTFT {m.ttft_s * 1e3:.0f} ms; time per output token {m.tpot_s * 1e3:.1f} ms; "
        f"peak memory {m.peak_mem_bytes / 2**20:.1f} MiB"
    )
    return 0


def _label(config: Any) -> str:
    return "SharpV" if config.method == "sharpv" else config.method


def _measure(fn, model, inputs, n, bar):
    try:
        return fn(model, inputs, n, bar)
    except ValueError as e:
        raise CLIError(f"generation failed: {_first_line(e)}") from None


def _print_stats(s: Any, threshold: float) -> None:
    import torch

    ratios = " ".join(f"{float(x):.2f}" for x in s.frame_ratios)
    counts = " ".join(str(int(x)) for x in s.frame_counts)
    print(f"per-frame keep ratio r_t: {ratios}")
    print(f"per-frame tokens kept:    {counts}")
    if s.layer_similarities is not None:
        sims = " ".join(f"{float(x):.2f}" for x in s.layer_similarities)
        print(f"per-layer similarity:     {sims}")
        dropped = [int(i) for i in torch.nonzero(s.dropped_layers).flatten()]
        print(f"layers dropped (sim < {threshold:g}): {dropped or 'none'}")
    print(
        f"VR {s.visual_ratio:.1%} ({s.visual_tokens_kept}/{s.visual_tokens_in} video tokens); "
        f"MR {s.memory_ratio:.1%}; token budget {s.token_budget:.1%}"
    )


# --------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sharpv`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if args.command == "demo":
            return _cmd_demo(args)
        return _cmd_run(args)
    except CLIError as e:
        print(f"sharpv: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover
        print("sharpv: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
