"""Launchers of the Visual SharpV Triton kernels.

They take already-validated arguments (see ``api.py``/``checks.py``) and work on CUDA tensors,
or on CPU tensors when Triton's interpreter is on (``TRITON_INTERPRET=1``), which is how CI
tests the kernels themselves. ``visual_prune_triton`` queues its five kernels back to back;
it reads the two-word header (output size, error bits) back only when the kept count does not
follow from host-side values (adaptive, manual, budget over several videos on the device):
once, before the last kernel, to allocate the output exactly.

How the work is cut (blocks, warps, channel splits) is a :class:`LaunchPlan`, built from the
shape and the GPU's SM count by :func:`plan_launch`; every launcher takes an optional
``plan=`` so that tests can force several channel slices, row blocks and chunked loops on
small inputs, and ``bench/model.py`` can plan for a GPU it does not have.

Examples:
    >>> plan = plan_launch((32, 196, 3584), element_size=2, sms=132)
    >>> plan.norms_cols, plan.scores_rows, plan.scores_cols, plan.scores_warps
    (256, 4, 256, 1)
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..._gpu import (
    FP_PINNED,
    MAX_BLOCK_NUMEL,
    MAX_GRID_YZ,
    DeviceLimits,
    check_grid,
    device_limits,
    launch_scope,
)
from ..._utils import next_power_of_2
from ...vocab import (
    BUDGET_BISECTION_STEPS,
    DEFAULT_METRIC,
    DEFAULT_MIN_KEEP,
    DEFAULT_MODE,
    DEFAULT_THRESHOLD,
    DEFAULT_W,
    METRICS,
    VISUAL_MODES,
    ZERO_NORM_EPS,
    budget_token_count,
    ratio_keep_count,
)
from . import kernels as K
from .checks import MAGNITUDE_MESSAGE, NONFINITE_MESSAGE

__all__ = [
    "MAX_TOKENS_PER_FRAME",
    "LaunchPlan",
    "plan_launch",
    "validate_plan",
    "visual_prune_triton",
    "visual_scores_triton",
    "VisualInputError",
]

#: kernel codes of the modes and metrics, in vocabulary order (kernels.MODE_*, METRIC_*)
MODE_CODES = {name: i for i, name in enumerate(VISUAL_MODES)}
METRIC_CODES = {name: i for i, name in enumerate(METRICS)}
assert MODE_CODES["budget"] == K.MODE_BUDGET.value and METRIC_CODES["cosine"] == 1

#: largest tokens-per-frame the kernels take (one frame's tokens sit in one select program)
MAX_TOKENS_PER_FRAME = 16384
#: select kernel: elements of its largest tiles (a row block's partials, pass-1 slots and rank
#: comparisons), and its fewest rows per block
SELECT_TILE = 2048
SELECT_ROWS_MIN = 16
#: pass 2: elements of a frame's tile per thread, and the fewest frames per program when the
#: frames are split over programs to fill the GPU (each program re-reads one frame)
SCORES_ELEMS_PER_THREAD = 32
MIN_SCORES_FRAMES = 8


class VisualInputError(ValueError):
    """Raised after the kernels ran when the data itself is invalid (NaN/Inf, magnitude,
    bad ``cu_frames``, a ``w`` that overflows the scores)."""


@dataclass(frozen=True)
class LaunchPlan:
    """How the Visual SharpV kernels cut the work. Every block size is a power of two.

    Attributes:
        norms_rows, norms_cols: token rows per step and channels per program of pass 1
            (``frame_norms_kernel``; one program per channel slice and frame).
        norms_warps: warps of pass 1.
        scores_rows, scores_cols: tokens and channels per program of pass 2
            (``frame_scores_kernel``; one program per token tile, channel slice and chunk
            of ``scores_frames`` frames).
        scores_warps: warps of pass 2.
        scores_frames: frames per pass-2 program (any positive number; each program but the
            first also reads the frame before its chunk, for T of its first frame). The
            default walks every frame in one program.
        gather_rows, gather_cols: kept rows and channels per copy tile of ``gather_kernel``
            (which reads its frame's ranks in blocks of ``gather_rows`` tokens).
        gather_cols_per_prog: channels each gather program copies (a multiple of
            ``gather_cols``); ``ceil(d / gather_cols_per_prog)`` programs per frame.
        gather_warps: warps of the gather kernel.
        block_n: frames per chunk in the per-video loops (budget split, offsets).
        block_b: videos per chunk in the loops over ``cu_frames``.
        select_rows: tokens per row block of ``frame_select_kernel``, which walks a frame's
            tokens in such blocks (scores, then a tiled rank), so that its per-thread state
            does not grow with ``f``.
        rank_cols: width of the select kernel's rank-comparison tile.
        stages: software-pipelining depth of the streaming loops (loads issued this many
            iterations ahead, through shared memory, on sm_80 and later).
    """

    norms_rows: int
    norms_cols: int
    norms_warps: int
    scores_rows: int
    scores_cols: int
    scores_warps: int
    gather_rows: int
    gather_cols: int
    gather_cols_per_prog: int
    gather_warps: int
    scores_frames: int = MAX_GRID_YZ + 1
    block_n: int = 128
    block_b: int = 1024
    select_rows: int = 256
    rank_cols: int = 16
    stages: int = 3

    def __post_init__(self) -> None:
        for name in ("norms_rows", "norms_cols", "scores_rows", "scores_cols", "gather_rows",
                     "gather_cols", "block_n", "block_b", "select_rows", "rank_cols"):  # fmt: skip
            v = getattr(self, name)
            if v < 1 or v & (v - 1):
                raise ValueError(f"LaunchPlan.{name} must be a power of two, got {v}")
        if self.scores_frames < 1:
            raise ValueError(f"LaunchPlan.scores_frames must be >= 1, got {self.scores_frames}")
        if self.gather_cols_per_prog % self.gather_cols:
            raise ValueError("LaunchPlan.gather_cols_per_prog must be a multiple of gather_cols")


def _pick_cols(n_programs_per_col_block, d: int, widest: int, narrowest: int, want: int) -> int:
    """Widest power-of-two channel block in [narrowest, widest] giving ``want`` programs."""
    cols = max(narrowest, min(widest, next_power_of_2(d)))
    while cols > narrowest and n_programs_per_col_block(math.ceil(d / cols)) < want:
        cols //= 2
    return cols


@functools.lru_cache(maxsize=1024)  # pure; planned once per shape, dtype size and GPU
def plan_launch(shape: tuple[int, int, int], element_size: int, sms: int) -> LaunchPlan:
    """The launch plan for features of ``shape = (total_frames, f, d)`` on ``sms`` SMs.

    Rows of 256-512 bytes per load, tiles of about 2-4K elements (no spills on sm_80/sm_90,
    see ``python -m bench model``) and at least two programs per SM in each streaming
    kernel. On CPU (Triton's interpreter) pass ``sms=1``: the widest blocks, fewest programs.

    Examples:
        >>> plan_launch((32, 196, 896), element_size=2, sms=132).norms_cols
        64
    """
    n_frames, f, d = shape
    want = 2 * sms if sms > 1 else 1
    row_elems = max(16, 512 // element_size)  # channels in a 512-byte row piece
    fb = next_power_of_2(f)
    # pass 1: (channel slice, frame) programs; each walks all f rows of its slice
    n1 = _pick_cols(lambda s: s * n_frames, d, row_elems, max(8, row_elems // 8), want)
    # pass 2: (token tile, channel slice, frame chunk) programs; 512-byte row pieces, 32
    # elements per thread and frame (two frames per iteration), at least four warps per SM
    c2, r2 = max(8, min(row_elems, next_power_of_2(d))), min(fb, 8 if sms > 1 else 16)
    if sms > 1 and r2 // 2 * c2 >= 32 * SCORES_ELEMS_PER_THREAD and f % r2 and f % (r2 // 2) == 0:
        r2 //= 2  # half-height tiles, when they cover f with no padded rows
    while math.ceil(f / r2) * math.ceil(d / c2) < want and (c2 > 32 or r2 > 4):
        if c2 > 32:
            c2 //= 2
        else:
            r2 //= 2
    # the select kernel holds the pass-2 partials of a row block, (slices2, rows), in one tile
    while next_power_of_2(math.ceil(d / c2)) * SELECT_ROWS_MIN > MAX_BLOCK_NUMEL:
        c2 *= 2
    while r2 > 1 and r2 * c2 > 4096:  # tiles of at most 4K elements
        r2 //= 2
    # pass 2 and the select kernel read a token's pass-1 slots, padded to a power of two, in
    # one tile: at most scores_cols of them, and (slots, rows) within Triton's largest block
    slots = min(c2, MAX_BLOCK_NUMEL // SELECT_ROWS_MIN)
    while next_power_of_2(math.ceil(d / n1)) > slots:
        n1 *= 2
    t1 = max(1, min(fb, 4096 // n1))
    w2 = max(1, min(4, r2 * c2 // (32 * SCORES_ELEMS_PER_THREAD)))
    warps = math.ceil(f / r2) * math.ceil(d / c2) * w2
    chunks = min(math.ceil(4 * sms / warps), max(1, n_frames // MIN_SCORES_FRAMES))
    k2 = math.ceil(n_frames / chunks) if sms > 1 else n_frames
    # gather: (frame, channel block) programs, each copying its kept rows in dense tiles
    g_cols = _pick_cols(lambda s: s * n_frames, d, row_elems // 2, row_elems // 4, 2 * want)
    while math.ceil(d / g_cols) > MAX_GRID_YZ:
        g_cols *= 2
    # select: row blocks of at most SELECT_TILE elements in its (slots, rows) tiles
    wide = max(next_power_of_2(math.ceil(d / n1)), next_power_of_2(math.ceil(d / c2)))
    sel = min(fb, max(SELECT_ROWS_MIN, SELECT_TILE // wide))
    return LaunchPlan(
        norms_rows=t1, norms_cols=n1, norms_warps=8 if t1 * n1 >= 4096 else 4,
        scores_rows=r2, scores_cols=c2, scores_warps=w2, scores_frames=k2,
        gather_rows=32, gather_cols=g_cols, gather_cols_per_prog=g_cols, gather_warps=4,
        block_n=32 if n_frames <= 32 else 128, block_b=1024,  # two variants, any count
        select_rows=sel, rank_cols=min(fb, max(16, SELECT_TILE // sel)),
    )  # fmt: skip


def validate_plan(
    plan: LaunchPlan,
    shape: tuple[int, int, int],
    element_size: int,
    n_videos: int = 1,
    limits: DeviceLimits | None = None,
) -> None:
    """Raise ``ValueError`` unless every launch of ``plan`` on ``shape`` can run.

    Checked: each kernel's grid within CUDA's limits; the pass-1 slots (padded to a power of
    two) within one pass-2 tile; every block within Triton's largest tensor
    (:data:`MAX_BLOCK_NUMEL`); warps within the device's threads per block; the software
    pipelines' shared memory (``(stages - 1)`` tiles) within its shared memory per block.
    Run before every launch (cached per plan and shape).
    """
    _validate(plan, tuple(shape), element_size, n_videos, limits or device_limits(_CPU))


_CPU = torch.device("cpu")


@functools.lru_cache(maxsize=256)
def _validate(plan, shape, element_size, n_videos, limits) -> None:
    n_frames, f, d = shape
    fb = next_power_of_2(f)
    n1, n2 = math.ceil(d / plan.norms_cols), math.ceil(d / plan.scores_cols)
    block_s, block_s2 = next_power_of_2(n1), next_power_of_2(n2)
    for kernel, grid in _grids(plan, shape, n_videos).items():
        check_grid(kernel, grid)
    if block_s > plan.scores_cols:
        raise ValueError(
            f"LaunchPlan: pass 2 reads the {n1} pass-1 slices of a token in one "
            f"{plan.scores_cols}-column tile; raise norms_cols or scores_cols"
        )
    blocks = {
        "norms tile": plan.norms_rows * max(plan.norms_cols, block_s),
        "scores tile": plan.scores_rows * plan.scores_cols,
        "select slots": plan.select_rows * max(block_s, block_s2),
        "select rank tile": plan.select_rows * min(fb, plan.rank_cols),
        "gather match": plan.gather_rows * plan.gather_rows,
        "gather tile": plan.gather_rows * plan.gather_cols,
    }
    for what, numel in blocks.items():
        if numel > MAX_BLOCK_NUMEL:
            raise ValueError(f"LaunchPlan: the {what} holds {numel} elements, more than "
                             f"Triton's {MAX_BLOCK_NUMEL}")  # fmt: skip
    select = _select_warps(plan.select_rows * max(block_s, block_s2, plan.rank_cols))
    warps = (plan.norms_warps, plan.scores_warps, plan.gather_warps, select)
    if 32 * max(warps) > limits.max_threads_per_block:
        raise ValueError(f"LaunchPlan: {max(warps)} warps exceed {limits.name}'s threads/block")
    pipe = (
        max(0, plan.stages - 1)
        * element_size
        * max(plan.norms_rows * plan.norms_cols, 2 * plan.scores_rows * plan.scores_cols)
    )
    if pipe > limits.shared_per_block:
        raise ValueError(f"LaunchPlan: its pipelines need {pipe} B of shared memory, more than "
                         f"{limits.name}'s {limits.shared_per_block} B per block")  # fmt: skip


def _grids(plan: LaunchPlan, shape: tuple[int, int, int], n_videos: int) -> dict:
    """The grid of each kernel of ``visual_prune`` for ``plan`` on ``shape``."""
    n_frames, f, d = shape
    return {
        "frame_norms_kernel": (math.ceil(d / plan.norms_cols), n_frames),
        "frame_scores_kernel": (math.ceil(f / plan.scores_rows), math.ceil(d / plan.scores_cols),
                                math.ceil(n_frames / plan.scores_frames)),
        "frame_select_kernel": (n_frames,),
        "video_counts_kernel": (n_videos,),
        "gather_kernel": (n_frames, math.ceil(d / plan.gather_cols_per_prog)),
    }  # fmt: skip


def _video_block(plan: LaunchPlan, n_videos: int) -> int:
    """Videos per chunk of the loops over ``cu_frames``: 16 up to 15 videos, then powers of
    two (a few compiled variants for any number of videos)."""
    return min(plan.block_b, max(16, next_power_of_2(n_videos + 1)))


def _select_rows(plan: LaunchPlan, block_f: int) -> int:
    """Rows per block of the select kernel: the plan's, at most the frame's (padded)."""
    return min(plan.select_rows, block_f)


def _select_warps(tile: int) -> int:
    """Warps of the select kernel whose largest tile holds ``tile`` elements: at most 16
    elements of a tile per thread (no spills on sm_80/sm_90 at any ``f``)."""
    return 4 if tile <= 1024 else 8


def _prepare(features: torch.Tensor, cu_frames: torch.Tensor, plan: LaunchPlan | None):
    """Channel-contiguous features, a contiguous int32 ``cu_frames`` and the checked plan.

    ``cu_frames`` values are checked by the caller (host tensors) or on the device (the
    select kernel); any strides are read here by copying the tiny tensor, never assumed.
    """
    if features.stride(2) != 1:
        features = features.contiguous()
    cu = cu_frames
    if cu.device != features.device or cu.dtype != torch.int32 or not cu.is_contiguous():
        cu = cu.to(device=features.device, dtype=torch.int32).contiguous()
    limits = device_limits(features.device)
    shape = tuple(features.shape)
    if max(shape[0], cu.numel() - 1) > MAX_GRID_YZ:
        raise ValueError(
            f"features.shape[0] and the number of videos must be <= {MAX_GRID_YZ} on the "
            f"Triton path (a CUDA grid limit), got {shape[0]} frames, {cu.numel() - 1} videos"
        )
    return features, cu, _setup(shape, features.element_size(), cu.numel() - 1, limits, plan)


@dataclass(frozen=True)
class _Setup:
    """What every launch of one shape derives from its checked plan, worked out once: the
    kernels' grids, block constexprs and warps, and the scratch buffers' layout."""

    plan: LaunchPlan
    n1: int  # pass-1 channel slices
    n2: int  # pass-2 channel slices
    block_s: int
    grid_norms: tuple[int, int]
    grid_scores: tuple[int, int, int]
    grid_gather: tuple[int, int]
    norms_kw: dict
    scores_kw: dict
    select_kw: dict
    counts_kw: dict
    gather_kw: dict
    #: float32 scratch (nrm, col, msq, part, and imp: the importance when the caller does
    #: not want it) and int32 scratch (flg, hdr, rank, offsets):
    #: ``(name, shape)`` each
    f32_scratch: tuple[tuple[str, tuple[int, ...]], ...]
    i32_scratch: tuple[tuple[str, tuple[int, ...]], ...]


@functools.lru_cache(maxsize=256)
def _setup(shape, element_size, n_videos, limits, plan) -> _Setup:
    """The checked plan (``plan_launch``'s when ``plan`` is None) and its :class:`_Setup`."""
    if plan is None:
        plan = plan_launch(shape, element_size, limits.sms)
    _validate(plan, shape, element_size, n_videos, limits)
    n_frames, f, d = shape
    n1, n2 = math.ceil(d / plan.norms_cols), math.ceil(d / plan.scores_cols)
    block_s, block_s2, block_f = next_power_of_2(n1), next_power_of_2(n2), next_power_of_2(f)
    block_r, block_j = _select_rows(plan, block_f), min(block_f, plan.rank_cols)
    grids = _grids(plan, shape, n_videos)
    video_block = _video_block(plan, n_videos)
    return _Setup(
        plan=plan, n1=n1, n2=n2, block_s=block_s,
        grid_norms=grids["frame_norms_kernel"], grid_scores=grids["frame_scores_kernel"],
        grid_gather=grids["gather_kernel"],
        norms_kw=dict(BLOCK_T=plan.norms_rows, BLOCK_D=plan.norms_cols, BLOCK_S=block_s,
                      STAGES=plan.stages, num_warps=plan.norms_warps, **FP_PINNED),
        scores_kw=dict(EPS=ZERO_NORM_EPS, BLOCK_T=plan.scores_rows, BLOCK_D=plan.scores_cols,
                       BLOCK_S=block_s, EVEN_D=d % plan.scores_cols == 0, STAGES=plan.stages,
                       num_warps=plan.scores_warps, **FP_PINNED),
        select_kw=dict(EPS=ZERO_NORM_EPS, BLOCK_R=block_r, BLOCK_J=block_j, BLOCK_B=video_block,
                       BLOCK_S=block_s, BLOCK_S2=block_s2,
                       num_warps=_select_warps(block_r * max(block_s, block_s2, block_j)),
                       **FP_PINNED),
        counts_kw=dict(STEPS=BUDGET_BISECTION_STEPS, BLOCK_N=plan.block_n, BLOCK_B=video_block,
                       num_warps=1 if plan.block_n <= 32 else 4, **FP_PINNED),
        gather_kw=dict(BLOCK_R=plan.gather_rows, BLOCK_D=plan.gather_cols,
                       D_PER_PROG=plan.gather_cols_per_prog, num_warps=plan.gather_warps,
                       **FP_PINNED),
        f32_scratch=(("nrm", (n_frames, f, block_s)), ("col", (n_frames, d)),
                     ("msq", (n_frames, block_s)), ("part", (n_frames, n2, f, 2)),
                     ("imp", (n_frames, f))),
        i32_scratch=(("flg", (n_frames, n1)), ("hdr", (2,)), ("rank", (n_frames, f)),
                     ("off", (n_frames,))),
    )  # fmt: skip


def _scratch(spec, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    """The named buffers of ``spec`` (``(name, shape)`` pairs), uninitialised. (One
    allocation carved into views costs more on the host: a view is slower than an empty.)"""
    return {name: torch.empty(shape, dtype=dtype, device=device) for name, shape in spec}


#: per thread: ``{(device, stream): (scratch layout, buffers)}``, the last scratch buffers
#: of each device and stream this thread launched on (see :func:`_scratch_buffers`)
_SCRATCH = threading.local()


def _stream_key(device: torch.device) -> int:
    """The current stream of ``device`` (its raw handle on CUDA; 0 elsewhere)."""
    if device.type == "cuda":
        return torch._C._cuda_getCurrentRawStream(device.index)
    return 0


def _scratch_buffers(setup: _Setup, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The scratch buffers of ``setup``'s layout, ``(nrm, col, msq, part, imp, flg, hdr,
    rank, off)`` (:attr:`_Setup.f32_scratch`, then :attr:`_Setup.i32_scratch`),
    on the features' device, reused from this thread's last launch of the same layout on the
    same device and stream when ``features`` is a plain tensor (a tensor subclass, such as a
    fake tensor, gets new buffers at every call: none of its kind is ever kept).

    Safe to reuse: the kernels overwrite every element they later read (pass 1 zeroes the
    header), no buffer is returned to the caller, and a stream runs one call's kernels
    (and the sync-free header assertion) before the next call's. Never shared across threads
    (one ``threading.local`` each) nor streams (keyed by the current stream), so that two
    calls in flight at once never write the same buffer. Holds one set of buffers per
    thread, device and stream: the last shape's (saves the host eight allocations a call).
    """
    device = features.device
    if type(features) is not torch.Tensor:
        return _new_scratch(setup, device)
    cache = getattr(_SCRATCH, "by_stream", None)
    if cache is None:
        cache = _SCRATCH.by_stream = {}
    key = (device, _stream_key(device))
    hit = cache.get(key)
    if hit is not None:
        last, buf = hit
        if last is setup or (last.f32_scratch, last.i32_scratch) == (
            setup.f32_scratch, setup.i32_scratch
        ):  # fmt: skip
            return buf
        del cache[key], hit, buf  # the old buffers go before the new ones are allocated
    buf = _new_scratch(setup, device)
    cache[key] = (setup, buf)
    return buf


def _new_scratch(setup: _Setup, device: torch.device) -> tuple[torch.Tensor, ...]:
    """New scratch buffers, ordered as :func:`_scratch_buffers` returns them."""
    buf = _scratch(setup.f32_scratch, torch.float32, device)
    buf.update(_scratch(setup.i32_scratch, torch.int32, device))
    return tuple(buf.values())


def _scores(
    features: torch.Tensor,
    cu: torch.Tensor,
    setup: _Setup,
    *,
    w: float,
    metric: str,
    mode: str,
    threshold: float,
    k_fixed: int,
    min_keep: int,
    store_st: bool,
    rank: bool,
    keep_scores: bool = True,
) -> dict[str, torch.Tensor]:
    """Launch pass 1, pass 2 and the select kernel; returns their outputs (no sync). Without
    ``keep_scores`` the importance ``I`` goes to a scratch buffer (not for the caller)."""
    n_frames, f, d = features.shape
    dev = features.device
    n_videos = cu.numel() - 1
    plan = setup.plan
    f32 = torch.float32
    out: dict[str, torch.Tensor] = {}
    nrm, col, msq, part, imp, flg, hdr, out["rank"], out["off"] = _scratch_buffers(setup, features)
    st, si = features.stride(0), features.stride(1)
    K.frame_norms_kernel[setup.grid_norms](
        features, nrm, col, msq, flg, hdr, f, d, st, si, **setup.norms_kw
    )
    K.frame_scores_kernel[setup.grid_scores](
        features, nrm, col, msq, part, n_frames, plan.scores_frames, f, d, st, si,
        **setup.scores_kw,
    )  # fmt: skip
    out["I"] = torch.empty((n_frames, f), dtype=f32, device=dev) if keep_scores else imp
    out["r"] = torch.empty(n_frames, dtype=f32, device=dev)
    out["hdr"] = hdr
    if store_st:
        out["S"] = torch.empty((n_frames, f), dtype=f32, device=dev)
        out["T"] = torch.empty((n_frames, f), dtype=f32, device=dev)
    if rank:
        out["counts"] = torch.empty(n_frames, dtype=torch.int32, device=dev)
    dummy = out["I"]
    K.frame_select_kernel[(n_frames,)](
        nrm, msq, flg, part, cu, hdr,
        out.get("S", dummy), out.get("T", dummy), out["I"], out["r"],
        out.get("rank", dummy), out.get("counts", dummy),
        n_videos, n_frames, f, setup.n1, setup.n2, float(w), float(threshold), int(k_fixed),
        int(min_keep), MODE=MODE_CODES[mode], METRIC=METRIC_CODES[metric], STORE_ST=store_st,
        RANK=rank, **setup.select_kw,
    )  # fmt: skip
    return out


@functools.lru_cache(maxsize=1024)
def _budget_capacity(budget: float, bounds: tuple[int, ...], f: int, min_keep: int) -> int:
    """Kept rows of a budget-mode call over the videos of frame offsets ``bounds``."""
    return sum(budget_token_count(budget, b - a, f, min_keep)
               for a, b in zip(bounds[:-1], bounds[1:], strict=True))  # fmt: skip


def _raise_flags(flags: int, w: float) -> None:
    """Turn the header's error bits into the error the API reports."""
    if not flags:
        return
    for bit, message in _flag_messages(w):
        if flags & bit:
            raise VisualInputError(message)


def _flag_messages(w: float) -> tuple[tuple[int, str], ...]:
    """``(bit, message)`` of each header error bit, in the order they are reported."""
    return (
        (K.FLAG_BAD_CU.value, "cu_frames must start at 0, end at features.shape[0] and "
                              "increase strictly (every video needs at least one frame)"),
        (K.FLAG_NONFINITE.value, NONFINITE_MESSAGE),
        (K.FLAG_MAGNITUDE.value, MAGNITUDE_MESSAGE),
        (K.FLAG_W_OVERFLOW.value, f"w = {w} makes the importance scores overflow float32"),
    )  # fmt: skip


#: the device-side assertion's message (CUDA, sync-free modes): one check of all error bits
DEVICE_ERROR_MESSAGE = (
    "visual_prune/visual_scores: invalid input found on the device: features contain NaN or "
    "Inf, or a token's squared norm overflows float32, or cu_frames is malformed, or w "
    "overflows the scores (rerun with mode='adaptive' or on the CPU for the exact error)"
)


def _check_header(hdr: torch.Tensor, w: float) -> None:
    """Report the header's error bits without making the host wait for a GPU.

    On the CPU (Triton's interpreter) the header is read at once (a host read, no sync) and
    a bad input raises :class:`VisualInputError` naming it. On CUDA one device-side
    assertion (``torch._assert_async``, two tiny kernels) checks that no error bit is set:
    nothing waits, and a failure surfaces asynchronously, as a ``RuntimeError``
    ("device-side assert triggered"; :data:`DEVICE_ERROR_MESSAGE` in the device log) at the
    next synchronisation, after which the CUDA context is unusable.
    """
    if hdr.device.type != "cuda":
        flags = hdr.tolist()[1]
        if flags:
            _raise_flags(flags, w)
        return
    torch._assert_async(hdr.select(0, 1) == 0, DEVICE_ERROR_MESSAGE)


def visual_scores_triton(
    features: torch.Tensor,
    cu_frames: torch.Tensor,
    *,
    w: float,
    metric: str,
    check: bool = True,
    plan: LaunchPlan | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """S, T, I ``(total_frames, f)`` and r ``(total_frames,)``, float32.

    Args:
        features: ``(total_frames, f, d)`` float32/float16/bfloat16, any strides.
        cu_frames: ``(B + 1,)`` int32/int64 frame offsets on the features' device.
        w: weight of S in ``I = T + w S``.
        metric: one of ``vocab.METRICS``.
        check: report bad data: at once on the CPU, as device-side assertions on CUDA
            (no synchronisation; see :func:`_check_header`).
        plan: launch plan; by default :func:`plan_launch` for the device.
    Raises:
        VisualInputError: NaN/Inf, squared-norm overflow, malformed ``cu_frames``, ``w``
            overflowing the scores (on CUDA: a device-side assertion, reported at the next
            synchronisation).

    Examples:
        >>> S, T, I, r = visual_scores_triton(x, cu, w=1.0, metric="dissim")  # doctest: +SKIP
    """
    with launch_scope(features.device):
        features, cu, setup = _prepare(features, cu_frames, plan)
        out = _scores(
            features, cu, setup, w=w, metric=metric, mode="adaptive", threshold=0.0,
            k_fixed=0, min_keep=0, store_st=True, rank=False,
        )  # fmt: skip
    if check:
        _check_header(out["hdr"], w)
    return out["S"], out["T"], out["I"], out["r"]


def visual_prune_triton(
    features: torch.Tensor,
    cu_frames: torch.Tensor,
    *,
    mode: str = DEFAULT_MODE,
    w: float = DEFAULT_W,
    threshold: float = DEFAULT_THRESHOLD,
    keep_ratio: float | None = None,
    budget: float | None = None,
    min_keep: int = DEFAULT_MIN_KEEP,
    metric: str = DEFAULT_METRIC,
    plan: LaunchPlan | None = None,
    cu_host: Sequence[int] | None = None,
    scores: bool = True,
) -> tuple[torch.Tensor | None, ...]:
    """Visual SharpV on the Triton kernels: five launches, at most one read-back.

    When the kept count follows from host-side values (``ratio`` mode; ``budget`` mode with
    one video or with ``cu_host``), the output is sized before the kernels run and nothing
    is read back: on CUDA the error bits become device-side assertions
    (:func:`_check_header`). Otherwise (``adaptive``, ``manual``, ``budget`` over several
    videos on the device) the header is read once after the fourth kernel, the one
    synchronisation, and the output is allocated for exactly the ``N_keep`` kept rows
    before the gather kernel is queued.

    Args:
        features: ``(total_frames, f, d)`` float32/float16/bfloat16, any strides.
        cu_frames: ``(B + 1,)`` int32/int64 frame offsets on the features' device, any
            strides (values validated by the caller on CPU, by the select kernel on CUDA).
        mode, w, threshold, keep_ratio, budget, min_keep, metric: as ``visual_prune``.
        plan: launch plan; by default :func:`plan_launch` for the device.
        cu_host: the values of ``cu_frames`` when the caller has them on the host (checked):
            budget mode then sizes its output without a read-back.
        scores: return the importance; False: ``scores`` is None (one allocation fewer).
    Returns:
        ``(tokens, indices, counts, ratios, cu_tokens, scores)`` as in ``VisualPruneResult``;
        ``scores`` is the float32 importance ``(total_frames, f)``, or None.
    Raises:
        VisualInputError: NaN/Inf or overflowing magnitudes in the features, malformed
            ``cu_frames``, ``w`` overflowing the scores (found on the device; on CUDA in
            ``ratio``/``budget`` mode reported asynchronously, see :func:`_check_header`).

    Examples:
        >>> tokens, idx, counts, r, cu_tok, I = visual_prune_triton(x, cu)  # doctest: +SKIP
    """
    with launch_scope(features.device):
        features, cu, setup = _prepare(features, cu_frames, plan)
        n_frames, f, d = features.shape
        dev = features.device
        n_videos = cu.numel() - 1
        k_fixed = ratio_keep_count(keep_ratio, f, min_keep) if mode == "ratio" else 0
        capacity: int | None = None  # the kept count, when known on the host
        if mode == "ratio":
            capacity = n_frames * k_fixed
        elif mode == "budget" and (n_videos == 1 or cu_host is not None):
            bounds = (0, n_frames) if n_videos == 1 else tuple(int(c) for c in cu_host)
            capacity = _budget_capacity(budget, bounds, f, min_keep)
        out = _scores(
            features, cu, setup, w=w, metric=metric, mode=mode, threshold=threshold,
            k_fixed=k_fixed, min_keep=min_keep, store_st=False, rank=True, keep_scores=scores,
        )  # fmt: skip
        counts, offsets = out["counts"], out["off"]
        cu_tokens = torch.empty(n_videos + 1, dtype=torch.int32, device=dev)
        K.video_counts_kernel[(n_videos,)](
            cu, out["r"], counts, offsets, cu_tokens, out["hdr"], n_videos, n_frames, f,
            int(min_keep), float(budget if mode == "budget" else 0.0), MODE=MODE_CODES[mode],
            **setup.counts_kw,
        )  # fmt: skip
        if capacity is None:
            # the one host synchronisation: the kept count sizes the output exactly
            n_keep, flags = out["hdr"].tolist()
            _raise_flags(flags, w)
        else:
            n_keep = capacity
        tokens = torch.empty((n_keep, d), dtype=features.dtype, device=dev)
        indices = torch.empty(n_keep, dtype=torch.int64, device=dev)
        K.gather_kernel[setup.grid_gather](
            features, out["rank"], counts, offsets, tokens, indices, n_keep, f, d,
            features.stride(0), features.stride(1), **setup.gather_kw,
        )  # fmt: skip
        if capacity is not None:
            _check_header(out["hdr"], w)
    return tokens, indices, counts, out["r"], cu_tokens, out["I"] if scores else None
