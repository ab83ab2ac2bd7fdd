"""Launchers of the Memory SharpV Triton kernels.

They take already-validated arguments (see ``checks.py``: every check passes before a
launcher is called, so nothing is written for an invalid call) and work on CUDA tensors, or
on CPU tensors when Triton's interpreter is on (``TRITON_INTERPRET=1``), which is how CI
tests the kernels themselves. Neither launcher synchronises with the host. Index tensors
(spans, lengths, similarities) may have any strides: tiny ones are copied contiguous, the
others have their strides passed to the kernels.

How the work is cut is a :class:`SimilarityPlan` / :class:`CompactPlan` from
:func:`plan_similarity` / :func:`plan_compact`; both launchers take an optional ``plan=``.

Examples:
    >>> plan_similarity((1, 1946, 3584), element_size=2, sms=132)
    SimilarityPlan(block_t=2, block_d=1024, warps=4, stages=9)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import triton

from .._gpu import FP_PINNED, MAX_GRID_YZ, check_grid, device_limits, launch_scope
from .._utils import next_power_of_2
from ..vocab import ZERO_NORM_EPS
from . import kernels as K

__all__ = [
    "SimilarityPlan",
    "CompactPlan",
    "plan_similarity",
    "similarity_grid",
    "similarity_residency",
    "plan_compact",
    "layer_similarity_triton",
    "kv_compact_triton",
    "compact_table",
]


@dataclass(frozen=True)
class SimilarityPlan:
    """Rows and channels per tile of ``_sim_partial_kernel``, its warps and pipeline depth."""

    block_t: int
    block_d: int
    warps: int
    stages: int = 3


@dataclass(frozen=True)
class CompactPlan:
    """Rows and channels per tile of ``_kv_compact_kernel`` and its warps."""

    block_t: int
    block_d: int
    warps: int


#: Shared memory of one SM, bytes, when the planner is not told: H100's 228 KB, the most of
#: the GPUs these kernels target (A100: 164 KB), so a residency computed from it bounds
#: every one of them.
SHARED_PER_SM = 228 * 1024
#: Shared memory the driver reserves for each resident CTA (sm_80 and later), bytes.
SHARED_RESERVED_PER_CTA = 1024
#: Warps one SM holds at once (sm_80 and sm_90).
MAX_WARPS_PER_SM = 64
#: Waves of ``_sim_partial_kernel`` CTAs the plan aims for: CTAs over resident slots.
SIM_MIN_WAVES = 2
#: ``_sim_partial_kernel``: warps per CTA, bytes of each tensor per tile (two 16-byte loads
#: per thread), the least bytes of a row a tile covers (or the whole row) and the pipeline
#: depths tried, in order (three buckets: with three tile heights, a model family compiles
#: at most nine variants over every ``S``).
SIM_WARPS = 4
SIM_TILE_BYTES = 4096
SIM_MIN_ROW_BYTES = 1024
SIM_STAGES = (3, 5, 9)


def similarity_residency(
    plan: SimilarityPlan, element_size: int, shared_per_sm: int = SHARED_PER_SM
) -> int:
    """At most this many ``_sim_partial_kernel`` CTAs of ``plan`` are resident on one SM.

    The bound by warps (``MAX_WARPS_PER_SM // warps``) and by shared memory: a CTA's
    software pipeline keeps ``stages - 1`` tiles of ``hidden`` and of ``reference`` in shared
    memory (``(stages - 1) * block_t * block_d * 2 * element_size`` bytes, plus the driver's
    1 KB). Registers can only lower the residency, so the bound holds whatever the compiler
    allocates. 0 when the pipeline does not fit in ``shared_per_sm`` at all.

    Examples:
        >>> similarity_residency(SimilarityPlan(2, 1024, 4, stages=9), 2)
        3
        >>> similarity_residency(SimilarityPlan(4, 512, 4, stages=8), 2, 164 * 1024)
        2
    """
    pipeline = max(0, plan.stages - 1) * plan.block_t * plan.block_d * 2 * element_size
    by_shared = shared_per_sm // (pipeline + SHARED_RESERVED_PER_CTA)
    return min(MAX_WARPS_PER_SM // plan.warps, by_shared)


def plan_similarity(
    shape: tuple[int, int, int],
    element_size: int,
    sms: int,
    shared_per_sm: int = SHARED_PER_SM,
) -> SimilarityPlan:
    """Plan for hidden states of ``shape = (B, S, d)`` on ``sms`` SMs of ``shared_per_sm`` bytes.

    On a GPU: tiles of 4 KB of each tensor (``block_t * block_d = 4096 / element_size``),
    each row piece at least 1 KB or the whole row. The fewest CTAs first (the most rows per
    tile), then the fewest pipeline stages (3, 5 or 9), such that the grid holds at least
    ``SIM_MIN_WAVES`` (2) waves of CTAs: ``B * ceil(S / block_t) >= 2 * sms * R``, with ``R``
    = :func:`similarity_residency` on an SM of ``shared_per_sm`` bytes.

    Residency assumed: ``R``, the CTAs that fit by warps and by the pipeline's shared
    memory. Registers can only lower it, so the two waves hold whatever the compiler
    allocates. At the benchmark shapes (4 warps of 64-72 registers: 7-8 CTAs per SM by
    registers) shared memory sets it, as ``python -m bench model`` confirms: 2-row tiles
    of 1024 16-bit channels with 9 stages, 3 CTAs per H100 SM (228 KB); 4-row tiles of 512
    with 9 stages, 2 CTAs per A100 SM (164 KB). A deep pipeline keeps up to ``stages - 1``
    tiles in flight per CTA, so few resident CTAs keep many loads outstanding; when a row
    fits in one tile the extra stages only reserve the shared memory that limits the
    residency. When no plan reaches two waves (small inputs), one-row tiles with three
    stages. The grid covers ``S`` (the span is only known on the device; see
    :func:`similarity_grid`); programs past the span exit at once.

    In Triton's interpreter (``sms <= 1``): few, wide programs (up to 16 rows of 1 KB).

    Examples:
        >>> plan_similarity((1, 1946, 3584), element_size=2, sms=132)
        SimilarityPlan(block_t=2, block_d=1024, warps=4, stages=9)
        >>> plan_similarity((1, 1946, 3584), element_size=2, sms=108, shared_per_sm=164 * 1024)
        SimilarityPlan(block_t=4, block_d=512, warps=4, stages=9)
    """
    bsz, seq, d = shape
    row = next_power_of_2(d)
    if sms <= 1:
        block_d = max(16, min(row, 1024 // element_size))
        return SimilarityPlan(block_t=min(16, next_power_of_2(seq)), block_d=block_d, warps=4)
    tile = SIM_TILE_BYTES // element_size
    piece = max(16, min(row, SIM_MIN_ROW_BYTES // element_size))
    block_t = max(1, min(16, tile // piece))
    while block_t >= 1:
        block_d = max(16, min(row, tile // block_t))
        ctas = bsz * math.ceil(seq / block_t)
        for stages in SIM_STAGES:
            plan = SimilarityPlan(block_t, block_d, SIM_WARPS, stages)
            resident = similarity_residency(plan, element_size, shared_per_sm)
            if resident and ctas >= SIM_MIN_WAVES * sms * resident:
                return plan
        block_t //= 2
    block_d = max(16, min(row, tile))
    return SimilarityPlan(block_t=1, block_d=block_d, warps=SIM_WARPS, stages=SIM_STAGES[0])


def plan_compact(shape: tuple[int, int, int, int], element_size: int) -> CompactPlan:
    """Plan for caches of ``shape = (B, H, T, D)``: 4096-element tiles, whole head rows."""
    block_d = next_power_of_2(shape[3])
    block_t = max(1, min(64, 4096 // block_d))
    warps = 8 if block_t * block_d >= 4096 else 4
    return CompactPlan(block_t=block_t, block_d=block_d, warps=warps)


def layer_similarity_triton(
    hidden: torch.Tensor,
    reference: torch.Tensor,
    span_start: torch.Tensor,
    span_len: torch.Tensor,
    out: torch.Tensor,
    layer: int,
    *,
    plan: SimilarityPlan | None = None,
) -> None:
    """Write ``out[layer, b]`` = mean over the span rows of cos(hidden[b, i], reference[b, i]).

    Args:
        hidden: ``(B, S, d)`` float32/float16/bfloat16, any strides.
        reference: ``(B, S, d)`` float32/float16/bfloat16, any strides.
        span_start, span_len: ``(B,)`` int32/int64, any strides; the span is
            ``[start, start + len)``.
        out: ``(L, B)`` float32, any strides; only row ``layer`` is written.
        layer: row of ``out`` to write.
        plan: launch plan; by default :func:`plan_similarity` for the device.

    Examples:
        >>> layer_similarity_triton(h, v, start, n, sims, 3)  # doctest: +SKIP
    """
    if hidden.stride(2) != 1:
        hidden = hidden.contiguous()
    if reference.stride(2) != 1:
        reference = reference.contiguous()
    bsz, seq, d = hidden.shape
    dev = hidden.device
    if plan is None:
        limits = device_limits(dev)
        plan = plan_similarity((bsz, seq, d), hidden.element_size(), limits.sms,
                               limits.shared_per_sm)  # fmt: skip
    grid, n_tiles = similarity_grid(plan, bsz, seq)
    start, length = span_start.contiguous(), span_len.contiguous()
    with launch_scope(dev):
        part = torch.empty((bsz, n_tiles), dtype=torch.float32, device=dev)
        K._sim_partial_kernel[grid](
            hidden, reference, start, length, part, seq, d,
            hidden.stride(0), hidden.stride(1), reference.stride(0), reference.stride(1),
            n_tiles, EPS=ZERO_NORM_EPS, BLOCK_T=plan.block_t, BLOCK_D=plan.block_d,
            STAGES=plan.stages, num_warps=plan.warps, **FP_PINNED,
        )  # fmt: skip
        block = 128 if n_tiles <= 128 else 1024  # two variants, any S
        row = out.select(0, layer)
        K._sim_finish_kernel[check_grid("_sim_finish_kernel", (bsz,))](
            part,
            length,
            row,
            row.stride(0),
            n_tiles,
            BLOCK=block,
            num_warps=4,
            **FP_PINNED,
        )


def similarity_grid(plan: SimilarityPlan, bsz: int, seq: int) -> tuple[tuple[int, int], int]:
    """``((n_tiles, bsz), n_tiles)``: the grid of ``_sim_partial_kernel``, row tiles on axis x
    (up to 2^31 - 1 programs: any ``S`` a GPU holds) and samples on axis y (at most 65,535),
    checked against CUDA's limits.

    Examples:
        >>> similarity_grid(SimilarityPlan(4, 512, 4), 1, 300_000)
        ((75000, 1), 75000)
    """
    if bsz > MAX_GRID_YZ:
        raise ValueError(f"layer_similarity takes at most {MAX_GRID_YZ} samples, got {bsz}")
    n_tiles = max(1, triton.cdiv(seq, plan.block_t))
    return check_grid("_sim_partial_kernel", (n_tiles, max(1, bsz))), n_tiles


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


def kv_compact_triton(
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
    lengths: torch.Tensor,
    span_start: torch.Tensor,
    span_len: torch.Tensor,
    similarity: torch.Tensor,
    threshold: float,
    *,
    plan: CompactPlan | None = None,
) -> None:
    """Compact every (layer, sample) with ``similarity < threshold`` in place, one launch.

    Only the entries after the visual span move (left by the span's length); rows move as
    16-byte vectors whenever the caches' offsets and strides allow it.

    Args:
        keys, values: ``L`` tensors ``(B, H, T_l, D)``, one dtype, ``stride(-1) == 1``.
        lengths: ``(L, B)`` int32/int64 entries held per (layer, sample), any strides;
            decreased in place.
        span_start, span_len: ``(B,)`` int32/int64 visual span of each sample, any strides.
        similarity: ``(L, B)`` float32, any strides.
        threshold: a (layer, sample) is compacted when ``similarity < threshold``.
        plan: launch plan; by default :func:`plan_compact`.

    Examples:
        >>> kv_compact_triton(keys, values, lengths, start, n, sims, 0.2)  # doctest: +SKIP
    """
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
