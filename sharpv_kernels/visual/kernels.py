"""Triton kernels of Visual SharpV (``@triton.jit`` code only; launchers live in ``launch.py``).

Three kernels, launched in order on one stream:

1. ``frame_stats_kernel``, grid ``(total_frames, n_split)``: one pass over the features.
   Program ``(t, s)`` streams columns ``[s*d_split, (s+1)*d_split)`` of frame ``t`` (all
   ``f`` tokens at once, so the column means of that slice are at hand) and of frame
   ``t-1`` (mostly an L2 hit: its own program runs alongside). It writes float32 partial
   sums per token: ``|x|^2``, ``|x - x_prev|^2``, ``|x - mean|^2`` and ``|mean|^2``.
2. ``frame_select_kernel``, grid ``(total_frames,)``: reduces the partials, turns them into
   the spatial/temporal scores through the cancellation-free identity
   ``|a/|a| - b/|b||^2 = (|a-b|^2 - (|a|-|b|)^2) / (|a||b|)``, the importance ``I``, the
   keep ratio ``r_t`` and each token's rank in its frame (ties to the lower index), and the
   per-frame count for every mode but ``budget``. It accumulates the output size and error
   flags in a two-word header, the only thing the host reads back.
3. ``gather_kernel``, grid ``(total_frames, n_dblocks)``: computes each frame's output
   offset (and, in ``budget`` mode, its quota) and copies the kept rows straight into the
   packed output, with their flat indices and the per-video offsets.
"""

from __future__ import annotations

import triton
import triton.language as tl

# mode / metric codes shared with the launcher
MODE_ADAPTIVE: tl.constexpr = tl.constexpr(0)
MODE_MANUAL: tl.constexpr = tl.constexpr(1)
MODE_RATIO: tl.constexpr = tl.constexpr(2)
MODE_BUDGET: tl.constexpr = tl.constexpr(3)
METRIC_DISSIM: tl.constexpr = tl.constexpr(0)
METRIC_COSINE: tl.constexpr = tl.constexpr(1)

# header error bits
FLAG_NONFINITE: tl.constexpr = tl.constexpr(1)
FLAG_BAD_CU: tl.constexpr = tl.constexpr(2)

_FLT_MAX: tl.constexpr = tl.constexpr(3.4028234663852886e38)
_EPS: tl.constexpr = tl.constexpr(1e-12)


@triton.jit
def _video_of(cu_ptr, n_videos, t, BLOCK_B: tl.constexpr):
    """``(start, end, b)`` of the video holding frame ``t`` (``b`` clamped to a valid index)."""
    b = tl.zeros((), dtype=tl.int32)
    for j0 in range(1, n_videos + 1, BLOCK_B):
        offs = j0 + tl.arange(0, BLOCK_B)
        c = tl.load(cu_ptr + offs, mask=offs <= n_videos, other=2147483647)
        b += tl.sum((c <= t).to(tl.int32), axis=0)
    b = tl.minimum(b, n_videos - 1)
    start = tl.load(cu_ptr + b)
    end = tl.load(cu_ptr + b + 1)
    return start, end, b


