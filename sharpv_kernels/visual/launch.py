"""Launchers of the Visual SharpV Triton kernels.

They take already-validated arguments (see ``api.py``) and work on CUDA tensors, or on CPU
tensors when Triton's interpreter is on (``TRITON_INTERPRET=1``), which is how CI tests the
kernels themselves. A call makes three kernel launches and one host synchronisation: the
two-word header (output size, error flags) read back between the select and gather kernels.
"""

from __future__ import annotations

import math

import torch

from .._utils import is_interpreting, next_power_of_2
from ..vocab import BUDGET_BISECTION_STEPS
from . import kernels as K
from .checks import NONFINITE_MESSAGE

__all__ = ["MODES", "METRICS", "visual_prune_triton", "visual_scores_triton", "VisualInputError"]

MODES = {"adaptive": 0, "manual": 1, "ratio": 2, "budget": 3}
METRICS = {"dissim": 0, "cosine": 1}

#: largest tokens-per-frame the kernels take (one frame's tokens sit in one program)
MAX_TOKENS_PER_FRAME = 16384

_BUDGET_STEPS = BUDGET_BISECTION_STEPS

#: Launch shape under Triton's interpreter: (channel splits of the stats kernel, channel
#: blocks of the gather kernel, largest frame chunk, largest video chunk). One program per
#: frame keeps CI fast; tests raise the splits and shrink the chunks to run, on small inputs,
#: the multi-program and multi-chunk paths that compiled launches take.
INTERPRET_LAUNCH = {"n_split": 1, "n_dprog": 1, "max_block_n": 128, "max_block_b": 1024}


class VisualInputError(ValueError):
    """Raised after the kernels ran when the data itself is invalid (NaN/Inf, bad cu_frames)."""


def _num_sms(device: torch.device) -> int:
    if device.type != "cuda":
        return 4
    return torch.cuda.get_device_properties(device).multi_processor_count


#: elements per (BLOCK_F, BLOCK_D) tile. With 16 warps this keeps the stats kernel near 100
#: registers per thread and the gather kernel near 60, without spills (sm_90, from
#: ``scripts/aot_compile_check.py``); 8K-element tiles need 255 registers and spill.
_TILE_ELEMS = 4096


