"""Arguments of the ``sharpv`` command line and the checks that need nothing but them.

Everything here is plain Python: parsing and these checks import neither torch nor triton,
so a bad option is reported in well under a second. The checks that need torch, files or a
model are in :mod:`sharpv.cli`.

Examples:
    >>> args = build_parser().parse_args(["demo", "--mode", "budget", "--budget", "0.3"])
    >>> check_options(args, tokens_per_frame=196)  # no error
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

__all__ = [
    "CLIError",
    "build_parser",
    "check_options",
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


def vocab() -> ModuleType:
    """``sharpv_kernels.vocab`` without importing torch and triton (seconds).

    ``import sharpv_kernels`` registers the operators, so it imports torch and triton; the
    vocabulary itself is plain Python. The command line loads it alone so that argument
    errors come back at once; once the package is imported it is the same module.
    """
    name = "sharpv_kernels.vocab"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("sharpv_kernels")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / "vocab.py"
        if path.is_file():
            vspec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(vspec)
            vspec.loader.exec_module(module)
            sys.modules[name] = module
            return module
    import sharpv_kernels.vocab as vocab  # pragma: no cover - unusual installs

    return vocab


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


def _finite(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {s!r}")
    return v


def _add_sharpv_options(p: argparse.ArgumentParser) -> None:
    v = vocab()
    g = p.add_argument_group("SharpV options (paper defaults)")
    g.add_argument(
        "--mode",
        default=None,
        choices=v.VISUAL_MODES,
        help=f"token selection (default {v.DEFAULT_MODE})",
    )
    g.add_argument(
        "--w",
        type=_finite,
        default=None,
        help=f"spatial weight w in I = T + w*S (default {v.DEFAULT_W:g})",
    )
    g.add_argument(
        "--threshold",
        type=_finite,
        default=None,
        help=f"K of --mode manual (default {v.DEFAULT_THRESHOLD:g})",
    )
    g.add_argument(
        "--keep-ratio",
        type=_finite,
        default=None,
        help="fraction kept per frame, in (0, 1]; --mode ratio only",
    )
    g.add_argument(
        "--budget",
        type=_finite,
        default=None,
        help="fraction of each video's tokens kept, in (0, 1]; --mode budget only",
    )
    g.add_argument(
        "--min-keep",
        type=_int,
        default=None,
        help=f"fewest tokens kept per frame, in [0, f] (default {v.DEFAULT_MIN_KEEP})",
    )
    g.add_argument(
        "--metric",
        default=None,
        choices=v.METRICS,
        help=f"token dissimilarity (default {v.DEFAULT_METRIC})",
    )
    g.add_argument(
        "--memory-threshold",
        type=_finite,
        default=None,
        help=f"M of Memory SharpV, in [-1, 1] (default {v.DEFAULT_MEMORY_THRESHOLD:g})",
    )
    g.add_argument("--no-visual", action="store_true", help="skip Visual SharpV")
    g.add_argument("--no-memory", action="store_true", help="skip Memory SharpV")

    m = p.add_argument_group("method (SharpV or a baseline of sharpv.baselines)")
    m.add_argument(
        "--method",
        default="sharpv",
        choices=v.METHODS,
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
    d.add_argument("--frames", type=_positive_int, default=32, help="frames (sampled uniformly)")
    d.add_argument("--out-dir", default="sharpv-demo", help="folder of the PNGs")
    d.add_argument("--max-new-tokens", type=_positive_int, default=12)
    d.add_argument("--layers", type=_positive_int, default=8, help="LM decoder layers")
    d.add_argument("--seed", type=_int, default=0)
    d.add_argument("--device", default="cpu", help="torch device (default cpu)")
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


# --------------------------------------------------------------------------- checks (no torch)
#: Visual options each method reads (``None``: all of them).
_VISUAL_OPTIONS_USED: dict[str, tuple[str, ...] | None] = {
    "sharpv": None,
    "random_per_frame": None,  # SharpV's per-frame counts
    "random_video": None,  # SharpV's total
    "uniform": ("keep_ratio", "min_keep", "w", "metric"),
    "evs": (),
    "dycoke_ttm": (),
    "fastv": (),
}
_VISUAL_OPTIONS = ("mode", "w", "threshold", "keep_ratio", "budget", "min_keep", "metric")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_options(args: argparse.Namespace, tokens_per_frame: int | None) -> None:
    """Option rules of the API, checked on the parsed arguments alone (no torch).

    Raises:
        CLIError: (code 2) an option of another mode or method, a mode without its
            option, or a value out of the op's range.
    """
    v = vocab()
    mode = args.mode or v.DEFAULT_MODE
    method = args.method
    given = {name for name in _VISUAL_OPTIONS if getattr(args, name) is not None}
    if method != "sharpv" and args.no_visual:
        _usage(f"--no-visual turns off pruning, so --method {method} would not run")
    if args.no_visual and given:
        _usage(f"{_flag(sorted(given)[0])} is an option of Visual SharpV, which --no-visual "
               "turns off")  # fmt: skip
    used = _VISUAL_OPTIONS_USED[method]
    if used is not None:
        extra = sorted(given - set(used))
        if extra:
            _usage(f"{_flag(extra[0])} is not used by --method {method}")
    for name, wanted in (("keep_ratio", "ratio"), ("budget", "budget"), ("threshold", "manual")):
        if name in given and mode != wanted and not (method == "uniform" and name == "keep_ratio"):
            _usage(f"{_flag(name)} is only used with --mode {wanted} (got --mode {mode})")
        if mode == wanted and name != "threshold" and getattr(args, name) is None:
            _usage(f"--mode {wanted} needs {_flag(name)} in (0, 1]")
    for name in ("keep_ratio", "budget"):
        value = getattr(args, name)
        if value is not None and not 0.0 < value <= 1.0:
            _usage(f"{_flag(name)} must be in (0, 1], got {value:g}")
    if args.min_keep is not None:
        hi = tokens_per_frame if tokens_per_frame is not None else "f"
        if args.min_keep < 0 or (tokens_per_frame is not None and args.min_keep > hi):
            _usage(f"--min-keep must be in [0, {hi}] (f = tokens per frame), got {args.min_keep}")
    memory_on = method == "sharpv" and not args.no_memory
    if args.memory_threshold is not None:
        if not memory_on:
            _usage(
                "--memory-threshold is only used by Memory SharpV "
                "(--method sharpv without --no-memory)"
            )
        if not -1.0 <= args.memory_threshold <= 1.0:
            _usage(f"--memory-threshold must be in [-1, 1], got {args.memory_threshold:g}")
    if args.method_arg and method == "sharpv":
        _usage("--method-arg is for the baselines; SharpV takes its own options")
    _method_options(args.method_arg)


def _method_options(items: list[str]) -> dict[str, Any] | None:
    """``["rate=0.7", "seed=1"]`` -> ``{"rate": 0.7, "seed": 1}`` (ints, then floats, else str)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            _usage(f"bad --method-arg {item!r}: expected KEY=VALUE")
        value: Any = raw
        for conv in (int, float):
            try:
                value = conv(raw)
                break
            except ValueError:
                continue
        out[key.strip().replace("-", "_")] = value
    return out or None


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
