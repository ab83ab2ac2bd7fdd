"""Small helpers shared by every kernel family: backend selection and argument checks."""

from __future__ import annotations

import os

import torch

__all__ = [
    "is_interpreting",
    "next_power_of_2",
    "check_tensor",
    "FLOAT_DTYPES",
]

#: Input dtypes the Triton kernels accept.
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def is_interpreting() -> bool:
    """True when Triton runs kernels with its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= ``n`` (1 for ``n <= 1``)."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def check_tensor(
    name: str,
    t: object,
    *,
    ndim: int | None = None,
    dtypes: tuple[torch.dtype, ...] | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Validate a tensor argument, raising ``TypeError``/``ValueError`` that name it."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    if dtypes is not None and t.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} must have dtype in ({names}), got {str(t.dtype)}")
    if device is not None and t.device != device:
        raise ValueError(f"{name} is on {t.device} but must be on {device} like the other inputs")
    return t
