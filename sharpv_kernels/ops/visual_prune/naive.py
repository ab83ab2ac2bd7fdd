"""Plain-PyTorch reference of Visual SharpV, written to be read (SPEC, Visual SharpV).

This is the yardstick for the Triton kernels and the vectorized CPU path: it follows the
SPEC line by line, one video and one frame at a time. It is slow on purpose; never call
it on a hot path.

Computation dtype: float32 for float16/bfloat16/float32 inputs, float64 for float64 inputs
(used by the tests as a high-precision recomputation).
"""

from __future__ import annotations

import math

import torch

from ...vocab import BUDGET_BISECTION_STEPS, ZERO_NORM_EPS, budget_token_count, ratio_keep_count
from .result import VisualPruneResult

__all__ = [
    "visual_prune_reference",
    "visual_scores_reference",
    "budget_quotas_reference",
    "video_budget",
]


def _unit(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SPEC 1: ``v / ||v||`` along the last dim (rows with norm <= 1e-12 map to zero), and
    which rows are non-zero."""
    norm = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    nonzero = norm > ZERO_NORM_EPS
    return torch.where(nonzero, v / norm.clamp_min(ZERO_NORM_EPS), 0.0), nonzero[..., 0]


def _dissim(a: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    """SPEC 2: ``||unit(a) - unit(b)||`` (``dissim``) or ``1 - cos(a, b)`` (``cosine``).

    Both from the difference of the unit vectors, never from a dot product: ``1 - cos`` is
    ``||u_a - u_b||^2 / 2`` for non-zero tokens, which is exactly 0 for identical tokens and
    free of the cancellation of ``1 - u_a . u_b``. Degenerate pairs are exact (SPEC 1):
    ``Dissim(a, 0) = 1``, ``Dissim(0, 0) = 0``; ``1 - cos`` is 1 when either token is zero.
    """
    (ua, nz_a), (ub, nz_b) = _unit(a), _unit(b)
    d = torch.linalg.vector_norm(ua - ub, dim=-1)
    both = nz_a & nz_b
    if metric == "dissim":
        return torch.where(both, d, (nz_a | nz_b).to(d.dtype))
    return torch.where(both, 0.5 * d.square(), 1.0)


def _videos(cu_frames: torch.Tensor | None, total_frames: int) -> list[tuple[int, int]]:
    if cu_frames is None:
        return [(0, total_frames)]
    cu = [int(x) for x in cu_frames.tolist()]
    return list(zip(cu[:-1], cu[1:], strict=True))


def visual_scores_reference(
    features: torch.Tensor,
    cu_frames: torch.Tensor | None = None,
    *,
    w: float = 1.0,
    metric: str = "dissim",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spatial ``S``, temporal ``T``, importance ``I`` and keep ratio ``r`` (SPEC 1-6).

    Args:
        features: ``(total_frames, f, d)`` floating tensor.
        cu_frames: ``(B + 1,)`` integer frame offsets of the videos, or None for one video.
    Returns:
        ``S, T, I``: ``(total_frames, f)`` and ``r``: ``(total_frames,)``, all float32
        (float64 for float64 input).
    """
    n_frames, f, _ = features.shape
    cdt = torch.float64 if features.dtype == torch.float64 else torch.float32
    out_dt = cdt
    S = torch.zeros(n_frames, f, dtype=out_dt, device=features.device)
    T = torch.zeros_like(S)
    for start, end in _videos(cu_frames, n_frames):
        for t in range(start, end):
            frame = features[t].to(cdt)
            mean = frame.mean(dim=0, keepdim=True)  # SPEC 3
            S[t] = _dissim(frame, mean, metric)
            if t == start:  # SPEC 4: the first frame of a video uses T_1 = S_1
                T[t] = S[t]
            else:
                T[t] = _dissim(frame, features[t - 1].to(cdt), metric)
    I = T + w * S  # SPEC 5
    r = (torch.linalg.vector_norm(T, dim=-1) / (2.0 * math.sqrt(f))).clamp(0.0, 1.0)  # SPEC 6
    return S, T, I, r


def video_budget(budget: float, n: int, f: int, min_keep: int) -> int:
    """Tokens a video of ``n`` frames keeps in ``budget`` mode (see
    :func:`sharpv_kernels.vocab.budget_token_count`, the one definition every backend and
    engine uses)."""
    return budget_token_count(budget, n, f, min_keep)


def budget_quotas_reference(r: torch.Tensor, total: int, f: int, min_keep: int) -> list[int]:
    """Split ``total`` tokens over the frames of one video (SPEC 7, ``budget`` mode).

    Every frame gets ``q_t = clamp(lam * r_t, min_keep, f)`` with ``lam`` chosen so the
    quotas add up to ``total``; integer parts first, then one more token to the frames with
    the largest fractional parts (ties to the lower frame index). Frames with ``r_t = 0``
    only receive tokens above ``min_keep`` once every frame with ``r_t > 0`` is full, and
    the split is uniform when every ``r_t`` is 0.

    Args:
        r: ``(n,)`` keep ratios of the video's frames.
        total: tokens to keep in the video, ``n * min_keep <= total <= n * f``.
    Returns:
        the ``n`` per-frame quotas, summing to ``total``.
    """
    r = [float(x) for x in r.tolist()]
    n = len(r)
    positive = [x > 0.0 for x in r]
    # Frames with r > 0 saturate first; if they cannot absorb the budget, the rest is
    # spread uniformly over the frames with r = 0 (weight 1) while the others sit at f.
    if sum(f if p else min_keep for p in positive) >= total:
        weights, pinned = r, [False] * n
    else:
        weights, pinned = [0.0 if p else 1.0 for p in positive], positive

    def quota(lam: float, t: int) -> float:
        return float(f) if pinned[t] else min(max(lam * weights[t], float(min_keep)), float(f))

    # the largest lam whose quotas do not exceed ``total`` (the sum is monotone in lam);
    # at lam = hi every weighted frame is full
    lo, hi = 0.0, f / min((v for v in weights if v > 0.0), default=1.0)
    for _ in range(BUDGET_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if sum(quota(mid, t) for t in range(n)) <= total:
            lo = mid
        else:
            hi = mid
    x = [quota(lo, t) for t in range(n)]
    q = [math.floor(v) for v in x]
    left = total - sum(q)
    order = sorted(
        (t for t in range(n) if q[t] < f), key=lambda t: (-(x[t] - q[t]), t)
    )  # largest fraction first, ties to the lower frame index
    for t in order[:left]:
        q[t] += 1
    return q


def visual_prune_reference(
    features: torch.Tensor,
    cu_frames: torch.Tensor | None = None,
    *,
    mode: str = "adaptive",
    w: float = 1.0,
    threshold: float = 1.6,
    keep_ratio: float | None = None,
    budget: float | None = None,
    min_keep: int = 1,
    metric: str = "dissim",
    return_scores: bool = False,
) -> VisualPruneResult:
    """Visual SharpV, one frame at a time; same contract as :func:`sharpv_kernels.visual_prune`.

    Performs no input validation beyond what the algorithm needs: call it with valid input.
    """
    n_frames, f, _ = features.shape
    _, _, I, r = visual_scores_reference(features, cu_frames, w=w, metric=metric)
    counts: list[int] = [0] * n_frames
    kept: list[int] = []
    cu_tokens = [0]
    for start, end in _videos(cu_frames, n_frames):
        if mode == "budget":
            total = video_budget(budget, end - start, f, min_keep)
            quotas = budget_quotas_reference(r[start:end], total, f, min_keep)
        for t in range(start, end):
            row = I[t].tolist()
            if mode == "adaptive":
                k = math.ceil(float(r[t] * f))  # product in the score dtype, as the kernels
            elif mode == "ratio":
                k = ratio_keep_count(keep_ratio, f, min_keep)
            elif mode == "manual":
                k = int((I[t] > threshold).sum())
            else:  # budget
                k = quotas[t - start]
            k = min(max(k, min_keep), f)
            # SPEC 8: the top-k of I, ties to the lower token index ...
            order = sorted(range(f), key=lambda i: (-row[i], i))  # noqa: B023
            # ... and kept tokens in their original order
            chosen = sorted(order[:k])
            kept.extend(t * f + i for i in chosen)
            counts[t] = k
        cu_tokens.append(len(kept))
    indices = torch.tensor(kept, dtype=torch.int64, device=features.device)
    return VisualPruneResult(
        tokens=features.reshape(n_frames * f, -1)[indices],
        indices=indices,
        counts=torch.tensor(counts, dtype=torch.int32, device=features.device),
        ratios=r.to(torch.float32),
        cu_tokens=torch.tensor(cu_tokens, dtype=torch.int32, device=features.device),
        scores=I.to(torch.float32) if return_scores else None,
    )