@triton.jit(do_not_specialize=["f"])
def frame_stats_kernel(
    x_ptr,  # (total_frames, f, d) features, last dim contiguous
    cu_ptr,  # (B + 1,) int32 frame offsets
    part_ptr,  # (total_frames, n_split, 3, f) float32 partial sums (out)
    msq_ptr,  # (total_frames, n_split) float32 partial |mean|^2 (out)
    hdr_ptr,  # (2,) int32 header, zeroed here for the select kernel
    n_videos,
    f,
    d,
    d_split,
    stride_t,
    stride_i,
    BLOCK_F: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_B: tl.constexpr,
):
    t = tl.program_id(0)
    s = tl.program_id(1)
    n_split = tl.num_programs(1)
    if (t == 0) & (s == 0):
        tl.store(hdr_ptr + tl.arange(0, 2), tl.zeros((2,), dtype=tl.int32))
    start, end, b = _video_of(cu_ptr, n_videos, t, BLOCK_B)

    rows = tl.arange(0, BLOCK_F)
    rmask = rows < f
    pmask = rmask & (rows * 0 + t > start)  # rows of the previous frame, if in this video
    row_off = rows.to(tl.int64)[:, None] * stride_i
    cur = x_ptr + t.to(tl.int64) * stride_t + row_off
    prev = x_ptr + tl.maximum(t - 1, 0).to(tl.int64) * stride_t + row_off

    nx2 = tl.zeros((BLOCK_F,), dtype=tl.float32)
    dp2 = tl.zeros((BLOCK_F,), dtype=tl.float32)
    dm2 = tl.zeros((BLOCK_F,), dtype=tl.float32)
    mm2 = tl.zeros((BLOCK_D,), dtype=tl.float32)
    d0 = s * d_split
    d1 = tl.minimum(d0 + d_split, d)
    for c0 in range(d0, d1, BLOCK_D):
        cols = c0 + tl.arange(0, BLOCK_D)
        cmask = (cols < d1)[None, :]
        m2 = rmask[:, None] & cmask
        x = tl.load(cur + cols[None, :], mask=m2, other=0.0).to(tl.float32)
        y = tl.load(prev + cols[None, :], mask=pmask[:, None] & cmask, other=0.0).to(tl.float32)
        nx2 += tl.sum(x * x, axis=1)
        dxy = x - y
        dp2 += tl.sum(dxy * dxy, axis=1)
        mean = tl.sum(x, axis=0) / f
        dxm = tl.where(m2, x - mean[None, :], 0.0)
        dm2 += tl.sum(dxm * dxm, axis=1)
        mm2 += mean * mean

    base = part_ptr + (t.to(tl.int64) * n_split + s) * 3 * f
    tl.store(base + rows, nx2, mask=rmask)
    tl.store(base + f + rows, dp2, mask=rmask)
    tl.store(base + 2 * f + rows, dm2, mask=rmask)
    tl.store(msq_ptr + t * n_split + s, tl.sum(mm2, axis=0))


@triton.jit
def _pair_score(diff2, na, nb, METRIC: tl.constexpr):
    """Dissim (or 1 - cos) from ``|a-b|^2`` and the two norms; zero vectors per SPEC 1."""
    nb = nb + tl.zeros_like(na)  # the interpreter cannot mix scalar and vector masks
    nz_a = na > _EPS
    nz_b = nb > _EPS
    both = nz_a & nz_b
    denom = tl.where(both, na * nb, 1.0)
    gap = na - nb
    sq = tl.maximum(diff2 - gap * gap, 0.0) / denom  # = 2 - 2 cos
    if METRIC == METRIC_DISSIM:
        one_zero = nz_a.to(tl.float32) + nz_b.to(tl.float32)
        return tl.where(both, tl.sqrt(sq), tl.sqrt(one_zero))
    else:
        return tl.where(both, 0.5 * sq, 1.0)


@triton.jit
def _round_half_even(x):
    fl = tl.floor(x)
    diff = x - fl
    odd = (fl - 2.0 * tl.floor(0.5 * fl)) != 0.0
    up = (diff > 0.5) | ((diff == 0.5) & odd)
    return fl + up.to(tl.float32)


@triton.jit
def _video_budget(n, f, budget, min_keep):
    """Tokens a video of ``n`` frames keeps in budget mode (float32 product, ties to even)."""
    prod = budget * (n * f).to(tl.float32)
    return tl.maximum(_round_half_even(prod).to(tl.int32), n * min_keep)


