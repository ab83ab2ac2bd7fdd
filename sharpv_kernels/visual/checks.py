"""Argument validation of Visual SharpV (SPEC, Visual SharpV item 11)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .._utils import FLOAT_DTYPES, check_tensor

__all__ = [
    "MODES",
    "METRICS",
    "NONFINITE_MESSAGE",
    "MAGNITUDE_MESSAGE",
    "normalize_cu_frames",
    "check_visual_args",
    "check_cu_values",
]

MODES = ("adaptive", "manual", "ratio", "budget")
METRICS = ("dissim", "cosine")

#: Error text for NaN/Inf features, the same from every backend.
NONFINITE_MESSAGE = "features contain NaN or Inf"
#: Error text for finite features whose float32 squared norms overflow (SPEC, Visual item 11).
MAGNITUDE_MESSAGE = (
    "features magnitude out of range: a token's float32 squared norm overflows "
    "(entries beyond about 1e19); rescale the features"
)


def normalize_cu_frames(
    cu_frames: torch.Tensor | Sequence[int] | None, features: torch.Tensor
) -> torch.Tensor:
    """Turn ``cu_frames`` (None, a sequence of ints or an integer tensor) into int32 on the
    features' device. Values are checked by :func:`check_cu_values` (host tensors) or on
    the device by the kernels (CUDA tensors, no synchronisation)."""
    if cu_frames is None:
        return torch.tensor([0, features.shape[0]], dtype=torch.int32, device=features.device)
    if not isinstance(cu_frames, torch.Tensor):
        if not isinstance(cu_frames, Sequence) or not all(
            isinstance(x, int) and not isinstance(x, bool) for x in cu_frames
        ):
            raise TypeError("cu_frames must be None, a sequence of ints or an integer tensor")
        return torch.tensor(list(cu_frames), dtype=torch.int32, device=features.device)
    if cu_frames.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"cu_frames must be an int32 or int64 tensor, got {cu_frames.dtype}")
    if cu_frames.device != features.device:
        raise ValueError(
            f"cu_frames is on {cu_frames.device} but features are on {features.device}"
        )
    return cu_frames.to(torch.int32)


def check_cu_values(cu_frames: torch.Tensor, total_frames: int) -> None:
    """Host-side value check of ``cu_frames`` (used for CPU tensors)."""
    cu = cu_frames.tolist()
    if (
        cu[0] != 0
        or cu[-1] != total_frames
        or any(b <= a for a, b in zip(cu[:-1], cu[1:], strict=True))
    ):
        raise ValueError(
            f"cu_frames must start at 0, end at features.shape[0] = {total_frames} and "
            f"increase strictly (every video needs at least one frame), got {cu}"
        )


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def check_visual_args(
    features: torch.Tensor,
    cu_frames: torch.Tensor,
    *,
    mode: str,
    w: float,
    threshold: float,
    keep_ratio: float | None,
    budget: float | None,
    min_keep: int,
    metric: str,
) -> None:
    """Raise ``TypeError``/``ValueError`` naming the first bad argument."""
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
    if cu_frames.dim() != 1 or cu_frames.numel() < 2:
        raise ValueError(
            f"cu_frames must be 1-D with B + 1 >= 2 entries, got shape {tuple(cu_frames.shape)}"
        )
    if cu_frames.numel() - 1 > n_frames:
        raise ValueError(
            f"cu_frames describes {cu_frames.numel() - 1} videos "
            f"but features hold only {n_frames} frames"
        )
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    _check_real("w", w)
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
