"""Pre-LLM token-pruning baselines with the same result type as ``visual_prune``.

Every function takes the visual tokens of a varlen batch of videos exactly as
:func:`sharpv_kernels.visual_prune` does, ``features`` ``(total_frames, f, d)`` (float32,
float16, bfloat16 or float64) and ``cu_frames`` ``(B + 1,)`` frame offsets, and returns a
:class:`sharpv_kernels.VisualPruneResult`:

* ``tokens`` ``(N_keep, d)`` input dtype, kept rows in (frame, token) order;
* ``indices`` ``(N_keep,)`` int64 flat indices into ``total_frames * f``, increasing;
* ``counts`` ``(total_frames,)`` int32 tokens kept per frame;
* ``ratios`` ``(total_frames,)`` float32: for the baselines the fraction of the frame that is
  kept, ``counts / f`` (only ``uniform``, which is SharpV's ``ratio`` mode, returns SharpV's
  ``r_t``);
* ``cu_tokens`` ``(B + 1,)`` int32 offsets of each video's kept tokens;
* ``scores`` ``(total_frames, f)`` float32 when the method ranks by a score and
  ``return_scores=True`` (the EVS/DyCoke dissimilarities, the random keys), else ``None``.

Random methods draw their keys on the CPU from ``torch.Generator().manual_seed(seed)``, so a
seed gives the same selection on every device. Scores are computed in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sharpv_kernels import VisualPruneResult, visual_prune
from sharpv_kernels.ops.visual_prune.checks import check_cu_values, normalize_cu_frames
from sharpv_kernels.vocab import DEFAULT_MIN_KEEP, ZERO_NORM_EPS

__all__ = [
    "uniform",
    "random_per_frame",
    "random_video",
    "evs",
    "dycoke_ttm",
    "result_from_mask",
    "evs_retained_tokens",
    "dycoke_keep_per_frame",
]

#: ``uniform``'s default keep ratio (the ``uniform`` method declares the same default)
UNIFORM_KEEP_RATIO = 0.3
CuFrames = torch.Tensor | Sequence[int] | None


def _check(features: torch.Tensor, cu_frames: CuFrames) -> torch.Tensor:
    """Validate the common inputs; returns ``cu_frames`` as int32 on the features' device."""
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if features.dim() != 3:
        raise ValueError(f"features must be (total_frames, f, d), got {tuple(features.shape)}")
    if not features.is_floating_point():
        raise TypeError(f"features must be a floating tensor, got {features.dtype}")
    if min(features.shape) == 0:
        raise ValueError(f"features must not have an empty dim, got {tuple(features.shape)}")
    cu = normalize_cu_frames(cu_frames, features)
    if cu.dim() != 1 or cu.numel() < 2:
        raise ValueError(f"cu_frames must be (B + 1,) with B >= 1, got {tuple(cu.shape)}")
    check_cu_values(cu.cpu(), features.shape[0])
    if not bool(torch.isfinite(features).all()):
        raise ValueError("features hold NaN or Inf")
    return cu


