"""Arguments of the ``sharpv`` command line and the checks that need nothing but them.

Everything here is plain Python: parsing and these checks import neither torch nor triton,
so a bad option is reported in well under a second. The checks that need torch, files or a
model are in :mod:`sharpv.cli`.

Examples:
    >>> args = build_parser().parse_args(["demo", "--mode", "budget", "--budget", "0.3"])
    >>> check_options(args, tokens_per_frame=196)["budget"]
    0.3
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, NoReturn

from .methods import MethodOptionError, ResolvedOptions, validate
from .methods._vocab import vocab

__all__ = [
    "CLIError",
    "build_parser",
    "check_options",
    "method_options",
    "quick_check_device",
    "vocab",
]


class CLIError(Exception):
    """An error reported as one line; ``code`` is the exit status (1, or 2 for usage)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _usage(message: str) -> NoReturn:
    raise CLIError(message, code=2)


# --------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``sharpv: error: ...``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"sharpv: error: {message} (see {self.prog} --help)\n")


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _int(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None


#: ``(flag, option)`` of SharpV's own flags; each passes its text to the method registry
_OPTION_FLAGS = (
    ("mode", "mode"), ("w", "w"), ("threshold", "threshold"), ("keep_ratio", "keep_ratio"),
    ("budget", "budget"), ("min_keep", "min_keep"), ("metric", "metric"),
    ("memory_threshold", "memory_threshold"),
)  # fmt: skip


def _add_sharpv_options(p: argparse.ArgumentParser) -> None:
    """The method flags. Values are passed as text to :func:`sharpv.methods.validate`, which
    parses and checks them exactly as it does for every other front end."""
    v = vocab()
    m = p.add_argument_group("method (see `sharpv methods` for every method and its options)")
    m.add_argument(
        "--method",
        default=None,
        help="a registered pruning method (default sharpv; `sharpv methods` lists them)",
    )
    m.add_argument(
        "--opt",
        "--method-arg",
        dest="method_arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the method, repeatable: --opt rate=0.7 (evs), --opt layer=3 (fastv)",
    )
    g = p.add_argument_group("shortcuts for options of sharpv (and the methods that share them)")
    g.add_argument("--mode", default=None, help=f"one of {', '.join(v.VISUAL_MODES)} "
                   f"(default {v.DEFAULT_MODE})")  # fmt: skip
    g.add_argument("--w", default=None, help=f"spatial weight w (default {v.DEFAULT_W:g})")
    g.add_argument("--threshold", default=None, help="K of --mode manual "
                   f"(default {v.DEFAULT_THRESHOLD:g})")  # fmt: skip
    g.add_argument("--keep-ratio", default=None, help="fraction kept per frame, (0, 1]")
    g.add_argument("--budget", default=None, help="fraction of each video's tokens kept, (0, 1]")
    g.add_argument("--min-keep", default=None, help="fewest tokens kept per frame "
                   f"(default {v.DEFAULT_MIN_KEEP})")  # fmt: skip
    g.add_argument("--metric", default=None, help=f"one of {', '.join(v.METRICS)}")
    g.add_argument("--memory-threshold", default=None, help="M of Memory SharpV, [-1, 1] "
                   f"(default {v.DEFAULT_MEMORY_THRESHOLD:g})")  # fmt: skip
    g.add_argument("--no-visual", action="store_true", help="option visual=false")
    g.add_argument("--no-memory", action="store_true", help="option memory=false")


def _version() -> str:
    from . import __version__

    return f"sharpv {__version__} (distribution sharpv-kernels)"


def build_parser() -> argparse.ArgumentParser:
    """The ``sharpv`` argument parser (no torch import).

    Examples:
        >>> build_parser().parse_args(["demo", "--frames", "8"]).frames
        8
    """
    parser = _Parser(
        prog="sharpv",
        description="SharpV: adaptive video-token and KV-cache pruning for video LLMs.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = sub.add_parser(
        "demo",
        help="dense vs SharpV with a random-weight model (no download)",
        description="Runs anywhere with nothing downloaded: builds a small LLaVA-OneVision "
        "with RANDOM weights in code, runs it dense and with SharpV (or --method) on a "
        "synthetic clip or on --video PATH, prints the statistics and writes retention.png "
        "and similarity.png.",
    )
    d.add_argument(
        "--video",
        default=None,
        metavar="PATH",
        help="a real video file instead of the synthetic clip (sampled uniformly)",
    )
    d.add_argument("--out-dir", default="sharpv-demo", help="folder of the PNGs")
    d.add_argument("--layers", type=_positive_int, default=8, help="LM decoder layers")
    d.add_argument("--seed", type=_int, default=0)
    _add_generation_options(d, max_new_tokens=12, device="cpu", device_help="default cpu")

    r = sub.add_parser(
        "run",
        help="answer a prompt about a video with a real checkpoint",
        description="Loads a checkpoint (local folder or hub id), decodes the video with "
        "PyAV, answers the prompt and prints SharpV's statistics.",
    )
    r.add_argument("--model", required=True, help="hub id or local folder")
    r.add_argument("--video", required=True, help="video file")
    r.add_argument("--prompt", required=True, help="question about the video")
    r.add_argument("--dense", action="store_true", help="run the dense model (no SharpV)")
    r.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    _add_generation_options(
        r, max_new_tokens=64, device=None, device_help="default: cuda if available"
    )

    ms = sub.add_parser(
        "methods",
        help="list every registered pruning method and its options",
        description="Every registered method (built-in or from the sharpv.methods entry "
        "points): its stage and each option's type, range, default and when it is used.",
    )
    ms.add_argument("names", nargs="*", metavar="NAME", help="only these methods")
    return parser


def _add_generation_options(
    p: argparse.ArgumentParser, *, max_new_tokens: int, device: str | None, device_help: str
) -> None:
    """The options ``demo`` and ``run`` share: frames, decoding length, device, progress bars,
    and the method's options."""
    p.add_argument("--frames", type=_positive_int, default=32, help="frames sampled uniformly")
    p.add_argument("--max-new-tokens", type=_positive_int, default=max_new_tokens)
    p.add_argument("--device", default=device, help=f"torch device ({device_help})")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_sharpv_options(p)


# --------------------------------------------------------------------------- checks (no torch)
def method_options(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """``(method name, {option: text})`` of the parsed arguments (not yet validated).

    Raises:
        CLIError: (code 2) an ``--opt`` that is not ``KEY=VALUE``, or an option given twice.
    """
    name = args.method or "sharpv"
    opts: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        if key in opts:
            _usage(f"option {key} of method {name} is given twice")
        opts[key] = value

    for flag, key in _OPTION_FLAGS:
        if getattr(args, flag) is not None:
            put(key, getattr(args, flag))
    if args.no_visual:
        put("visual", "false")
    if args.no_memory:
        put("memory", "false")
    for item in args.method_arg:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            _usage(f"bad --opt {item!r}: expected KEY=VALUE")
        put(key.strip().replace("-", "_"), raw)
    return name, opts


def check_options(args: argparse.Namespace, tokens_per_frame: int | None) -> ResolvedOptions:
    """Validate the method and its options with the registry (no torch).

    Returns:
        The resolved options.

    Raises:
        CLIError: (code 2) the registry's error, word for word; or ``min_keep`` above the
            model's tokens per frame when it is known.
    """
    name, opts = method_options(args)
    try:
        resolved = validate(name, opts)
    except MethodOptionError as e:
        raise CLIError(str(e), code=2) from None
    min_keep = resolved.get("min_keep")
    if tokens_per_frame is not None and min_keep is not None and min_keep > tokens_per_frame:
        _usage(
            f"option min_keep of method {name} must be at most f = {tokens_per_frame} "
            f"(tokens per frame of this model), got {min_keep}"
        )
    return resolved


#: Device types ``torch.device`` parses (its ``DeviceType`` names), for the early check.
_TORCH_DEVICE_TYPES = frozenset(
    "cpu cuda mkldnn opengl opencl ideep hip ve fpga maia xla lazy vulkan mps meta hpu mtia "
    "xpu ipu privateuseone".split()
)


def quick_check_device(name: str) -> None:
    """The device checks that need no torch import (``sharpv.cli`` checks the rest with torch):
    the name's syntax, and CUDA asked of a CPU-only torch build or a machine without an
    NVIDIA driver."""
    kind, _, index = name.partition(":")
    if kind not in _TORCH_DEVICE_TYPES or (index and not index.isdigit()):
        _usage(f"--device {name!r} is not a torch device (expected cpu, cuda, cuda:N, ...)")
    if kind != "cuda":
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        build = version("torch")
    except PackageNotFoundError:  # pragma: no cover - torch installed without metadata
        build = ""
    cpu_build = build.endswith("+cpu")
    # ROCm builds serve "cuda" on AMD GPUs; WSL exposes NVIDIA GPUs through /dev/dxg
    no_driver = (
        sys.platform.startswith("linux")
        and "rocm" not in build
        and not any(os.path.exists(p) for p in ("/proc/driver/nvidia", "/dev/dxg"))
    )
    if cpu_build or no_driver:
        why = "torch is a CPU-only build" if cpu_build else "no NVIDIA driver is loaded"
        raise CLIError(f"--device {name}: no CUDA device is available here ({why}); "
                       "use --device cpu")  # fmt: skip
