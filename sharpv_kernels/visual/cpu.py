"""Vectorized PyTorch path of Visual SharpV: the ops' CPU implementation.

Same contract and numerics as the Triton kernels (float32 accumulation, same tie rules,
same budget split), with no Python loop over frames or videos: every step is a batched
tensor op over all frames of all videos at once, except that the two distance passes run
over cache-sized blocks of whole frames (about 2 MB each), which keeps their temporaries
in cache. Written with plain tensor ops on the
input's device, it is also the eager baseline the benchmarks run (and ``torch.compile``)
on a GPU.
"""

from __future__ import annotations

import math

import torch

from ..vocab import BUDGET_BISECTION_STEPS
from .checks import NONFINITE_MESSAGE

__all__ = [
    "visual_prune_torch",
    "frame_video_ids",
    "visual_scores_cpu",
    "frame_counts_cpu",
    "budget_quotas_cpu",
    "select_cpu",
]

_EPS = 1e-12


def frame_video_ids(cu_frames: torch.Tensor, total_frames: int) -> torch.Tensor:
    """``(total_frames,)`` int64 index of the video each frame belongs to."""
    lengths = (cu_frames[1:] - cu_frames[:-1]).to(torch.int64)
    return torch.repeat_interleave(
        torch.arange(lengths.numel(), device=cu_frames.device), lengths, output_size=total_frames
    )


def _pair_score(
    diff: torch.Tensor, na: torch.Tensor, nb: torch.Tensor, metric: str
) -> torch.Tensor:
    """Score of a pair from ``|a - b|``, ``|a|`` and ``|b|`` (zero vectors per SPEC 1).

    Uses ``|a/|a| - b/|b||^2 = (|a - b|^2 - (|a| - |b|)^2) / (|a||b|)``, which is exact for
    identical vectors and free of the cancellation of ``2 - 2 cos`` (the kernels use it too).
    """
    nz_a, nz_b = na > _EPS, nb > _EPS
    both = nz_a & nz_b
    sq = (diff.square() - (na - nb).square()).clamp_min(0.0) / torch.where(both, na * nb, 1.0)
    if metric == "dissim":
        return torch.where(both, sq.sqrt(), (nz_a.float() + nz_b.float()).sqrt())
    return torch.where(both, 0.5 * sq, 1.0)


#: bytes of float32 rows per block of the distance pass (fits the L2/L3 caches)
_BLOCK_BYTES = 2 << 20