def _check_fraction(name: str, value: object, *, closed_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    lo_ok = value >= 0.0 if closed_low else value > 0.0
    if not (lo_ok and value <= 1.0):
        raise ValueError(f"{name} must be in {'[' if closed_low else '('}0, 1], got {value}")
    return float(value)


def _video_ids(cu: torch.Tensor, total_frames: int) -> torch.Tensor:
    """``(total_frames,)`` int64 video index of every frame."""
    lengths = (cu[1:] - cu[:-1]).long()
    return torch.repeat_interleave(torch.arange(lengths.numel(), device=cu.device), lengths)


def result_from_mask(
    features: torch.Tensor,
    cu_frames: torch.Tensor,
    keep: torch.Tensor,
    *,
    ratios: torch.Tensor | None = None,
    scores: torch.Tensor | None = None,
) -> VisualPruneResult:
    """Build a :class:`VisualPruneResult` from a keep mask.

    Args:
        features: ``(total_frames, f, d)``.
        cu_frames: ``(B + 1,)`` int32 frame offsets on the features' device.
        keep: ``(total_frames, f)`` bool, True for the kept tokens.
        ratios: ``(total_frames,)`` per-frame ratio to report (default ``counts / f``).
        scores: optional ``(total_frames, f)`` float32 scores to return.

    Examples:
        >>> import torch
        >>> x = torch.randn(2, 3, 4)
        >>> keep = torch.tensor([[True, False, True], [False, False, True]])
        >>> res = result_from_mask(x, torch.tensor([0, 2], dtype=torch.int32), keep)
        >>> res.indices.tolist(), res.counts.tolist(), res.cu_tokens.tolist()
        ([0, 2, 5], [2, 1], [0, 3])
    """
    n, f, d = features.shape
    indices = keep.reshape(-1).nonzero().squeeze(1)
    counts = keep.sum(1, dtype=torch.int32)
    per_video = torch.zeros(cu_frames.numel() - 1, dtype=torch.int64, device=features.device)
    per_video.index_add_(0, _video_ids(cu_frames, n), counts.long())
    cu_tokens = torch.cat([per_video.new_zeros(1), per_video.cumsum(0)]).to(torch.int32)
    if ratios is None:
        ratios = counts.to(torch.float32) / f
    return VisualPruneResult(
        tokens=features.reshape(n * f, d).index_select(0, indices),
        indices=indices,
        counts=counts,
        ratios=ratios.to(torch.float32),
        cu_tokens=cu_tokens,
        scores=scores,
    )


def _rank_desc(key: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Rank of every element of ``key`` (1-D) inside its ``group`` (1-D int64, sorted),
    largest key first, ties to the lower index. Returns int64 of the same shape."""
    order = torch.argsort(-key, stable=True)
    order = order[torch.argsort(group[order], stable=True)]
    sizes = torch.bincount(group, minlength=n_groups)
    starts = torch.cumsum(sizes, 0) - sizes
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=key.device) - starts[group[order]]
    return rank


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Rows divided by their L2 norm in float32; zero rows (norm <= 1e-12) stay zero."""
    x = x.to(torch.float32)
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    return torch.where(norm > ZERO_NORM_EPS, x / norm.clamp_min(ZERO_NORM_EPS), torch.zeros_like(x))


def _random_keys(shape: tuple[int, ...], seed: int, device: torch.device) -> torch.Tensor:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64).to(device)


# --------------------------------------------------------------------------- uniform
def uniform(
    features: torch.Tensor,
    cu_frames: CuFrames = None,
    *,
    keep_ratio: float = UNIFORM_KEEP_RATIO,
    min_keep: int = DEFAULT_MIN_KEEP,
    return_scores: bool = False,
    **sharpv_options: object,
) -> VisualPruneResult:
    """The same keep ratio in every frame: SharpV's ``ratio`` mode (SPEC item 7).

    ``k_t = clamp(ceil(keep_ratio * f), min_keep, f)`` tokens per frame, chosen by SharpV's
    importance ``I_t``. Other keyword arguments (``w``, ``metric``) go to ``visual_prune``.

    Examples:
        >>> import torch
        >>> uniform(torch.randn(3, 10, 4), [0, 3], keep_ratio=0.3).counts.tolist()
        [3, 3, 3]
    """
    return visual_prune(
        features, cu_frames, mode="ratio", keep_ratio=keep_ratio, min_keep=min_keep,
        return_scores=return_scores, **sharpv_options,
    )  # fmt: skip


# --------------------------------------------------------------------------- V-Random
def random_per_frame(
    features: torch.Tensor,
    cu_frames: CuFrames = None,
    *,
    counts: torch.Tensor | Sequence[int] | None = None,
    seed: int = 0,
    return_scores: bool = False,
    **sharpv_options: object,
) -> VisualPruneResult:
    """The paper's V-Random-dagger: SharpV's per-frame counts, random tokens in each frame.

    Args:
        counts: ``(total_frames,)`` tokens to keep per frame; by default the counts of
            ``visual_prune(features, cu_frames, **sharpv_options)`` (adaptive mode unless
            ``mode=...`` is given).
        seed: seed of the random keys (same seed, same selection).
        return_scores: return the random keys ``(total_frames, f)`` as float32 scores.

    Examples:
        >>> import torch
        >>> x = torch.randn(2, 6, 4)
        >>> random_per_frame(x, [0, 2], counts=[2, 5], seed=1).counts.tolist()
        [2, 5]
    """
    cu = _check(features, cu_frames)
    n, f, _ = features.shape
    if counts is None:
        counts = visual_prune(features, cu, **sharpv_options).counts  # type: ignore[arg-type]
    counts = torch.as_tensor(counts, device=features.device).long()
    if counts.shape != (n,) or bool((counts < 0).any()) or bool((counts > f).any()):
        raise ValueError(f"counts must be ({n},) integers in [0, {f}]")
    keys = _random_keys((n, f), seed, features.device)
    rank = torch.argsort(torch.argsort(keys, dim=1, descending=True, stable=True), dim=1)
    keep = rank < counts[:, None]
    return result_from_mask(features, cu, keep, scores=keys.float() if return_scores else None)


def random_video(
    features: torch.Tensor,
    cu_frames: CuFrames = None,
    *,
    totals: torch.Tensor | Sequence[int] | None = None,
    seed: int = 0,
    return_scores: bool = False,
    **sharpv_options: object,
) -> VisualPruneResult:
    """The paper's V-Random-star: SharpV's total per video, random tokens over the whole video.

    Args:
        totals: ``(B,)`` tokens to keep per video; by default the totals of
            ``visual_prune(features, cu_frames, **sharpv_options)``.
        seed: seed of the random keys.
        return_scores: return the random keys ``(total_frames, f)`` as float32 scores.

    Examples:
        >>> import torch
        >>> res = random_video(torch.randn(3, 6, 4), [0, 1, 3], totals=[2, 7], seed=0)
        >>> res.cu_tokens.tolist()
        [0, 2, 9]
    """
    cu = _check(features, cu_frames)
    n, f, _ = features.shape
    n_videos = cu.numel() - 1
    if totals is None:
        ct = visual_prune(features, cu, **sharpv_options).cu_tokens  # type: ignore[arg-type]
        totals = (ct[1:] - ct[:-1]).long()
    totals = torch.as_tensor(totals, device=features.device).long()
    sizes = (cu[1:] - cu[:-1]).long() * f
    if totals.shape != (n_videos,) or bool((totals < 0).any()) or bool((totals > sizes).any()):
        raise ValueError(f"totals must be ({n_videos},) integers in [0, frames * f]")
    keys = _random_keys((n, f), seed, features.device)
    group = _video_ids(cu, n).repeat_interleave(f)
    rank = _rank_desc(keys.reshape(-1), group, n_videos)
    keep = (rank < totals[group]).reshape(n, f)
    return result_from_mask(features, cu, keep, scores=keys.float() if return_scores else None)


# --------------------------------------------------------------------------- EVS
def evs_retained_tokens(frames: int, f: int, rate: float) -> int:
    """Tokens EVS keeps in a video of ``frames * f`` tokens at pruning rate ``rate``:
    ``max(f, int(frames * f * (1 - rate)))`` (the whole first frame at least).

    Examples:
        >>> evs_retained_tokens(8, 196, 0.7), evs_retained_tokens(2, 196, 0.9)
        (470, 196)
    """
    return min(frames * f, max(f, int(frames * f * (1.0 - rate))))


def evs(
    features: torch.Tensor,
    cu_frames: CuFrames = None,
    *,
    rate: float = 0.7,
    return_scores: bool = False,
) -> VisualPruneResult:
    """Efficient Video Sampling: one global top-K per video by temporal dissimilarity.

    Token ``i`` of frame ``t > 1`` scores ``1 - cos(F_t[i], F_{t-1}[i])`` (a zero vector has
    cosine 0); every token of the first frame of a video scores ``+inf``, so the first frame
    is kept whole. Each video keeps its :func:`evs_retained_tokens` best tokens (ties to the
    lower flat index), so frames receive very different counts.

    Args:
        rate: pruning rate ``q`` in ``[0, 1)``: the fraction of the video's tokens removed.
        return_scores: return the dissimilarities (first frames ``+inf``).

    Examples:
        >>> import torch
        >>> res = evs(torch.randn(4, 5, 8), [0, 4], rate=0.5)
        >>> res.counts[0].item(), res.counts.sum().item()
        (5, 10)
    """
    cu = _check(features, cu_frames)
    rate = _check_fraction("rate", rate, closed_low=True)
    if rate >= 1.0:
        raise ValueError(f"rate must be in [0, 1), got {rate}")
    n, f, _ = features.shape
    n_videos = cu.numel() - 1
    u = _unit(features)
    dis = torch.full((n, f), float("inf"), dtype=torch.float32, device=features.device)
    if n > 1:
        dis[1:] = 1.0 - (u[1:] * u[:-1]).sum(-1)
    first = cu[:-1].long()
    dis[first] = float("inf")
    frames = (cu[1:] - cu[:-1]).tolist()
    totals = torch.tensor([evs_retained_tokens(t, f, rate) for t in frames], device=features.device)
    group = _video_ids(cu, n).repeat_interleave(f)
    rank = _rank_desc(dis.reshape(-1), group, n_videos)
    keep = (rank < totals[group]).reshape(n, f)
    return result_from_mask(features, cu, keep, scores=dis if return_scores else None)


# --------------------------------------------------------------------------- DyCoke TTM
def dycoke_keep_per_frame(f: int, prune_ratio: float) -> int:
    """Tokens a pruned DyCoke frame keeps: ``int((1 - K) * f)`` as in DyCoke's code.

    Examples:
        >>> dycoke_keep_per_frame(196, 0.7)
        58
    """
    return int((1.0 - prune_ratio) * f)


def dycoke_ttm(
    features: torch.Tensor,
    cu_frames: CuFrames = None,
    *,
    prune_ratio: float = 0.7,
    window: int = 4,
    return_scores: bool = False,
) -> VisualPruneResult:
    """DyCoke's stage 1, temporal token merging (TTM), before the LLM.

    Frames of each video are split into windows of ``window`` (4) consecutive frames
    ``(a, a+1, a+2, a+3)``; the last window may be shorter. In a window:

    * frame ``a`` is kept whole;
    * frame ``a+1`` is compared with frame ``a``, frame ``a+3`` with frame ``a+2`` (adjacent
      pairs), and frame ``a+2`` with frame ``a`` (the window's anchor), always token ``i``
      against token ``i`` by cosine similarity of the original features;
    * each compared frame keeps its ``int((1 - K) f)`` LEAST similar tokens (ties to the lower
      index): the ``K`` fraction most redundant with the reference frame is removed.

    ``K = prune_ratio`` is DyCoke's first hyper-parameter (0.7 or 0.5 in the SharpV paper's
    comparison). Its ``L`` and ``P`` belong to DyCoke's stage 2 (dynamic KV-cache pruning
    inside the LLM during decoding), which this function does not implement. Like DyCoke's
    code, the redundant tokens are dropped, not averaged into the kept ones.

    Args:
        prune_ratio: ``K`` in ``[0, 1)``.
        window: frames per window (>= 2).
        return_scores: return ``1 - cos`` against the reference frame (anchors ``+inf``).

    Examples:
        >>> import torch
        >>> dycoke_ttm(torch.randn(5, 10, 4), [0, 5], prune_ratio=0.5).counts.tolist()
        [10, 5, 5, 5, 10]
    """
    cu = _check(features, cu_frames)
    k = _check_fraction("prune_ratio", prune_ratio, closed_low=True)
    if k >= 1.0:
        raise ValueError(f"prune_ratio must be in [0, 1), got {prune_ratio}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise ValueError(f"window must be an int >= 2, got {window}")
    n, f, _ = features.shape
    dev = features.device
    vid = _video_ids(cu, n)
    local = torch.arange(n, device=dev) - cu[:-1].long()[vid]
    pos = local % window
    # reference frame: a+1 -> a, a+2 -> a, a+3 -> a+2, a+4.. -> previous (window > 4)
    ref = torch.where(pos == 2, torch.arange(n, device=dev) - 2, torch.arange(n, device=dev) - 1)
    anchor = pos == 0
    ref = torch.where(anchor, torch.arange(n, device=dev), ref)
    u = _unit(features)
    dis = 1.0 - (u * u[ref]).sum(-1)
    dis = torch.where(anchor[:, None], torch.full_like(dis, float("inf")), dis)
    keep_n = dycoke_keep_per_frame(f, k)
    rank = torch.argsort(torch.argsort(dis, dim=1, descending=True, stable=True), dim=1)
    keep = anchor[:, None] | (rank < keep_n)
    return result_from_mask(features, cu, keep, scores=dis if return_scores else None)
