"""Launcher of the ``layer_similarity`` Triton kernels and its launch plan.

It takes already-validated arguments (see ``checks.py``: every check passes before the
launcher is called, so nothing is written for an invalid call) and works on CUDA tensors, or
on CPU tensors when Triton's interpreter is on (``TRITON_INTERPRET=1``), which is how CI
tests the kernels themselves. It does not synchronise with the host. The spans may have any
strides (they are tiny: copied contiguous).

How the work is cut is a :class:`SimilarityPlan` from :func:`plan_similarity`; the launcher
takes an optional ``plan=``.

Examples:
    >>> plan_similarity((1, 1946, 3584), element_size=2, sms=132)
    SimilarityPlan(block_t=2, block_d=1024, warps=4, stages=9)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import triton

from ..._gpu import FP_PINNED, MAX_GRID_YZ, check_grid, device_limits, launch_scope
from ..._utils import next_power_of_2
from ...vocab import ZERO_NORM_EPS
from . import kernels as K
from .checks import SimilarityArgs

__all__ = [
    "SimilarityPlan",
    "plan_similarity",
    "similarity_grid",
    "similarity_residency",
    "layer_similarity_triton",
]


@dataclass(frozen=True)
class SimilarityPlan:
    """Rows and channels per tile of ``_sim_partial_kernel``, its warps and pipeline depth."""

    block_t: int
    block_d: int
    warps: int
    stages: int = 3


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


def layer_similarity_triton(*args: Any, plan: SimilarityPlan | None = None) -> None:
    """Write ``out[layer, b]`` = mean over the span rows of cos(hidden[b, i], reference[b, i]).

    Args:
        args: the fields of :class:`~.checks.SimilarityArgs` (``hidden, reference, span_start,
            span_len, out, layer``), already checked; ``hidden``/``reference`` and ``out``
            may have any strides.
        plan: launch plan; by default :func:`plan_similarity` for the device.

    Examples:
        >>> layer_similarity_triton(h, v, start, n, sims, 3)  # doctest: +SKIP
    """
    a = SimilarityArgs(*args)
    hidden, reference, out, layer = a.hidden, a.reference, a.out, a.layer
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
    start, length = a.span_start.contiguous(), a.span_len.contiguous()
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