@triton.jit(do_not_specialize=["f", "min_keep", "k_fixed"])
def frame_select_kernel(
    part_ptr,  # (total_frames, n_split, 3, f) float32
    msq_ptr,  # (total_frames, n_split) float32
    cu_ptr,  # (B + 1,) int32
    hdr_ptr,  # (2,) int32: [output size, error flags]
    s_ptr,  # (total_frames, f) float32 spatial scores (out, if STORE_ST)
    tt_ptr,  # (total_frames, f) float32 temporal scores (out, if STORE_ST)
    i_ptr,  # (total_frames, f) float32 importance (out)
    r_ptr,  # (total_frames,) float32 keep ratio (out)
    rank_ptr,  # (total_frames, f) int32 rank of each token in its frame (out, if RANK)
    cnt_ptr,  # (total_frames,) int32 tokens kept (out, if RANK and not budget mode)
    n_videos,
    n_frames,
    f,
    n_split,
    w,
    threshold,
    k_fixed,
    min_keep,
    budget,
    MODE: tl.constexpr,
    METRIC: tl.constexpr,
    STORE_ST: tl.constexpr,
    RANK: tl.constexpr,
    BLOCK_F: tl.constexpr,
    BLOCK_J: tl.constexpr,
    BLOCK_B: tl.constexpr,
):
    t = tl.program_id(0)
    start, end, b = _video_of(cu_ptr, n_videos, t, BLOCK_B)
    has_prev = t > start
    rows = tl.arange(0, BLOCK_F)
    rmask = rows < f
    pmask = rmask & (rows * 0 + t > start)

    nx2 = tl.zeros((BLOCK_F,), dtype=tl.float32)
    nx2_prev = tl.zeros((BLOCK_F,), dtype=tl.float32)
    dp2 = tl.zeros((BLOCK_F,), dtype=tl.float32)
    dm2 = tl.zeros((BLOCK_F,), dtype=tl.float32)
    mm2 = tl.zeros((), dtype=tl.float32)
    prev_t = tl.maximum(t - 1, 0)
    for s in range(0, n_split):
        base = part_ptr + (t.to(tl.int64) * n_split + s) * 3 * f
        nx2 += tl.load(base + rows, mask=rmask, other=0.0)
        dp2 += tl.load(base + f + rows, mask=rmask, other=0.0)
        dm2 += tl.load(base + 2 * f + rows, mask=rmask, other=0.0)
        mm2 += tl.load(msq_ptr + t * n_split + s)
        pbase = part_ptr + (prev_t.to(tl.int64) * n_split + s) * 3 * f
        nx2_prev += tl.load(pbase + rows, mask=pmask, other=0.0)

    na = tl.sqrt(nx2)
    S = _pair_score(dm2, na, tl.sqrt(mm2), METRIC)
    if has_prev:
        T = _pair_score(dp2, na, tl.sqrt(nx2_prev), METRIC)
    else:
        T = S  # SPEC 4: the first frame of a video compares against its own mean
    T = tl.where(rmask, T, 0.0)
    I = T + w * S
    r = tl.minimum(tl.sqrt(tl.sum(T * T, axis=0)) / (2.0 * tl.sqrt(f.to(tl.float32))), 1.0)

    finite = (nx2 <= _FLT_MAX) & (tl.abs(I) <= _FLT_MAX)
    bad = tl.max((rmask & ~finite).to(tl.int32), axis=0)

    out = t.to(tl.int64) * f + rows
    if STORE_ST:
        tl.store(s_ptr + out, S, mask=rmask)
        tl.store(tt_ptr + out, T, mask=rmask)
    tl.store(i_ptr + out, I, mask=rmask)
    tl.store(r_ptr + t, r)

    if t == 0:  # validate cu_frames on the device: no host synchronisation for it
        ok = (tl.load(cu_ptr) == 0) & (tl.load(cu_ptr + n_videos) == n_frames)
        bad_cu = (~ok).to(tl.int32)
        for j0 in range(0, n_videos, BLOCK_B):
            offs = j0 + tl.arange(0, BLOCK_B)
            jm = offs < n_videos
            lo = tl.load(cu_ptr + offs, mask=jm, other=0)
            hi = tl.load(cu_ptr + offs + 1, mask=jm, other=1)
            bad_cu = tl.maximum(bad_cu, tl.max((jm & (hi <= lo)).to(tl.int32), axis=0))
        bad = tl.maximum(bad, bad_cu * FLAG_BAD_CU)

    if RANK:
        # rank_i = #{j : I_j > I_i, or I_j == I_i and j < i}: ties go to the lower index
        tl.debug_barrier()
        rank = tl.zeros((BLOCK_F,), dtype=tl.int32)
        for j0 in range(0, f, BLOCK_J):
            cols = j0 + tl.arange(0, BLOCK_J)
            ij = tl.load(i_ptr + t.to(tl.int64) * f + cols, mask=cols < f, other=float("-inf"))
            beats = (ij[None, :] > I[:, None]) | (
                (ij[None, :] == I[:, None]) & (cols[None, :] < rows[:, None])
            )
            beats = beats & (cols < f)[None, :]
            rank += tl.sum(beats.to(tl.int32), axis=1)
        tl.store(rank_ptr + out, rank, mask=rmask)

        if MODE == MODE_BUDGET:
            if t == start:
                tl.atomic_add(hdr_ptr, _video_budget(end - start, f, budget, min_keep))
        else:
            if MODE == MODE_ADAPTIVE:
                k = tl.ceil(r * f.to(tl.float32)).to(tl.int32)
            elif MODE == MODE_MANUAL:
                k = tl.sum((rmask & (I > threshold)).to(tl.int32), axis=0)
            else:
                k = k_fixed + tl.zeros((), dtype=tl.int32)
            k = tl.minimum(tl.maximum(k, min_keep), f)
            tl.store(cnt_ptr + t, k)
            tl.atomic_add(hdr_ptr, k)
    if bad != 0:
        tl.atomic_or(hdr_ptr + 1, bad)


