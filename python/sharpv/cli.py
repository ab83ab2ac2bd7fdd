"""The ``sharpv`` command line: ``sharpv demo``, ``sharpv run``, ``sharpv methods``, ``--version``.

Every input a user can get wrong is checked before any heavy work, in this order: the
method and its options (``--method NAME``, ``--opt KEY=VALUE`` and SharpV's own flags,
validated by :func:`sharpv.methods.validate`: pure Python, no torch, the same error text as
every other front end), the files (video metadata, model folder or hub id), the device, then
the method's pre-LLM stage run on a tiny tensor. ``sharpv run`` reads the model's config
before its weights, and an intra-LLM stage (FastV's ``layer``) is built on the loaded model
before anything is generated. Each error prints one line ``sharpv: error: ...`` on stderr
and exits with code 2 (usage) or 1 (everything else); no traceback.

Examples:
    >>> main(["demo", "--frames", "8", "--no-progress"])  # doctest: +SKIP
    0
    >>> main(["demo", "--keep-ratio", "0.3"])  # doctest: +SKIP
    sharpv: error: option keep_ratio of method sharpv is only used with mode=ratio, got ...
    2
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from .cli_args import (
    CLIError,
    build_parser,
    check_options,
    method_options,
    quick_check_device,
)

__all__ = ["main", "build_parser", "CLIError", "HUB_PROBE_TIMEOUT_S", "print_stats"]

#: Seconds the hub probe of ``sharpv run --model ORG/NAME`` waits (one try, no retries).
HUB_PROBE_TIMEOUT_S = 5.0
#: ``sharpv run``: without the model's tokens per frame, the pruner's dry run uses this many
#: (or ``--min-keep``, if larger); the op checks ``min_keep <= f`` itself at generate time.
_PROBE_TOKENS = 16


# --------------------------------------------------------------------------- checks (torch)
def _check_device(name: str):
    """``torch.device(name)``, present on this machine, or a one-line error."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        msg = f"--device {name!r} is not a torch device (expected cpu, cuda, cuda:N, ...)"
        raise CLIError(msg, code=2) from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CLIError(
                f"--device {name}: no CUDA device is available on this machine "
                f"(torch {torch.__version__}); use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CLIError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return device
    try:
        torch.empty(1, device=device)
    except Exception as e:
        raise CLIError(f"--device {name}: not usable here ({_first_line(e)})") from None
    return device


def _config(args: argparse.Namespace):
    """The :class:`sharpv.SharpVConfig` of the arguments (validated by the method registry)."""
    from .config import SharpVConfig
    from .methods import MethodOptionError

    name, opts = method_options(args)
    try:
        return SharpVConfig(method=name, method_options=opts)
    except MethodOptionError as e:
        raise CLIError(str(e), code=2) from None


def _check_method(config: Any, tokens_per_frame: int) -> None:
    """Run the method's pre-LLM stage on a tiny random video (2 frames x f x 8), before any
    model work: the option rules are the registry's, but the method's own code may reject a
    combination only the data reveal (``min_keep`` above ``f``)."""
    import torch

    from . import methods

    prune = methods.get(config.method).pruner(config.options)
    if prune is None:
        return
    try:
        g = torch.Generator().manual_seed(0)
        prune(torch.randn(2, tokens_per_frame, 8, generator=g), [0, 2])
    except (TypeError, ValueError) as e:
        raise CLIError(f"method {config.method}: {_first_line(e)}", 2) from None


def _check_hooks(model: Any, config: Any) -> None:
    """The intra-LLM stage built on the loaded model (FastV's ``layer`` against its depth),
    before anything is generated; nothing is installed."""
    import torch

    from . import methods

    factory = methods.get(config.method).hooks_factory(config.options)
    if factory is None:
        return
    try:
        factory(model, torch.ones(1, 1, dtype=torch.bool))
    except (TypeError, ValueError) as e:
        raise CLIError(f"method {config.method}: {_first_line(e)}", code=2) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# --------------------------------------------------------------------------- demo
def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import TOKENS_PER_FRAME

    check_options(args, TOKENS_PER_FRAME)
    quick_check_device(args.device)
    config = _config(args)
    if args.video is not None:
        from .video import VideoReadError, probe_video

        try:
            probe_video(args.video)
        except VideoReadError as e:
            raise CLIError(str(e)) from None
    _check_device(args.device)
    _check_method(config, TOKENS_PER_FRAME)

    from .demo import run_demo
    from .video import VideoReadError

    try:
        run_demo(
            frames=args.frames,
            out_dir=args.out_dir,
            max_new_tokens=args.max_new_tokens,
            layers=args.layers,
            seed=args.seed,
            device=args.device,
            config=config,
            progress=not args.no_progress,
            video=args.video,
            before_dense=lambda model: _check_hooks(model, config),
        )
    except VideoReadError as e:
        raise CLIError(str(e)) from None
    return 0


# --------------------------------------------------------------------------- run
def _hub_offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(constants.HF_HUB_OFFLINE) or env in {"1", "ON", "YES", "TRUE"}


def _resolve_model(name: str) -> tuple[str, bool]:
    """Where to load ``--model`` from: ``(folder or hub id, local_files_only)``.

    A folder is used as is. A hub id is looked up in the local cache and probed on the hub
    once, with a short timeout and no retries: offline (``HF_HUB_OFFLINE``) or unreachable,
    a cached copy is used, and without one the error says so at once.
    """
    local = os.path.expanduser(name)
    if os.path.isdir(local):
        return local, True
    if os.path.isabs(local) or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name:
        raise CLIError(f"cannot load model {name!r}: no such folder")
    from huggingface_hub import HfApi, errors, try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    hint = "pass a local folder with --model /path/to/checkpoint"
    if _hub_offline():
        if cached:
            return name, True
        raise CLIError(
            f"model {name!r} is not in the local Hugging Face cache and offline mode is on "
            f"(HF_HUB_OFFLINE); download it first or {hint}"
        )
    try:
        HfApi().model_info(name, timeout=HUB_PROBE_TIMEOUT_S)
    except errors.RepositoryNotFoundError:
        raise CLIError(
            f"no model {name!r} on the Hugging Face Hub (or it is gated/private: log in "
            f"with `hf auth login`); or {hint}"
        ) from None
    except Exception as e:
        if cached:
            return name, True
        raise CLIError(
            f"cannot reach the Hugging Face Hub for {name!r} ({_first_line(e)}) and it is not "
            f"cached; offline? Set HF_HUB_OFFLINE=1 to use cached models only, or {hint}"
        ) from None
    return name, False


def _from_pretrained(cls: Any, source: str, local_only: bool, **kwargs: Any) -> Any:
    """Every ``from_pretrained`` of ``sharpv run`` goes through here."""
    return cls.from_pretrained(source, local_files_only=local_only, **kwargs)


def _load_config(source: str, local_only: bool, name: str):
    from transformers import AutoConfig

    from .adapters import UnsupportedModelError, get_adapter

    if os.path.isdir(source) and not os.path.isfile(os.path.join(source, "config.json")):
        # transformers 4.x would guess a model type from the folder's name
        raise CLIError(f"cannot load model {name!r}: the folder has no config.json")
    try:
        config = _from_pretrained(AutoConfig, source, local_only)
    except Exception as e:
        raise CLIError(f"cannot load model {name!r}: {_first_line(e)}") from None
    try:
        adapter = get_adapter(config)
    except UnsupportedModelError as e:
        raise CLIError(str(e)) from None
    return config, adapter


def _load_model(source: str, local_only: bool, name: str, config: Any, device, dtype_name: str):
    import torch
    import transformers

    from .adapters.loading import dtype_kwargs

    if dtype_name == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    else:
        dtype = getattr(torch, dtype_name)
    try:
        cls = getattr(transformers, config.architectures[0], None) if config.architectures else None
        cls = cls or transformers.AutoModelForImageTextToText
        model = _from_pretrained(cls, source, local_only, **dtype_kwargs(dtype))
        return model.to(device).eval()
    except Exception as e:
        raise CLIError(f"cannot load model {name!r}: {_first_line(e)}") from None


def _inputs(source: str, local_only: bool, model, adapter, frames, prompt: str):
    """Processor outputs if the checkpoint's processor works here, else the adapter's own
    processor-free preprocessing. Returns ``(inputs, tokenizer_or_processor)``."""
    try:
        from transformers import AutoProcessor

        proc = _from_pretrained(AutoProcessor, source, local_only)
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
        tok = _from_pretrained(AutoTokenizer, source, local_only)
    except Exception as e:
        raise CLIError(f"cannot load the tokenizer of {source!r}: {_first_line(e)}") from None
    try:
        return adapter.build_inputs(model, tok, frames, prompt), tok
    except NotImplementedError as e:
        raise CLIError(str(e)) from None


def _cmd_run(args: argparse.Namespace) -> int:
    check_options(args, None)
    if args.device is not None:
        quick_check_device(args.device)
    config = _config(args)
    from .video import VideoReadError, probe_video, read_video

    try:
        probe_video(args.video)
    except VideoReadError as e:
        raise CLIError(str(e)) from None
    source, local_only = _resolve_model(args.model)

    import torch

    device = _check_device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    _check_method(config, max(_PROBE_TOKENS, config.options.get("min_keep") or 0))
    model_config, adapter = _load_config(source, local_only, args.model)
    try:
        frames = read_video(args.video, args.frames)
    except VideoReadError as e:
        raise CLIError(str(e)) from None
    model = _load_model(source, local_only, args.model, model_config, device, args.dtype)
    inputs, tok = _inputs(source, local_only, model, adapter, frames, args.prompt)
    dtype = next(model.parameters()).dtype
    inputs = {
        k: (v.to(device, dtype) if v.is_floating_point() else v.to(device))
        if isinstance(v, torch.Tensor)
        else v
        for k, v in inputs.items()
    }
    if not args.dense:
        _check_hooks(model, config)
        from .integration import apply_sharpv

        apply_sharpv(model, config)
    return _generate_and_report(args, model, inputs, tok, frames.shape[0], config, device)


def _generate_and_report(args, model, inputs, tok, n_frames: int, config, device) -> int:
    import torch
    from tqdm.auto import tqdm

    from .timing import measure_generate

    with torch.inference_mode():
        with tqdm(
            total=args.max_new_tokens, desc="generate", disable=args.no_progress, file=sys.stderr
        ) as bar:
            try:
                m = measure_generate(model, inputs, args.max_new_tokens, bar, cpu_rss=False)
            except ValueError as e:
                raise CLIError(f"generation failed: {_first_line(e)}") from None
    decode = getattr(tok, "batch_decode", None) or tok.tokenizer.batch_decode
    answer = decode([m.tokens], skip_special_tokens=True)[0].strip()
    print(f"answer: {answer}")
    print(
        f"video: {n_frames} frames; prompt {inputs['input_ids'].shape[1]} tokens; "
        f"{'dense' if args.dense else _label(config)} on {device}"
    )
    sample = None if args.dense else model.sharpv_stats[0]
    if sample is not None:
        print_stats(sample, config)
    print(_kv_line(model, inputs["input_ids"].shape[1], sample))
    line = f"TTFT {m.ttft_s * 1e3:.0f} ms; time per output token {m.tpot_s * 1e3:.1f} ms"
    if m.peak_mem_bytes is not None:
        line += f"; peak memory {m.peak_mem_bytes / 2**20:.1f} MiB ({m.peak_mem_source})"
    print(line)
    return 0


def _kv_line(model: Any, prompt_tokens: int, sample: Any) -> str:
    """The KV cache's exact size after prefill, with the dense model's beside it."""
    from .stats import kv_entries_after_prefill, kv_entry_bytes

    layers = (getattr(model.config, "text_config", None) or model.config).num_hidden_layers
    entry = kv_entry_bytes(model)
    dense = kv_entries_after_prefill(prompt_tokens, layers, None) * entry / 2**20
    if sample is None:
        return f"KV cache after prefill: {dense:.1f} MiB (exact)"
    kept = kv_entries_after_prefill(prompt_tokens, layers, sample) * entry / 2**20
    return f"KV cache after prefill: {kept:.1f} MiB (exact; dense {dense:.1f} MiB)"


def _label(config: Any) -> str:
    return "SharpV" if config.method == "sharpv" else config.method


def print_stats(s: Any, config: Any, echo: Any = print) -> None:
    """Print one sample's statistics: what the method in use kept, per frame and overall.

    The per-frame kept fraction is ``counts / f`` for every method; SharpV's own keep ratio
    ``r_t`` is printed only when SharpV chose the tokens.
    """
    import torch

    f = s.tokens_per_frame.clamp_min(1).float()
    kept = " ".join(f"{float(x):.2f}" for x in s.frame_counts.float() / f)
    echo(f"per-frame kept fraction (kept/f): {kept}")
    echo(f"per-frame tokens kept:            {' '.join(str(int(x)) for x in s.frame_counts)}")
    if config.method == "sharpv" and config.visual:
        ratios = " ".join(f"{float(x):.2f}" for x in s.frame_ratios)
        echo(f"SharpV keep ratio r_t:            {ratios}")
    if s.layer_similarities is not None:
        sims = " ".join(f"{float(x):.2f}" for x in s.layer_similarities)
        echo(f"per-layer visual similarity: {sims}")
        dropped = [int(i) for i in torch.nonzero(s.dropped_layers).flatten()]
        echo(f"layers dropped (sim < {config.memory_threshold:g}): {dropped or 'none'}")
    echo(
        f"VR {s.visual_ratio:.1%} ({s.visual_tokens_kept}/{s.visual_tokens_in} video tokens); "
        f"MR {s.memory_ratio:.1%}; token budget {s.token_budget:.1%}"
    )


# --------------------------------------------------------------------------- methods
def _cmd_methods(args: argparse.Namespace) -> int:
    from . import methods

    wanted = args.names or list(methods.names())
    try:
        listed = [methods.get(n) for n in wanted]
    except methods.MethodOptionError as e:
        raise CLIError(str(e), code=2) from None
    print("\n".join(methods.describe(m) for m in listed))
    return 0


# --------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sharpv`` console script; returns the exit code.

    Examples:
        >>> main(["--version"])  # doctest: +SKIP
        sharpv 0.1.0 (distribution sharpv-kernels)
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if args.command == "demo":
            return _cmd_demo(args)
        if args.command == "methods":
            return _cmd_methods(args)
        return _cmd_run(args)
    except CLIError as e:
        print(f"sharpv: error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:  # pragma: no cover
        print("sharpv: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