def _tile_d(block_f: int) -> int:
    """Columns per tile so that a (BLOCK_F, BLOCK_D) tile holds about ``_TILE_ELEMS``."""
    return max(4, min(64, _TILE_ELEMS // block_f))


def _tile_warps(block_f: int, block_d: int) -> int:
    """Warps for a (BLOCK_F, BLOCK_D) tile: about 256 elements per warp, 4 to 16 warps."""
    return max(4, min(16, block_f * block_d // 256))


def _rank_block(block_f: int) -> int:
    """Width of the (BLOCK_F, BLOCK_J) comparison tile of the rank loop."""
    return 16 if block_f >= 256 else min(64, max(16, _TILE_ELEMS // block_f))


def _plan_split(n_frames: int, d: int, block_d: int, device: torch.device) -> tuple[int, int]:
    """Split the channels so that about two programs per SM stream the features."""
    if is_interpreting():
        n_split = max(1, min(INTERPRET_LAUNCH["n_split"], math.ceil(d / block_d)))
    else:
        want = max(1, (2 * _num_sms(device) + n_frames - 1) // n_frames)
        n_split = max(1, min(want, math.ceil(d / block_d)))
    d_split = math.ceil(math.ceil(d / n_split) / block_d) * block_d
    return math.ceil(d / d_split), d_split


def _block_b(n_videos: int) -> int:
    """Videos per chunk in the loops over ``cu_frames``."""
    cap = INTERPRET_LAUNCH["max_block_b"] if is_interpreting() else 1024
    return min(cap, next_power_of_2(n_videos + 1))


def _block_n(n_frames: int) -> int:
    """Frames per chunk in the loops over counts and budget quotas."""
    cap = INTERPRET_LAUNCH["max_block_n"] if is_interpreting() else 128
    return min(cap, next_power_of_2(n_frames))


def _select_warps(block_f: int) -> int:
    return 4 if block_f <= 64 else 8 if block_f <= 512 else 16


def _scores(
    features: torch.Tensor,
    cu_frames: torch.Tensor,
    *,
    w: float,
    metric: str,
    mode: str,
    threshold: float,
    k_fixed: int,
    min_keep: int,
    budget: float,
    store_st: bool,
    rank: bool,
) -> dict[str, torch.Tensor]:
    """Launch the stats and select kernels; returns their outputs (no synchronisation)."""
    n_frames, f, d = features.shape
    dev = features.device
    if features.stride(2) != 1:
        features = features.contiguous()
    block_f = next_power_of_2(f)
    block_d = _tile_d(block_f)
    n_split, d_split = _plan_split(n_frames, d, block_d, dev)
    n_videos = cu_frames.numel() - 1
    block_b = _block_b(n_videos)

    part = torch.empty((n_frames, n_split, 3, f), dtype=torch.float32, device=dev)
    msq = torch.empty((n_frames, n_split), dtype=torch.float32, device=dev)
    hdr = torch.empty(2, dtype=torch.int32, device=dev)
    K.frame_stats_kernel[(n_frames, n_split)](
        features, cu_frames, part, msq, hdr,
        n_videos, f, d, d_split, features.stride(0), features.stride(1),
        BLOCK_F=block_f, BLOCK_D=block_d, BLOCK_B=block_b,
        num_warps=_tile_warps(block_f, block_d),
    )  # fmt: skip

    out = {
        "I": torch.empty((n_frames, f), dtype=torch.float32, device=dev),
        "r": torch.empty(n_frames, dtype=torch.float32, device=dev),
        "hdr": hdr,
        "features": features,
    }
    if store_st:
        out["S"] = torch.empty((n_frames, f), dtype=torch.float32, device=dev)
        out["T"] = torch.empty((n_frames, f), dtype=torch.float32, device=dev)
    if rank:
        out["rank"] = torch.empty((n_frames, f), dtype=torch.int32, device=dev)
        out["counts"] = torch.empty(n_frames, dtype=torch.int32, device=dev)
    dummy = out["I"]
    K.frame_select_kernel[(n_frames,)](
        part, msq, cu_frames, hdr,
        out.get("S", dummy), out.get("T", dummy), out["I"], out["r"],
        out.get("rank", dummy), out.get("counts", dummy),
        n_videos, n_frames, f, n_split, float(w), float(threshold), int(k_fixed),
        int(min_keep), float(budget),
        MODE=MODES[mode], METRIC=METRICS[metric], STORE_ST=store_st, RANK=rank,
        BLOCK_F=block_f, BLOCK_J=min(block_f, _rank_block(block_f)),
        BLOCK_B=block_b, num_warps=_select_warps(block_f),
    )  # fmt: skip
    return out


def _raise_flags(flags: int) -> None:
    if flags & 2:
        raise VisualInputError(
            "cu_frames must start at 0, end at features.shape[0] and increase strictly "
            "(every video needs at least one frame)"
        )
    if flags & 1:
        raise VisualInputError(NONFINITE_MESSAGE)


def visual_scores_triton(
    features: torch.Tensor, cu_frames: torch.Tensor, *, w: float, metric: str, check: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """S, T, I ``(total_frames, f)`` and r ``(total_frames,)``, float32.

    Two launches. With ``check`` the error flags are read back (one synchronisation).
    """
    out = _scores(
        features, cu_frames, w=w, metric=metric, mode="adaptive", threshold=0.0,
        k_fixed=0, min_keep=0, budget=0.0, store_st=True, rank=False,
    )  # fmt: skip
    if check:
        _raise_flags(int(out["hdr"][1].item()))
    return out["S"], out["T"], out["I"], out["r"]


def visual_prune_triton(
    features: torch.Tensor,
    cu_frames: torch.Tensor,
    *,
    mode: str = "adaptive",
    w: float = 1.0,
    threshold: float = 1.6,
    keep_ratio: float | None = None,
    budget: float | None = None,
    min_keep: int = 1,
    metric: str = "dissim",
) -> tuple[torch.Tensor, ...]:
    """Visual SharpV on the Triton kernels.

    Args:
        features: ``(total_frames, f, d)`` float32/float16/bfloat16, last dim contiguous.
        cu_frames: ``(B + 1,)`` int32 frame offsets on the features' device.
    Returns:
        ``(tokens, indices, counts, ratios, cu_tokens, scores)`` as in ``VisualPruneResult``;
        ``scores`` is the float32 importance ``(total_frames, f)``.
    Raises:
        VisualInputError: NaN/Inf in the features or malformed ``cu_frames`` (found on the
            device, reported after the one synchronisation).
    """
    n_frames, f, d = features.shape
    dev = features.device
    k_fixed = math.ceil(keep_ratio * f) if mode == "ratio" else 0
    k_fixed = min(max(k_fixed, min_keep), f)
    out = _scores(
        features, cu_frames, w=w, metric=metric, mode=mode, threshold=threshold,
        k_fixed=k_fixed, min_keep=min_keep, budget=budget if mode == "budget" else 0.0,
        store_st=False, rank=True,
    )  # fmt: skip
    n_keep, flags = out["hdr"].tolist()  # the one host synchronisation
    _raise_flags(flags)

    features = out["features"]
    n_videos = cu_frames.numel() - 1
    block_f = next_power_of_2(f)
    block_d = _tile_d(block_f)
    if is_interpreting():
        n_dprog = max(1, min(INTERPRET_LAUNCH["n_dprog"], math.ceil(d / block_d)))
    else:
        want = max(1, (4 * _num_sms(dev) + n_frames - 1) // n_frames)
        n_dprog = max(1, min(want, math.ceil(d / block_d)))
    d_per_prog = math.ceil(math.ceil(d / n_dprog) / block_d) * block_d
    n_dprog = math.ceil(d / d_per_prog)

    tokens = torch.empty((n_keep, d), dtype=features.dtype, device=dev)
    indices = torch.empty(n_keep, dtype=torch.int64, device=dev)
    cu_tokens = torch.empty(n_videos + 1, dtype=torch.int32, device=dev)
    counts = out["counts"]
    K.gather_kernel[(n_frames, n_dprog)](
        features, cu_frames, out["r"], out["rank"], counts, tokens, indices, cu_tokens,
        n_videos, n_frames, f, d, d_per_prog, features.stride(0), features.stride(1),
        int(min_keep), float(budget if mode == "budget" else 0.0),
        MODE=MODES[mode], STEPS=_BUDGET_STEPS, BLOCK_F=block_f, BLOCK_D=block_d,
        BLOCK_B=_block_b(n_videos), BLOCK_N=_block_n(n_frames),
        num_warps=_tile_warps(block_f, block_d),
    )  # fmt: skip
    return tokens, indices, counts, out["r"], cu_tokens, out["I"]