@triton.jit
def _budget_weights(r, valid, pinned_video, f, min_keep):
    """Per-frame (weight, pinned) of the budget split; see ``budget_quotas_reference``."""
    pos = r > 0.0
    pv = pinned_video.to(tl.int32)
    weight = tl.where(pv != 0, tl.where(pos, 0.0, 1.0), r.to(tl.float64))
    pinned = (pos.to(tl.int32) * pv) != 0
    return tl.where(valid, weight, 0.0), pinned


@triton.jit
def _budget_quota(lam, weight, pinned, f, min_keep):
    x = tl.minimum(tl.maximum(lam * weight, min_keep.to(tl.float64)), f.to(tl.float64))
    return tl.where(pinned, f.to(tl.float64), x)


@triton.jit
def _budget_frame(
    r_ptr, start, end, t, f, min_keep, total, STEPS: tl.constexpr, BLOCK_N: tl.constexpr
):
    """Quota of frame ``t`` and the sum of the quotas of the frames before it in its video."""
    # capacity when only frames with r > 0 grow, and the smallest positive r
    cap = tl.zeros((), dtype=tl.int32)
    min_pos = tl.full((), float("inf"), dtype=tl.float64)
    for s0 in range(start, end, BLOCK_N):
        fr = s0 + tl.arange(0, BLOCK_N)
        v = fr < end
        r = tl.load(r_ptr + fr, mask=v, other=0.0)
        cap += tl.sum(tl.where(v, tl.where(r > 0.0, f, min_keep), 0), axis=0)
        min_pos = tl.minimum(
            min_pos, tl.min(tl.where(v & (r > 0.0), r.to(tl.float64), float("inf")), axis=0)
        )
    pinned_video = cap < total
    hi = tl.where(pinned_video | (min_pos == float("inf")), f.to(tl.float64), f / min_pos)
    hi = tl.where(pinned_video, f.to(tl.float64), hi)
    lo = tl.zeros((), dtype=tl.float64)
    for _ in range(STEPS):
        mid = 0.5 * (lo + hi)
        g = tl.zeros((), dtype=tl.float64)
        for s0 in range(start, end, BLOCK_N):
            fr = s0 + tl.arange(0, BLOCK_N)
            v = fr < end
            r = tl.load(r_ptr + fr, mask=v, other=0.0)
            wgt, pin = _budget_weights(r, v, pinned_video, f, min_keep)
            g += tl.sum(tl.where(v, _budget_quota(mid, wgt, pin, f, min_keep), 0.0), axis=0)
        ok = g <= total.to(tl.float64)
        lo = tl.where(ok, mid, lo)
        hi = tl.where(ok, hi, mid)
    # integer parts, then the leftover to the largest fractions (ties to the lower frame)
    floor_sum = tl.zeros((), dtype=tl.int32)
    for s0 in range(start, end, BLOCK_N):
        fr = s0 + tl.arange(0, BLOCK_N)
        v = fr < end
        r = tl.load(r_ptr + fr, mask=v, other=0.0)
        wgt, pin = _budget_weights(r, v, pinned_video, f, min_keep)
        x = _budget_quota(lo, wgt, pin, f, min_keep)
        floor_sum += tl.sum(tl.where(v, tl.floor(x), 0.0), axis=0).to(tl.int32)
    left = total - floor_sum

    k_t = tl.zeros((), dtype=tl.int32)
    before = tl.zeros((), dtype=tl.int32)
    for s0 in range(start, t + 1, BLOCK_N):
        fs = s0 + tl.arange(0, BLOCK_N)
        vs = fs <= t
        rs = tl.load(r_ptr + fs, mask=vs, other=0.0)
        ws, ps = _budget_weights(rs, vs, pinned_video, f, min_keep)
        xs = _budget_quota(lo, ws, ps, f, min_keep)
        qs = tl.floor(xs)
        fracs = tl.where(qs < f, xs - qs, -1.0)
        rank = tl.zeros((BLOCK_N,), dtype=tl.int32)
        for u0 in range(start, end, BLOCK_N):
            fu = u0 + tl.arange(0, BLOCK_N)
            vu = fu < end
            ru = tl.load(r_ptr + fu, mask=vu, other=0.0)
            wu, pu = _budget_weights(ru, vu, pinned_video, f, min_keep)
            xu = _budget_quota(lo, wu, pu, f, min_keep)
            qu = tl.floor(xu)
            fracu = tl.where(vu & (qu < f), xu - qu, -2.0)
            beats = (fracu[None, :] > fracs[:, None]) | (
                (fracu[None, :] == fracs[:, None]) & (fu[None, :] < fs[:, None])
            )
            rank += tl.sum((beats & (fracu >= 0.0)[None, :]).to(tl.int32), axis=1)
        extra = (rank < left) & (fracs >= 0.0)
        quota = qs.to(tl.int32) + extra.to(tl.int32)
        k_t += tl.sum(tl.where(vs & (fs == t), quota, 0), axis=0)
        before += tl.sum(tl.where(vs & (fs < t), quota, 0), axis=0)
    return k_t, before


