"""``--model_args`` of the lmms-eval ``sharpv`` model, turned into validated settings.

lmms-eval parses ``key=value,key=value`` itself and hands the model class keyword arguments
whose values are already ``bool``/``int``/``float``/``str``; :func:`parse_model_args` accepts
those and plain strings alike, and raises ``ValueError`` naming the offending argument
before any model is loaded. This module does not import lmms-eval.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, fields
from typing import Any

from sharpv_kernels.vocab import INTRA_LLM_BASELINES, METHODS, PRE_LLM_BASELINES

from ...config import SharpVConfig

__all__ = ["LmmsOptions", "parse_model_args", "baseline_option_names", "DTYPES"]

#: ``dtype=`` values (``auto``: bfloat16 on CUDA, float32 elsewhere).
DTYPES = ("auto", "float32", "float16", "bfloat16")

#: ``SharpVConfig`` fields settable by name (``method``/``method_options`` are built here)
_CONFIG_FIELDS = tuple(
    f.name for f in fields(SharpVConfig) if f.name not in ("method", "method_options")
)
_FLOAT_FIELDS = ("w", "threshold", "keep_ratio", "budget", "memory_threshold")
_INT_FIELDS = ("min_keep",)
_BOOL_FIELDS = ("visual", "memory")
#: baseline parameters that are not baseline options: inputs, or SharpV's own counts
_NOT_OPTIONS = ("features", "cu_frames", "return_scores", "counts", "totals", "sharpv_options")


def baseline_option_names(method: str) -> tuple[str, ...]:
    """Keyword options ``method`` takes in ``--model_args`` besides the ``SharpVConfig`` fields.

    Read from the baseline's own signature (``sharpv.baselines``), so a new option of a
    baseline is accepted without a change here. ``fastv`` takes ``layer`` and ``keep_ratio``.

    Examples:
        >>> baseline_option_names("evs")
        ('rate',)
        >>> baseline_option_names("fastv")
        ('layer', 'keep_ratio')
    """
    if method == "sharpv":
        return ()
    if method in INTRA_LLM_BASELINES:
        from ...baselines import fastv

        fn = fastv
    elif method in PRE_LLM_BASELINES:
        from ...baselines import PRE_LLM_METHODS

        fn = PRE_LLM_METHODS[method]
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    params = inspect.signature(fn).parameters
    own = [
        n
        for n, p in params.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in _NOT_OPTIONS
    ]
    if method in INTRA_LLM_BASELINES:
        return tuple(own)
    return tuple(n for n in own if n not in _CONFIG_FIELDS)


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


def _as_float(name: str, v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError(f"{name} must be a number, got {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {v!r}") from None


def _as_number(name: str, v: Any) -> int | float:
    """Baseline options keep their integer type (``layer=3``, ``window=4``, ``seed=1``)."""
    if isinstance(v, bool):
        raise ValueError(f"{name} must be a number, got {v!r}")
    if isinstance(v, (int, float)):
        return v
    for conv in (int, float):
        try:
            return conv(v)
        except (TypeError, ValueError):
            continue
    raise ValueError(f"{name} must be a number, got {v!r}")


def parse_model_args(args: dict[str, Any]) -> LmmsOptions:
    """Validate ``--model_args`` (as keyword arguments) into :class:`LmmsOptions`.

    Rules:

    * ``dense=true`` runs the unpruned model and takes no SharpV or baseline option;
    * ``method=`` picks SharpV (default) or a baseline; a baseline's own options
      (:func:`baseline_option_names`) are accepted with that baseline only;
    * ``budget=`` or ``keep_ratio=`` given without ``mode=`` selects ``mode=budget`` /
      ``mode=ratio`` (for ``method=fastv``, ``keep_ratio`` is FastV's own option);
    * ``memory`` defaults to true for SharpV and false for every baseline.

    Args:
        args: ``{"pretrained": ..., "budget": 0.3, ...}`` as lmms-eval passes them.

    Returns:
        The validated options.

    Raises:
        ValueError: a missing ``pretrained``, an unknown argument, or a bad value (the
            message names the argument).

    Examples:
        >>> o = parse_model_args({"pretrained": "m", "budget": 0.3})
        >>> o.config.mode, o.config.budget, o.config.memory
        ('budget', 0.3, True)
        >>> o = parse_model_args({"pretrained": "m", "method": "evs", "rate": 0.7})
        >>> o.config.method_options
        {'rate': 0.7}
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
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")

    allowed = set(_CONFIG_FIELDS) | set(baseline_option_names(method))
    unknown = sorted(set(a) - allowed)
    if unknown:
        extra = baseline_option_names(method)
        hint = f"; {method} takes {', '.join(extra)}" if extra else ""
        raise ValueError(f"unknown model_args for method={method}: {', '.join(unknown)}{hint}")
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

    method_options: dict[str, Any] = {}
    for name in baseline_option_names(method):
        if name in a and not (name == "keep_ratio" and method not in INTRA_LLM_BASELINES):
            method_options[name] = _as_number(name, a.pop(name))
    kw: dict[str, Any] = {}
    for name in _FLOAT_FIELDS:
        if name in a:
            kw[name] = _as_float(name, a.pop(name))
    for name in _INT_FIELDS:
        if name in a:
            kw[name] = _as_int(name, a.pop(name))
    for name in _BOOL_FIELDS:
        if name in a:
            kw[name] = _as_bool(name, a.pop(name))
    if "mode" in a:
        kw["mode"] = str(a.pop("mode"))
    if "metric" in a:
        kw["metric"] = str(a.pop("metric"))
    if "mode" not in kw:
        picked = [m for m, f in (("budget", "budget"), ("ratio", "keep_ratio")) if f in kw]
        if len(picked) == 2:
            raise ValueError("budget= and keep_ratio= select different modes; give mode= too")
        if picked:
            kw["mode"] = picked[0]
    kw.setdefault("memory", method == "sharpv")
    try:
        config = SharpVConfig(method=method, method_options=method_options or None, **kw)
    except (TypeError, ValueError) as e:
        raise ValueError(f"bad SharpV model_args: {e}") from None
    return LmmsOptions(**common, dense=False, config=config)
