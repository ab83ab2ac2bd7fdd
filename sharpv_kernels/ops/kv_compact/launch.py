"""Launcher of the ``kv_compact_`` Triton kernel and its launch plan.

It takes already-validated arguments (see ``checks.py``: every check passes before the
launcher is called, so nothing is written for an invalid call) and works on CUDA tensors, or
on CPU tensors when Triton's interpreter is on (``TRITON_INTERPRET=1``), which is how CI
tests the kernels themselves. It does not synchronise with the host. Index tensors (spans,
lengths, similarities) may have any strides: tiny ones are copied contiguous, the others
have their strides passed to the kernel.

How the work is cut is a :class:`CompactPlan` from :func:`plan_compact`; the launcher takes
an optional ``plan=``.

Examples:
    >>> plan_compact((1, 8, 4096, 128), element_size=2)
    CompactPlan(block_t=32, block_d=128, warps=8)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch

from ..._gpu import FP_PINNED, check_grid, launch_scope
from ..._utils import next_power_of_2
from . import kernels as K
from .checks import CompactArgs

__all__ = ["CompactPlan", "plan_compact", "kv_compact_triton", "compact_table"]


@dataclass(frozen=True)
class CompactPlan:
    """Rows and channels per tile of ``_kv_compact_kernel`` and its warps."""

    block_t: int
    block_d: int
    warps: int


def plan_compact(shape: tuple[int, int, int, int], element_size: int) -> CompactPlan:
    """Plan for caches of ``shape = (B, H, T, D)``: 4096-element tiles, whole head rows."""
    block_d = next_power_of_2(shape[3])
    block_t = max(1, min(64, 4096 // block_d))
    warps = 8 if block_t * block_d >= 4096 else 4
    return CompactPlan(block_t=block_t, block_d=block_d, warps=warps)


def compact_table(
    keys: list[torch.Tensor], values: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Address every layer's keys and values from one base tensor.

    Returns ``(base, table, caps, align)``: ``base`` is ``keys[0]``; ``table`` ``(L, 8)``
    int64 holds ``[k_off, v_off, k_sb, k_sh, k_st, v_sb, v_sh, v_st]`` in elements relative
    to ``base``; ``caps`` ``(L,)`` int64 the capacity ``T_l`` of each layer; ``align`` the
    largest power of two (at most 16 bytes' worth of elements) dividing every entry of the
    table. The tensors live on the device of ``base`` (one small host-to-device copy, no
    synchronisation; none when the layout was seen before).
    """
    base = keys[0]
    elt = base.element_size()
    p0 = base.data_ptr()
    rows, caps = [], []
    for k, v in zip(keys, values, strict=True):
        dk, dv = k.data_ptr() - p0, v.data_ptr() - p0
        if dk % elt or dv % elt:  # pragma: no cover - allocations are always aligned
            raise ValueError("keys/values must be aligned to their element size")
        rows.append([dk // elt, dv // elt, k.stride(0), k.stride(1), k.stride(2),
                     v.stride(0), v.stride(1), v.stride(2)])  # fmt: skip
        caps.append(k.shape[2])
    align = max(1, 16 // elt)
    while align > 1 and (p0 % (align * elt) or any(x % align for r in rows for x in r)):
        align //= 2
    table, cap = _device_table(base.device, tuple(map(tuple, rows)), tuple(caps))
    return base, table, cap, align


@functools.lru_cache(maxsize=64)
def _device_table(
    device: torch.device, rows: tuple[tuple[int, ...], ...], caps: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The table and capacities on ``device``, kept for the next call with the same caches
    (a KV cache keeps its buffers: one small pinned, non-blocking copy per cache layout)."""
    host = torch.tensor([x for r in rows for x in r] + list(caps), dtype=torch.int64)
    if device.type == "cuda":
        host = host.pin_memory()
    both = host.to(device, non_blocking=True)
    n = len(rows)
    return both.narrow(0, 0, 8 * n).view(n, 8), both.narrow(0, 8 * n, n)


def kv_compact_triton(*args: Any, plan: CompactPlan | None = None) -> None:
    """Compact every (layer, sample) with ``similarity < threshold`` in place, one launch.

    Only the entries after the visual span move (left by the span's length); rows move as
    16-byte vectors whenever the caches' offsets and strides allow it.

    Args:
        args: the fields of :class:`~.checks.CompactArgs` (``keys, values, lengths,
            span_start, span_len, similarity, threshold``), already checked; ``lengths``,
            the spans and ``similarity`` may have any strides; ``lengths`` is decreased in
            place.
        plan: launch plan; by default :func:`plan_compact`.

    Examples:
        >>> kv_compact_triton(keys, values, lengths, start, n, sims, 0.2)  # doctest: +SKIP
    """
    keys, values, lengths, span_start, span_len, similarity, threshold = CompactArgs(*args)
    n_layers = len(keys)
    bsz, n_heads, _, d = keys[0].shape
    if n_layers == 0 or bsz == 0 or n_heads == 0:
        return
    with launch_scope(keys[0].device):
        base, table, cap, align = compact_table(keys, values)
        if plan is None:
            plan = plan_compact(tuple(keys[0].shape), base.element_size())
        start, span = span_start.contiguous(), span_len.contiguous()
        # The lengths are decreased after the launch (stream order) so that every head's
        # program reads the original length.
        s, n = start.unsqueeze(0).to(lengths.dtype), span.unsqueeze(0).to(lengths.dtype)
        valid = (s >= 0) & (n > 0) & (s + n <= lengths) & (lengths <= cap.unsqueeze(1))
        drop = (similarity < threshold) & valid
        grid = check_grid("_kv_compact_kernel", (n_layers * bsz, n_heads))
        K._kv_compact_kernel[grid](
            base, table, cap, lengths, start, span, similarity, float(threshold),
            bsz, d, lengths.stride(0), lengths.stride(1), similarity.stride(0),
            similarity.stride(1), BLOCK_T=plan.block_t, BLOCK_D=plan.block_d, ALIGN=align,
            num_warps=plan.warps, **FP_PINNED,
        )  # fmt: skip
        lengths.sub_(torch.where(drop, n, 0))