@triton.jit(do_not_specialize=["f", "min_keep"])
def gather_kernel(
    x_ptr,  # (total_frames, f, d) features, last dim contiguous
    cu_ptr,  # (B + 1,) int32 frame offsets
    r_ptr,  # (total_frames,) float32 keep ratios
    rank_ptr,  # (total_frames, f) int32 token ranks
    cnt_ptr,  # (total_frames,) int32 counts (read; written here in budget mode)
    out_ptr,  # (N_keep, d) kept tokens (out)
    idx_ptr,  # (N_keep,) int64 flat indices (out)
    cu_tok_ptr,  # (B + 1,) int32 per-video offsets into the output (out)
    n_videos,
    n_frames,
    f,
    d,
    d_per_prog,
    stride_t,
    stride_i,
    min_keep,
    budget,
    MODE: tl.constexpr,
    STEPS: tl.constexpr,
    BLOCK_F: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    t = tl.program_id(0)
    pd = tl.program_id(1)
    start, end, b = _video_of(cu_ptr, n_videos, t, BLOCK_B)

    if MODE == MODE_BUDGET:
        total = _video_budget(end - start, f, budget, min_keep)
        k, before = _budget_frame(r_ptr, start, end, t, f, min_keep, total, STEPS, BLOCK_N)
        off = before
        for j0 in range(0, b, BLOCK_B):  # budgets of the videos before this one
            vj = j0 + tl.arange(0, BLOCK_B)
            vm = vj < b
            c0 = tl.load(cu_ptr + vj, mask=vm, other=0)
            c1 = tl.load(cu_ptr + vj + 1, mask=vm, other=0)
            off += tl.sum(tl.where(vm, _video_budget(c1 - c0, f, budget, min_keep), 0), axis=0)
    else:
        k = tl.load(cnt_ptr + t)
        off = tl.zeros((), dtype=tl.int32)
        for s0 in range(0, t, BLOCK_N):
            fr = s0 + tl.arange(0, BLOCK_N)
            off += tl.sum(tl.load(cnt_ptr + fr, mask=fr < t, other=0), axis=0)

    rows = tl.arange(0, BLOCK_F)
    rmask = rows < f
    rank = tl.load(rank_ptr + t.to(tl.int64) * f + rows, mask=rmask, other=2147483647)
    keep = rmask & (rank < k)
    keep_i = keep.to(tl.int32)
    dst = (off + tl.cumsum(keep_i, axis=0) - keep_i).to(tl.int64)

    if pd == 0:
        tl.store(idx_ptr + dst, t.to(tl.int64) * f + rows, mask=keep)
        if MODE == MODE_BUDGET:
            tl.store(cnt_ptr + t, k)
        if t == start:
            tl.store(cu_tok_ptr + b, off)
        if t == n_frames - 1:
            tl.store(cu_tok_ptr + n_videos, off + k)

    src = x_ptr + t.to(tl.int64) * stride_t + rows.to(tl.int64)[:, None] * stride_i
    dst_p = out_ptr + dst[:, None] * d
    c_begin = pd * d_per_prog
    c_end = tl.minimum(c_begin + d_per_prog, d)
    for c0 in range(c_begin, c_end, BLOCK_D):
        cols = c0 + tl.arange(0, BLOCK_D)
        m2 = keep[:, None] & (cols < c_end)[None, :]
        v = tl.load(src + cols[None, :], mask=m2)
        tl.store(dst_p + cols[None, :], v, mask=m2)