def _row_distances(x: torch.Tensor, mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``|x_r - mean_frame(r)|`` and ``|x_r - x_{r-f}|`` for every row ``r`` of ``x``.

    ``x``: ``(n, f, d)`` float32; ``mean``: ``(n, d)``. Returns two ``(n, f)`` float32 tensors
    (the second is meaningless for the rows of frame 0). The differences are formed in
    blocks of rows of the flattened ``(n*f, d)`` matrix so that the temporaries stay in
    cache: one read of the features from memory instead of four full-size temporaries.
    """
    n, f, d = x.shape
    rows = x.reshape(n * f, d)
    to_mean = torch.empty(n * f, dtype=torch.float32, device=x.device)
    to_prev = torch.zeros(n * f, dtype=torch.float32, device=x.device)
    step = max(f, _BLOCK_BYTES // (4 * d) // f * f)  # whole frames per block
    for a in range(0, n * f, step):
        b = min(a + step, n * f)
        blk = rows[a:b].view(-1, f, d)
        to_mean[a:b] = torch.linalg.vector_norm(blk - mean[a // f : b // f, None], dim=-1).view(-1)
        lo = max(a, f)
        if lo < b:
            to_prev[lo:b] = torch.linalg.vector_norm(rows[lo:b] - rows[lo - f : b - f], dim=-1)
    return to_mean.view(n, f), to_prev.view(n, f)


def visual_scores_cpu(
    features: torch.Tensor, cu_frames: torch.Tensor, w: float, metric: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """S, T, I ``(total_frames, f)``, r ``(total_frames,)`` (float32) and a 0-d bool tensor
    that is True when the features hold NaN/Inf."""
    n_frames, f, _ = features.shape
    x = features.to(torch.float32)
    na = torch.linalg.vector_norm(x, dim=-1)
    mean = x.mean(dim=1)
    to_mean, to_prev = _row_distances(x, mean)
    S = _pair_score(to_mean, na, torch.linalg.vector_norm(mean, dim=-1)[:, None], metric)
    T = S
    if n_frames > 1:
        first = torch.zeros(n_frames, dtype=torch.bool, device=features.device)
        first[cu_frames[:-1].long()] = True
        t_prev = _pair_score(to_prev[1:], na[1:], na[:-1], metric)
        T = torch.cat([S[:1], torch.where(first[1:, None], S[1:], t_prev)])
    I = T + w * S
    r = (torch.linalg.vector_norm(T, dim=-1) / (2.0 * math.sqrt(f))).clamp(0.0, 1.0)
    bad = ~(torch.isfinite(na).all() & torch.isfinite(I).all())
    return S, T, I, r, bad


def _video_budgets(cu_frames: torch.Tensor, f: int, budget: float, min_keep: int) -> torch.Tensor:
    """``(B,)`` int64 tokens per video: ``max(round(float32(budget) * n*f), n * min_keep)``."""
    n = (cu_frames[1:] - cu_frames[:-1]).to(torch.int64)
    prod = torch.tensor(budget, dtype=torch.float32, device=n.device) * (n * f).to(torch.float32)
    return torch.maximum(torch.round(prod).to(torch.int64), n * min_keep)


def budget_quotas_cpu(
    r: torch.Tensor, cu_frames: torch.Tensor, f: int, budget: float, min_keep: int
) -> torch.Tensor:
    """Per-frame quotas of ``budget`` mode for all videos at once (see ``budget_quotas_reference``).

    Returns ``(total_frames,)`` int64 quotas; each video's quotas sum to its budget.
    """
    n_frames = r.numel()
    n_videos = cu_frames.numel() - 1
    vid = frame_video_ids(cu_frames, n_frames)
    totals = _video_budgets(cu_frames, f, budget, min_keep)
    rd = r.to(torch.float64)
    positive = rd > 0

    dev = r.device

    bounds = cu_frames.long()

    def seg_sum(v: torch.Tensor) -> torch.Tensor:
        # a video's frames are contiguous: differences of a prefix sum (no scatter, which
        # torch.compile's CPU backend fails to generate for float64)
        csum = torch.cat([v.new_zeros(1), torch.cumsum(v, 0)])
        return csum[bounds[1:]] - csum[bounds[:-1]]

    cap = seg_sum(torch.where(positive, float(f), float(min_keep)).to(torch.float64))
    pinned_video = cap < totals.to(torch.float64)
    pinned = pinned_video[vid] & positive
    weights = torch.where(pinned_video[vid], (~positive).to(torch.float64), rd)
    big = torch.full_like(weights, math.inf)
    min_w = torch.full((n_videos,), math.inf, dtype=torch.float64, device=dev).scatter_reduce_(
        0, vid, torch.where(weights > 0, weights, big), reduce="amin"
    )
    hi = torch.where(torch.isinf(min_w), torch.ones_like(min_w), f / min_w)
    lo = torch.zeros_like(hi)

    def quotas(lam: torch.Tensor) -> torch.Tensor:
        x = (lam[vid] * weights).clamp(float(min_keep), float(f))
        return torch.where(pinned, float(f), x)

    for _ in range(BUDGET_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        ok = seg_sum(quotas(mid)) <= totals
        lo = torch.where(ok, mid, lo)
        hi = torch.where(ok, hi, mid)
    x = quotas(lo)
    q = torch.floor(x)
    left = totals - seg_sum(q).to(torch.int64)
    frac = torch.where(q < f, x - q, torch.full_like(x, -1.0))
    # rank of each frame inside its video: largest fraction first, ties to lower index
    order = torch.argsort(-frac, stable=True)
    order = order[torch.argsort(vid[order], stable=True)]
    rank = torch.empty(n_frames, dtype=torch.int64, device=dev)
    rank[order] = torch.arange(n_frames, device=dev) - cu_frames[:-1].long()[vid[order]]
    extra = (rank < left[vid]) & (frac >= 0)
    return q.to(torch.int64) + extra.to(torch.int64)


def frame_counts_cpu(
    I: torch.Tensor,
    r: torch.Tensor,
    cu_frames: torch.Tensor,
    *,
    mode: str,
    threshold: float,
    keep_ratio: float | None,
    budget: float | None,
    min_keep: int,
) -> torch.Tensor:
    """``(total_frames,)`` int64 tokens kept per frame for every mode (SPEC 7)."""
    n_frames, f = I.shape
    if mode == "adaptive":
        k = torch.ceil(r * f).to(torch.int64)
    elif mode == "ratio":
        k = torch.full((n_frames,), math.ceil(keep_ratio * f), dtype=torch.int64, device=I.device)
    elif mode == "manual":
        k = (I > threshold).sum(dim=1)
    else:
        return budget_quotas_cpu(r, cu_frames, f, budget, min_keep)
    return k.clamp(min_keep, f)


def select_cpu(I: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Flat indices (int64, increasing) of the top-``counts[t]`` tokens of each frame.

    Ties in ``I`` go to the lower token index (stable descending sort).
    """
    n_frames, f = I.shape
    order = torch.sort(I, dim=1, descending=True, stable=True).indices
    ar = torch.arange(f, dtype=order.dtype, device=I.device)
    rank = torch.empty_like(order).scatter_(1, order, ar.expand(n_frames, f).contiguous())
    keep = rank < counts[:, None]
    return keep.reshape(-1).nonzero().squeeze(1)


def visual_prune_torch(
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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Visual SharpV in plain tensor ops on any device; arguments already validated.

    Returns ``(tokens, indices, counts, ratios, cu_tokens, scores)`` as the Triton launcher,
    plus nothing else: the caller checks ``features`` for NaN/Inf (see ``visual_scores_cpu``).
    """
    _, _, scores, ratios, bad = visual_scores_cpu(features, cu_frames, w, metric)
    if bool(bad):
        raise ValueError(NONFINITE_MESSAGE)
    k = frame_counts_cpu(
        scores, ratios, cu_frames, mode=mode, threshold=threshold, keep_ratio=keep_ratio,
        budget=budget, min_keep=min_keep,
    )  # fmt: skip
    indices = select_cpu(scores, k)
    tokens = features.reshape(-1, features.shape[2])[indices]
    csum = torch.cat([k.new_zeros(1), torch.cumsum(k, 0)])
    cu_tokens = csum[cu_frames.long()].to(torch.int32)
    return tokens, indices, k.to(torch.int32), ratios, cu_tokens, scores
