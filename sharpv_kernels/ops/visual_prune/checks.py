"""Argument validation of Visual SharpV (SPEC, Visual SharpV items 9 and 11).

Everything here runs on the host before any heavy work: shapes, dtypes, devices, options,
and the values of ``cu_frames`` when they are on the host (a sequence of ints or a CPU
tensor). A ``cu_frames`` tensor on CUDA is checked by the kernels on the device instead
(no synchronisation), after a saturating conversion to int32 that turns every value outside
int32 into one the device check rejects.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from ... import vocab
from ..._utils import FLOAT_DTYPES, check_tensor
from ...vocab import METRICS, VISUAL_MODES

__all__ = [
    "PruneOptions",
    "MODES",
    "METRICS",
    "NONFINITE_MESSAGE",
    "MAGNITUDE_MESSAGE",
    "as_cu_tensor",
    "host_cu_values",
    "host_cu_tensor",
    "normalize_cu_frames",
    "prepare_cu_frames",
    "prepare_cu_and_values",
    "check_cu_values",
    "check_cu_host",
    "check_visual_args",
    "check_visual_call",
    "raise_bad_features",
]


class PruneOptions(NamedTuple):
    """The options of ``visual_prune`` after ``features`` and ``cu_frames``, with their
    defaults: the contract of :func:`sharpv_kernels.visual_prune`, written once (its public
    signature, ``torch.ops.sharpv.visual_prune``'s schema and the backends read it).

    ``mode``: ``adaptive``, ``ratio``, ``budget`` or ``manual``; ``w``: weight of the spatial
    score; ``threshold``: adaptive keep threshold; ``keep_ratio`` (mode ``ratio``) and
    ``budget`` (mode ``budget``) in (0, 1], ``None`` otherwise; ``min_keep``: tokens kept per
    frame at least, ``0 <= min_keep <= f``; ``metric``: ``dissim`` or ``cosine``.
    """

    mode: str = vocab.DEFAULT_MODE
    w: float = vocab.DEFAULT_W
    threshold: float = vocab.DEFAULT_THRESHOLD
    keep_ratio: float | None = None
    budget: float | None = None
    min_keep: int = vocab.DEFAULT_MIN_KEEP
    metric: str = vocab.DEFAULT_METRIC


#: the selection modes (from :mod:`sharpv_kernels.vocab`)
MODES = VISUAL_MODES

#: Error text for NaN/Inf features, the same from every backend.
NONFINITE_MESSAGE = "features contain NaN or Inf"
#: Error text for finite features whose float32 squared norms overflow (SPEC, Visual item 11).
MAGNITUDE_MESSAGE = (
    "features magnitude out of range: a token's float32 squared norm overflows "
    "(entries beyond about 1e19); rescale the features"
)

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
#: largest finite float32
_FLT_MAX = float(torch.finfo(torch.float32).max)


def as_cu_tensor(
    cu_frames: torch.Tensor | Sequence[int] | None, features: torch.Tensor
) -> torch.Tensor:
    """``cu_frames`` as a tensor for the op: None becomes ``[0, total_frames]``, a sequence of
    ints an int32 CPU tensor (values outside int32 are a ``ValueError`` naming ``cu_frames``);
    a tensor is returned as it is (checked by :func:`check_visual_args`)."""
    if isinstance(cu_frames, torch.Tensor):
        return cu_frames
    return host_cu_tensor(host_cu_values(cu_frames, features))


def host_cu_tensor(values: tuple[int, ...], *, shared: bool = False) -> torch.Tensor:
    """The CPU tensor of checked host values (:func:`host_cu_values`): int32, or int64 when
    they do not fit (only ``(0, total_frames)`` of too many frames, which the checks then
    reject). ``shared``: the tensor may be one this module keeps per distinct value (never
    written, never handed to a user: only for a caller that reads it in plain eager mode and
    does not return it); saves building a tensor at every call."""
    if values[-1] > _INT32_MAX:
        return torch.tensor(values, dtype=torch.int64)
    if shared:
        return _shared_host_tensor(values)
    return torch.tensor(values, dtype=torch.int32)


def host_cu_values(cu_frames: Sequence[int] | None, features: torch.Tensor) -> tuple[int, ...]:
    """The values of a host-side ``cu_frames`` (None: ``(0, total_frames)``; a sequence of
    ints, checked to be ints that fit in int32)."""
    if cu_frames is None:
        return (0, features.shape[0])
    if type(cu_frames) in (list, tuple) and all(type(x) is int for x in cu_frames):
        values = tuple(cu_frames)  # the common case: plain ints (no bool: its type is not int)
        _check_int32(values)
        return values
    if (
        isinstance(cu_frames, (str, bytes))
        or not isinstance(cu_frames, Sequence)
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in cu_frames)
    ):
        raise TypeError("cu_frames must be None, a sequence of ints or an integer tensor")
    values = tuple(int(x) for x in cu_frames)
    _check_int32(values)
    return values


@functools.lru_cache(maxsize=64)
def _shared_host_tensor(values: tuple[int, ...]) -> torch.Tensor:
    """An int32 CPU tensor of ``values``, one per distinct value (see :func:`host_cu_tensor`);
    a normal tensor even when made under ``torch.inference_mode``."""
    with torch.inference_mode(False):
        return torch.tensor(values, dtype=torch.int32)


def _check_int32(values: Sequence[int]) -> None:
    if values and (min(values) < _INT32_MIN or max(values) > _INT32_MAX):
        raise ValueError(f"cu_frames values must fit in int32, got {list(values)}")


def check_cu_values(cu_frames: torch.Tensor, total_frames: int) -> list[int]:
    """Host-side value check of ``cu_frames`` (reads the tensor: one copy if on a device);
    returns the values."""
    values = cu_frames.tolist()
    check_cu_host(values, total_frames)
    return values


def check_cu_host(cu: Sequence[int], total_frames: int) -> None:
    """Value check of ``cu_frames`` given as host ints (int32, from 0 to ``total_frames``,
    strictly increasing); a verdict remembered per distinct value (a failure never is)."""
    _cu_verdict(tuple(cu), total_frames)


@functools.lru_cache(maxsize=1024)
def _cu_verdict(cu: tuple[int, ...], total_frames: int) -> None:
    _check_int32(cu)
    if (
        cu[0] != 0
        or cu[-1] != total_frames
        or any(b <= a for a, b in zip(cu[:-1], cu[1:], strict=True))
    ):
        raise ValueError(
            f"cu_frames must start at 0, end at features.shape[0] = {total_frames} and "
            f"increase strictly (every video needs at least one frame), got {list(cu)}"
        )


def prepare_cu_frames(
    cu_frames: torch.Tensor,
    features: torch.Tensor,
    *,
    check_on_host: bool,
    host_values: Sequence[int] | None = None,
) -> torch.Tensor:
    """Contiguous int32 ``cu_frames`` on the features' device, from a checked tensor.

    A CPU tensor is value-checked here (free: no device involved) and copied from pinned
    memory without blocking. A tensor on the features'
    device is value-checked here only with ``check_on_host`` (one synchronisation); else it
    is converted with saturation (values outside int32 become -1 or ``2**31 - 1``, which no
    valid ``cu_frames`` holds), and the kernels check it on the device. ``host_values``: the
    values of a CPU ``cu_frames`` as ints, when the caller has them (checked instead of
    reading the tensor).
    """
    return prepare_cu_and_values(cu_frames, features, check_on_host=check_on_host,
                                 host_values=host_values)[0]  # fmt: skip


def prepare_cu_and_values(
    cu_frames: torch.Tensor,
    features: torch.Tensor,
    *,
    check_on_host: bool,
    host_values: Sequence[int] | None = None,
) -> tuple[torch.Tensor, Sequence[int] | None]:
    """:func:`prepare_cu_frames`, and the values of ``cu_frames`` as host ints when they were
    read or given (None when they stay on the device). A tensor that is already what the
    kernels take (int32, contiguous, on the features' device) is returned as it is."""
    if cu_frames.device.type == "cpu" or check_on_host:
        if host_values is not None and cu_frames.device.type == "cpu":
            check_cu_host(host_values, features.shape[0])
        else:
            host_values = check_cu_values(cu_frames, features.shape[0])
        cu = cu_frames if cu_frames.dtype == torch.int32 else cu_frames.to(torch.int32)
        if not cu.is_contiguous():
            cu = cu.contiguous()
        return _to_device(cu, features), host_values
    if cu_frames.dtype == torch.int64:
        cu_frames = cu_frames.clamp(-1, _INT32_MAX)
    return cu_frames.to(torch.int32).contiguous(), None


def _to_device(cu: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    if cu.device == features.device:
        return cu
    if features.device.type == "cuda" and cu.device.type == "cpu":
        # a pinned, non-blocking copy: queued on the stream, no wait for the GPU
        return cu.pin_memory().to(features.device, non_blocking=True)
    return cu.to(features.device)


def normalize_cu_frames(
    cu_frames: torch.Tensor | Sequence[int] | None, features: torch.Tensor
) -> torch.Tensor:
    """Any accepted form of ``cu_frames`` (None, a sequence of ints, an int32/int64 tensor of
    any strides on the CPU or the features' device) as contiguous int32 on the features'
    device. Host values are checked here; a device tensor is converted with saturation (see
    :func:`prepare_cu_frames`) and not read.

    Examples:
        >>> normalize_cu_frames([0, 2, 5], torch.zeros(5, 3, 4)).tolist()
        [0, 2, 5]
    """
    cu = as_cu_tensor(cu_frames, features)
    _check_cu_tensor(cu, features)
    return prepare_cu_frames(cu, features, check_on_host=False)


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def _check_cu_tensor(cu_frames: object, features: torch.Tensor) -> None:
    if not isinstance(cu_frames, torch.Tensor):
        raise TypeError(f"cu_frames must be an integer tensor, got {type(cu_frames).__name__}")
    if cu_frames.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"cu_frames must be an int32 or int64 tensor, got {cu_frames.dtype}")
    if cu_frames.device != features.device and cu_frames.device.type != "cpu":
        raise ValueError(
            f"cu_frames is on {cu_frames.device} but must be on the CPU or on the features' "
            f"device {features.device}"
        )
    if cu_frames.dim() != 1 or cu_frames.numel() < 2:
        raise ValueError(
            f"cu_frames must be 1-D with B + 1 >= 2 entries, got shape {tuple(cu_frames.shape)}"
        )
    if cu_frames.numel() - 1 > features.shape[0]:
        raise ValueError(
            f"cu_frames describes {cu_frames.numel() - 1} videos "
            f"but features hold only {features.shape[0]} frames"
        )


def check_visual_args(features: torch.Tensor, cu_frames: torch.Tensor, **options: Any) -> None:
    """Raise ``TypeError``/``ValueError`` naming the first bad argument (no device work).

    ``options``: the fields of :class:`PruneOptions` (defaults for those left out).
    """
    check_visual_call(features, cu_frames, PruneOptions(**options))


def check_visual_call(
    features: torch.Tensor, cu_frames: torch.Tensor, options: PruneOptions
) -> PruneOptions:
    """:func:`check_visual_args` with the options already gathered: the tensors, then the
    options against ``f`` (a verdict remembered per distinct value). Returns the options
    with their numbers as ``float`` and ``int`` (what the op's schema takes)."""
    check_tensor("features", features, ndim=3)
    if not features.is_floating_point():
        raise TypeError(f"features must be a floating tensor, got {features.dtype}")
    if features.dtype not in FLOAT_DTYPES + (torch.float64,):
        raise TypeError(f"features dtype {features.dtype} is not supported")
    if features.dtype == torch.float64 and features.is_cuda:
        raise TypeError("features must be float32, float16 or bfloat16 on CUDA, got float64")
    n_frames, f, d = features.shape
    if n_frames == 0 or f == 0 or d == 0:
        raise ValueError(
            f"features must have no empty dimension, got shape {tuple(features.shape)}"
        )
    if n_frames > _INT32_MAX:
        raise ValueError(f"features.shape[0] must fit in int32, got {n_frames}")
    _check_cu_tensor(cu_frames, features)
    try:
        return _options_verdict(*options, f)
    except TypeError:  # an unhashable value: checked without the memo (the same errors)
        return _check_options(*options, f)


def _check_options(
    mode: object,
    w: object,
    threshold: object,
    keep_ratio: object,
    budget: object,
    min_keep: object,
    metric: object,
    f: int,
) -> PruneOptions:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    # S, T <= 2, so |I| <= 2 + 2 |w|: a w that makes that overflow float32 is a w error
    if abs(_check_real("w", w)) > (_FLT_MAX - 2.0) / 2.0:
        raise ValueError(f"w = {w} makes the scores I = T + w S overflow float32")
    _check_real("threshold", threshold)
    if isinstance(min_keep, bool) or not isinstance(min_keep, int):
        raise TypeError(f"min_keep must be an int, got {type(min_keep).__name__}")
    if not 0 <= min_keep <= f:
        raise ValueError(f"min_keep must be in [0, f = {f}], got {min_keep}")
    for name, value, wanted in (("keep_ratio", keep_ratio, "ratio"), ("budget", budget, "budget")):
        if mode == wanted:
            if value is None:
                raise ValueError(f"mode={wanted!r} needs {name} in (0, 1]")
            v = _check_real(name, value)
            if not 0.0 < v <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        elif value is not None:
            raise ValueError(f"{name} is only used with mode={wanted!r}, got mode={mode!r}")
    return PruneOptions(
        mode, float(w), float(threshold), None if keep_ratio is None else float(keep_ratio),
        None if budget is None else float(budget), int(min_keep), metric,
    )  # fmt: skip


#: the options a call passed, remembered per distinct value and type (``typed``: ``1``,
#: ``1.0`` and ``True`` are checked apart, so ``min_keep=True`` still fails); an option set
#: that fails raises every time (an exception is never cached). Saves the host a few
#: microseconds a call: serving calls the op with the same options over and over.
_options_verdict = functools.lru_cache(maxsize=1024, typed=True)(_check_options)


def raise_bad_features(features: torch.Tensor, norms: torch.Tensor) -> None:
    """Raise the features error when a token norm is not finite (reads one flag).

    ``ValueError(NONFINITE_MESSAGE)`` when the features hold NaN/Inf, else
    ``ValueError(MAGNITUDE_MESSAGE)``: finite features whose float32 norms overflow.
    """
    if bool(torch.isfinite(norms).all()):
        return
    if bool(torch.isfinite(features).all()):
        raise ValueError(MAGNITUDE_MESSAGE)
    raise ValueError(NONFINITE_MESSAGE)
