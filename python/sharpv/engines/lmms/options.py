"""``--model_args`` of the lmms-eval ``sharpv`` model, turned into validated settings.

lmms-eval parses ``key=value,key=value`` itself and hands the model class keyword arguments
whose values are already ``bool``/``int``/``float``/``str``; :func:`parse_model_args` accepts
those and plain strings alike, and raises ``ValueError`` naming the offending argument
before any model is loaded. This module does not import lmms-eval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...config import SharpVConfig
from ...methods import get

__all__ = ["LmmsOptions", "parse_model_args", "method_option_names", "DTYPES"]

#: ``dtype=`` values (``auto``: bfloat16 on CUDA, float32 elsewhere).
DTYPES = ("auto", "float32", "float16", "bfloat16")


def method_option_names(method: str) -> tuple[str, ...]:
    """The options ``method`` takes in ``--model_args``: its declared schema (the registry).

    Examples:
        >>> method_option_names("evs")
        ('rate', 'memory', 'memory_threshold')
        >>> method_option_names("fastv")
        ('layer', 'keep_ratio', 'memory')
    """
    return tuple(o.name for o in get(method).schema)


@dataclass(frozen=True)
class LmmsOptions:
    """Everything ``--model_args`` selects.

    Attributes:
        pretrained: hub id or local folder of the checkpoint.
        device: torch device (``None``: ``cuda`` when available, else ``cpu``).
        dtype: one of :data:`DTYPES`.
        attn_implementation: passed to ``from_pretrained`` (``None``: the checkpoint's).
        max_frames_num: frames sampled uniformly from each video.
        batch_size: prompts per ``generate`` call.
        max_new_tokens: default answer length when the task does not set one.
        dense: run the unpruned model (``config`` is then ``None``).
        frames_as_video: a document whose visuals are several images is one video made of
            those frames (MVBench's frame subsets), sampled to ``max_frames_num``.
        config: the SharpV (or baseline) settings.
    """

    pretrained: str
    device: str | None = None
    dtype: str = "auto"
    attn_implementation: str | None = None
    max_frames_num: int = 32
    batch_size: int = 1
    max_new_tokens: int = 128
    dense: bool = False
    frames_as_video: bool = True
    config: SharpVConfig | None = None


def _as_bool(name: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0"):
        return v.strip().lower() in ("true", "1")
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise ValueError(f"{name} must be true or false, got {v!r}")


def _as_int(name: str, v: Any, low: int | None = None) -> int:
    out: int | None = None
    if isinstance(v, int) and not isinstance(v, bool):
        out = v
    elif isinstance(v, str):
        try:
            out = int(v.strip())
        except ValueError:
            out = None
    if out is None:
        raise ValueError(f"{name} must be an integer, got {v!r}")
    if low is not None and out < low:
        raise ValueError(f"{name} must be >= {low}, got {out}")
    return out


def parse_model_args(args: dict[str, Any]) -> LmmsOptions:
    """Validate ``--model_args`` (as keyword arguments) into :class:`LmmsOptions`.

    Rules:

    * ``dense=true`` runs the unpruned model and takes no method or option;
    * ``method=`` picks a registered method (``sharpv`` by default); every other argument
      that is not a loading argument is an option of that method, validated by
      :func:`sharpv.methods.validate` (the same rules and error text as the Python API and
      the command line: nothing is inferred, nothing ignored).

    Args:
        args: ``{"pretrained": ..., "budget": 0.3, ...}`` as lmms-eval passes them.

    Returns:
        The validated options.

    Raises:
        ValueError: a missing ``pretrained`` or a bad loading argument;
            :class:`sharpv.methods.MethodOptionError` (a ``ValueError``) for the method and
            its options. The message names the argument.

    Examples:
        >>> o = parse_model_args({"pretrained": "m", "mode": "budget", "budget": "0.3"})
        >>> o.config.mode, o.config.budget, o.config.memory
        ('budget', 0.3, True)
        >>> o = parse_model_args({"pretrained": "m", "method": "evs", "rate": 0.7})
        >>> dict(o.config.options)
        {'rate': 0.7, 'memory': False}
    """
    a = dict(args)
    pretrained = a.pop("pretrained", None)
    if not isinstance(pretrained, str) or not pretrained.strip():
        raise ValueError("pretrained= is required (a hub id or a local checkpoint folder)")
    device = a.pop("device", None)
    device = None if device in (None, "", "auto") else str(device)
    dtype = str(a.pop("dtype", "auto"))
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    attn = a.pop("attn_implementation", None)
    attn = None if attn in (None, "") else str(attn)
    max_frames = _as_int("max_frames_num", a.pop("max_frames_num", 32), low=1)
    batch_size = _as_int("batch_size", a.pop("batch_size", 1) or 1, low=1)
    max_new = _as_int("max_new_tokens", a.pop("max_new_tokens", 128), low=1)
    a.pop("max_batch_size", None)  # lmms-eval passes it to every model; unused here
    dense = _as_bool("dense", a.pop("dense", False))
    frames_as_video = _as_bool("frames_as_video", a.pop("frames_as_video", True))
    method = str(a.pop("method", "sharpv"))
    common = dict(
        pretrained=pretrained.strip(),
        device=device,
        dtype=dtype,
        attn_implementation=attn,
        max_frames_num=max_frames,
        batch_size=batch_size,
        max_new_tokens=max_new,
        frames_as_video=frames_as_video,
    )
    if dense:
        if a or method != "sharpv":
            given = sorted(a) + (["method"] if method != "sharpv" else [])
            raise ValueError(f"dense=true runs the unpruned model; drop {', '.join(given)}")
        return LmmsOptions(**common, dense=True, config=None)
    config = SharpVConfig(method=method, method_options=a)
    return LmmsOptions(**common, dense=False, config=config)
