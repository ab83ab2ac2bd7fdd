"""The plain PyTorch path of Visual SharpV: what CPU tensors run, and the eager GPU baseline.

Same contract and numerics as the Triton kernels (float32 accumulation, the same unit-vector
scores, tie rules and budget split), with no Python loop over frames or videos. On CPU the
score pass walks the features once in cache-sized blocks of whole frames, converting each
block to float32 inside the loop (no whole-tensor copy) and computing norms, unit vectors
and means while the block is in cache. On any other device (``SHARPV_BACKEND=torch`` on
CUDA) it makes one block of the whole tensor: about 25 plain aten ops, the GPU baseline the
benchmarks run.

Numerics (see ``docs/ops.md``): ``u = x / ||x||`` per token (0 when ``||x|| <= 1e-12``),
``d2(a, b) = sum (u_a - u_b)^2``, ``dissim = sqrt(d2)`` (exactly 1 against a zero token, 0
between two), ``cosine = d2 / 2`` (exactly 1 when either token is zero). Identical tokens,
and tokens that are power-of-two rescalings of each other, have bit-identical unit vectors
and score exactly 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ...vocab import (
    BUDGET_BISECTION_STEPS,
    ZERO_NORM_EPS,
    ratio_keep_count,
)
from .checks import PruneOptions, raise_bad_features
from .native import (
    counts_cu_native,
    gather_rows_native,
    norms_finite_native,
    scores_ratios_native,
    select_native,
    unit_distances_native,
)

__all__ = [
    "visual_prune_torch",
    "visual_scores_torch",
    "unit_distances_torch",
    "frame_video_ids",
    "frame_counts_torch",
    "budget_quotas_torch",
    "select_torch",
]


def frame_video_ids(cu_frames: torch.Tensor, total_frames: int) -> torch.Tensor:
    """``(total_frames,)`` int64 index of the video each frame belongs to."""
    lengths = (cu_frames[1:] - cu_frames[:-1]).to(torch.int64)
    return torch.repeat_interleave(
        torch.arange(lengths.numel(), device=cu_frames.device), lengths, output_size=total_frames
    )


#: bytes of float32 tokens per block of the CPU score pass: the block, its unit vectors
#: and one difference buffer stay in the L2/L3 caches
BLOCK_BYTES = 1 << 19


def frames_per_block(features: torch.Tensor) -> int:
    """Whole frames per block of the score pass: about ``BLOCK_BYTES`` of float32 on CPU
    (at least one frame), every frame at once on other devices (one plain, unblocked pass
    of aten ops)."""
    n, f, d = features.shape
    if features.device.type == "cpu":
        return max(1, min(n, BLOCK_BYTES // (4 * f * d)))
    return n


def _inverse_norms(x: torch.Tensor, *, out: torch.Tensor) -> torch.Tensor:
    """``1 / ||x||`` along the last dim (kept), 0 where ``||x|| <= ZERO_NORM_EPS`` (SPEC 1:
    the zero vector's unit vector is 0); the norms are written to ``out``."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True, out=out)
    return torch.where(norm > ZERO_NORM_EPS, norm.reciprocal(), 0.0)


def pair_scores(
    d: torch.Tensor, nz_a: torch.Tensor, nz_b: torch.Tensor, metric: str
) -> torch.Tensor:
    """Score of token pairs from ``d = ||u_a - u_b||`` and which tokens are non-zero.

    ``dissim`` is ``d`` when both tokens are non-zero, exactly 1 when one is zero and exactly
    0 when both are; ``cosine`` is ``d^2 / 2`` when both are non-zero, else exactly 1 (SPEC
    1: degenerate pairs score the same bits on every backend, so their ties break alike).
    """
    both = nz_a & nz_b
    if metric == "dissim":
        return torch.where(both, d, (nz_a | nz_b).to(d.dtype))
    return torch.where(both, 0.5 * d.square(), 1.0)


def unit_distances_torch(
    features: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit-vector distances of every token in plain tensor ops (any device).

    The features are read one block of frames at a time (:func:`frames_per_block`) into
    reused buffers, converted to the compute dtype (float32; float64 for float64 input)
    inside the loop; norms, unit vectors and the frame mean are computed while the block is
    in cache.

    Args:
        features: ``(total_frames, f, d)`` float32/float16/bfloat16/float64, any strides.
    Returns:
        ``dm`` ``(total_frames, f)``: ``||u(x_t,i) - u(mean_t)||``; ``dt``: ``||u(x_t,i) -
        u(x_t-1,i)||`` (0 for frame 0); the token norms ``(total_frames, f)``; the frame
        means' norms ``(total_frames, 1)``. In the compute dtype.

    Examples:
        >>> dm, dt, norms, mean_norms = unit_distances_torch(torch.randn(4, 6, 8))
        >>> dm.shape, mean_norms.shape
        (torch.Size([4, 6]), torch.Size([4, 1]))
    """
    n_frames, f, d = features.shape
    dev = features.device
    cdt = torch.float64 if features.dtype == torch.float64 else torch.float32
    dm = torch.empty(n_frames, f, dtype=cdt, device=dev)  # ||u - u_mean||
    dt = torch.empty(n_frames, f, dtype=cdt, device=dev)  # ||u_t - u_{t-1}||
    norms = torch.empty(n_frames, f, dtype=cdt, device=dev)
    mean_norms = torch.empty(n_frames, 1, dtype=cdt, device=dev)
    step = frames_per_block(features)
    # reused block buffers: the converted block, unit vectors (two, alternating, so the
    # previous block's last frame stays available) and one difference buffer
    xbuf = torch.empty(step, f, d, dtype=cdt, device=dev) if features.dtype != cdt else None
    ubufs = [torch.empty(step, f, d, dtype=cdt, device=dev) for _ in range(min(2, n_frames))]
    diff = torch.empty(step, f, d, dtype=cdt, device=dev)
    prev_u = None  # unit vectors of the previous frame
    for k, a in enumerate(range(0, n_frames, step)):
        b = min(a + step, n_frames)
        m = b - a
        x = features[a:b] if xbuf is None else xbuf[:m].copy_(features[a:b])
        u = torch.mul(x, _inverse_norms(x, out=norms[a:b, :, None]), out=ubufs[k % 2][:m])
        mean = x.mean(dim=1, keepdim=True)
        um = mean * _inverse_norms(mean, out=mean_norms[a:b, :, None])
        torch.linalg.vector_norm(torch.sub(u, um, out=diff[:m]), dim=-1, out=dm[a:b])
        torch.sub(u[1:], u[:-1], out=diff[1:m])
        torch.sub(u[0], u[0] if prev_u is None else prev_u, out=diff[0])
        torch.linalg.vector_norm(diff[:m], dim=-1, out=dt[a:b])
        prev_u = u[-1]
    return dm, dt, norms, mean_norms


def visual_scores_torch(
    features: torch.Tensor,
    cu_frames: torch.Tensor,
    w: float,
    metric: str,
    *,
    native: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores of Visual SharpV in plain tensor ops; arguments already validated.

    Per token ``u = x * (1 / ||x||)`` (0 for a zero token), in float32 (float64 for float64
    input); the frame mean is taken over the raw tokens and normalised the same way;
    ``S = score(u, u_mean)``, ``T = score(u_t, u_{t-1})`` from the distances of
    :func:`unit_distances_torch`, or of the native CPU kernel
    (:func:`~.native.unit_distances_native`) with ``native=True``.

    Args:
        features: ``(total_frames, f, d)`` float32/float16/bfloat16/float64, any strides
            (not float64 with ``native``).
        cu_frames: ``(B + 1,)`` int32 frame offsets on the features' device, valid.
        w: weight of ``S`` in ``I``; metric: ``"dissim"`` or ``"cosine"``.
        native: take the distances from the native CPU kernel (CPU tensors).
    Returns:
        ``S, T, I`` ``(total_frames, f)``, ``r`` ``(total_frames,)`` (float32; float64 for
        float64 input) and the ``(total_frames, f)`` token norms (non-finite where the
        features are NaN/Inf or too large; see :func:`~.checks.raise_bad_features`).

    Examples:
        >>> x = torch.randn(4, 6, 8)
        >>> S, T, I, r, norms = visual_scores_torch(x, torch.tensor([0, 4]), 1.0, "dissim")
        >>> S.shape, r.shape
        (torch.Size([4, 6]), torch.Size([4]))
    """
    f = features.shape[1]
    distances = unit_distances_native if native else unit_distances_torch
    dm, dt, norms, mean_norms = distances(features)
    if native:  # the same float32 operations, in one native call
        S, T, I, r = scores_ratios_native(dm, dt, norms, mean_norms, cu_frames, w, metric)
        return S, T, I, r, norms
    nz = norms > ZERO_NORM_EPS
    S = pair_scores(dm, nz, mean_norms > ZERO_NORM_EPS, metric)
    T = pair_scores(dt, nz, torch.cat([nz[:1], nz[:-1]]), metric)
    # SPEC 4: the first frame of every video has T = S (links never cross videos)
    first = cu_frames[:-1].long()
    T[first] = S[first]
    I = T + w * S
    r = (torch.linalg.vector_norm(T, dim=-1) / (2.0 * math.sqrt(f))).clamp(0.0, 1.0)
    return S, T, I, r, norms


def _video_budgets(cu_frames: torch.Tensor, f: int, budget: float, min_keep: int) -> torch.Tensor:
    """``(B,)`` int64 tokens per video: :func:`~sharpv_kernels.vocab.budget_token_count`
    on the device, ``max(round_half_even(float32(budget) * float32(n f)), n min_keep)``."""
    n = (cu_frames[1:] - cu_frames[:-1]).to(torch.int64)
    prod = torch.tensor(budget, dtype=torch.float32, device=n.device) * (n * f).to(torch.float32)
    return torch.maximum(torch.round(prod).to(torch.int64), n * min_keep)


def budget_quotas_torch(
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


def frame_counts_torch(
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
        k_t = ratio_keep_count(keep_ratio, f, min_keep)
        return torch.full((n_frames,), k_t, dtype=torch.int64, device=I.device)
    elif mode == "manual":
        k = (I > threshold).sum(dim=1)
    else:
        return budget_quotas_torch(r, cu_frames, f, budget, min_keep)
    return k.clamp(min_keep, f)


def select_torch(I: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
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
    features: torch.Tensor, cu_frames: torch.Tensor, *, native: bool = False, **options: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Visual SharpV in plain tensor ops on any device; arguments already validated.

    Args:
        features: ``(total_frames, f, d)`` float32/float16/bfloat16/float64, any strides.
        cu_frames: ``(B + 1,)`` int32 valid frame offsets on the features' device.
        native: run the score pass on the native CPU kernel (CPU tensors, not float64).
        options: the fields of :class:`~.checks.PruneOptions` (keywords, with its defaults).
    Returns:
        ``(tokens, indices, counts, ratios, cu_tokens, scores)`` as the Triton launcher;
        ``ratios`` and ``scores`` float32.
    Raises:
        ValueError: NaN/Inf features, or finite features whose norms overflow float32.

    Examples:
        >>> x = torch.randn(4, 6, 8)
        >>> out = visual_prune_torch(x, torch.tensor([0, 4], dtype=torch.int32), mode="ratio",
        ...                          keep_ratio=0.5)
        >>> out[2].tolist()
        [3, 3, 3, 3]
    """
    o = PruneOptions(**options)
    _, _, scores, ratios, norms = visual_scores_torch(features, cu_frames, o.w, o.metric,
                                                      native=native)  # fmt: skip
    if not (native and norms_finite_native(norms)):  # one native pass instead of 3 aten ops
        raise_bad_features(features, norms)
    scores, ratios = scores.to(torch.float32), ratios.to(torch.float32)
    k = frame_counts_torch(
        scores, ratios, cu_frames, mode=o.mode, threshold=o.threshold,
        keep_ratio=o.keep_ratio, budget=o.budget, min_keep=o.min_keep,
    )  # fmt: skip
    indices = select_native(scores, k) if native else select_torch(scores, k)
    n, f, d = features.shape
    if f == 1 or features.stride(0) == f * features.stride(1):  # one (n f, d) view
        rows = features.view(n * f, d)
        tokens = gather_rows_native(rows, indices) if native else rows.index_select(0, indices)
    else:
        tokens = features[indices // f, indices % f]  # the kept rows only, any strides
    if native:  # the same values in one call instead of about six aten ops
        k32, cu_tokens = counts_cu_native(k, cu_frames)
        return tokens, indices, k32, ratios, cu_tokens, scores
    csum = torch.cat([k.new_zeros(1), torch.cumsum(k, 0)])
    cu_tokens = csum[cu_frames.long()].to(torch.int32)
    return tokens, indices, k.to(torch.int32), ratios, cu_tokens, scores
