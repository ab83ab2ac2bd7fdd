"""Triton kernels of Visual SharpV (``@triton.jit`` code only; launchers live in ``launch.py``).

Five kernels, launched in order on one stream with no host synchronisation between them:

1. ``frame_norms_kernel``, grid ``(channel slices, total_frames)``, pass 1 over the features:
   program ``(s, t)`` walks the ``f`` tokens of frame ``t`` in row blocks over channels
   ``[s*BLOCK_D, (s+1)*BLOCK_D)`` and writes, in float32, each token's partial squared norm
   over the slice, the slice's column sums (for ``mean_t``) and its partial ``|mean_t|^2``,
   plus error bits (NaN/Inf, squared-norm overflow). The column sums are accumulated
   elementwise in registers and reduced across threads once, after the row loop.
2. ``frame_scores_kernel``, grid ``(token tiles, channel slices, frame chunks)``, pass 2:
   program ``(i, s, c)`` walks the frames of its chunk from the last to the first (the reverse
   of pass 1, so the frames read last by pass 1 are read first here, while still in L2), two
   frames per iteration, keeps the unit vectors of the frame after the pair in registers and
   writes per-slice partial sums of ``|u_t - u(mean_t)|^2`` and ``|u_t - u_{t-1}|^2``; it also
   reads the frame before its chunk. Video boundaries play no part (T of a video's first frame
   is never read). Unit vectors are ``x * (1/|x|)`` (0 for a zero token), so identical or
   power-of-two-rescaled tokens give exactly 0.
3. ``frame_select_kernel``, grid ``(total_frames,)``: sums the partials, forms S, T, I and
   ``r_t``, ranks each frame's tokens (ties to the lower index) and, in every mode but
   ``budget``, its kept count; validates ``cu_frames`` (program 0) and gathers the error bits
   and the output size in a two-word header.
4. ``video_counts_kernel``, grid ``(videos,)``: budget-mode quotas (float64 bisection, once per
   video), each frame's offset into the output and ``cu_tokens``.
5. ``gather_kernel``, grid ``(total_frames, channel blocks)``: turns the ranks into the list of
   kept token rows of its frame and copies them as dense ``(BLOCK_R, BLOCK_D)`` tiles, with
   their flat indices.

Floating point is pinned so that the interpreter (CI) and a GPU round alike: every launch
passes ``enable_fp_fusion=False`` (no contraction of ``a * b + c`` the source did not ask
for), products meant to be fused are written ``tl.fma``, and every division and square root
on the way to a discrete decision (unit vectors, ``r -> k``, ``I`` against ``K``, ranking)
is the correctly rounded ``tl.div_rn``/``tl.sqrt_rn``. ``tests/test_fp_pinned.py`` reads the
compiled PTX for approximate instructions.
"""

from __future__ import annotations

import triton
import triton.language as tl

# mode / metric codes; the launcher maps ``vocab.VISUAL_MODES``/``vocab.METRICS`` onto them
MODE_ADAPTIVE: tl.constexpr = tl.constexpr(0)
MODE_MANUAL: tl.constexpr = tl.constexpr(1)
MODE_RATIO: tl.constexpr = tl.constexpr(2)
MODE_BUDGET: tl.constexpr = tl.constexpr(3)
METRIC_DISSIM: tl.constexpr = tl.constexpr(0)
METRIC_COSINE: tl.constexpr = tl.constexpr(1)

# header error bits
FLAG_NONFINITE: tl.constexpr = tl.constexpr(1)
FLAG_BAD_CU: tl.constexpr = tl.constexpr(2)
FLAG_MAGNITUDE: tl.constexpr = tl.constexpr(4)
FLAG_W_OVERFLOW: tl.constexpr = tl.constexpr(8)

_FLT_MAX: tl.constexpr = tl.constexpr(3.4028234663852886e38)


@triton.jit
def _video_of(cu_ptr, n_videos, n_frames, t, BLOCK_B: tl.constexpr):
    """``(start, end, b)`` of the video holding frame ``t``, clamped to ``[0, n_frames]``."""
    b = tl.zeros((), dtype=tl.int32)
    for j0 in range(1, n_videos + 1, BLOCK_B):
        offs = j0 + tl.arange(0, BLOCK_B)
        c = tl.load(cu_ptr + offs, mask=offs <= n_videos, other=2147483647)
        b += tl.sum((c <= t).to(tl.int32), axis=0)
    b = tl.minimum(b, n_videos - 1)
    start = tl.minimum(tl.maximum(tl.load(cu_ptr + b), 0), n_frames)
    end = tl.minimum(tl.maximum(tl.load(cu_ptr + b + 1), start), n_frames)
    return start, end, b


@triton.jit
def _inv_norm(sq, EPS: tl.constexpr):
    """``1/sqrt(sq)``, or 0 when the norm ``sqrt(sq)`` is at most ``EPS``.

    A correctly rounded square root and division (``sqrt.rn``, ``div.rn``; never the
    approximate ``rsqrt.approx``), as the interpreter and the reference compute them. Both are
    exact under scaling by powers of four, so tokens that are power-of-two rescalings of one
    another get bit-identical unit vectors.
    """
    return tl.where(sq > EPS * EPS, tl.div_rn(1.0, tl.sqrt_rn(tl.maximum(sq, EPS * EPS))), 0.0)


@triton.jit(do_not_specialize=["f"])
def frame_norms_kernel(
    x_ptr,  # (total_frames, f, d) features, channel stride 1
    nrm_ptr,  # (total_frames, f, BLOCK_S) float32 partial |x|^2, zero-padded (out)
    col_ptr,  # (total_frames, d) float32 column sums (out)
    msq_ptr,  # (total_frames, BLOCK_S) float32 partial |mean|^2, zero-padded (out)
    flg_ptr,  # (total_frames, n_split) int32 error bits (out)
    hdr_ptr,  # (2,) int32 header, zeroed here for the later kernels
    f,
    d,
    stride_t,
    stride_i,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_S: tl.constexpr,
    STAGES: tl.constexpr,
):
    s = tl.program_id(0)
    t = tl.program_id(1)
    n_split = tl.num_programs(0)
    if (t == 0) & (s == 0):
        tl.store(hdr_ptr + tl.arange(0, 2), tl.zeros((2,), dtype=tl.int32))
    cols = s * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = cols < d
    rows0 = tl.arange(0, BLOCK_T)
    frame = x_ptr + t.to(tl.int64) * stride_t
    acc = tl.zeros((BLOCK_T, BLOCK_D), dtype=tl.float32)
    poison = tl.zeros((BLOCK_T, BLOCK_D), dtype=tl.float32)  # NaN where an input is NaN/Inf
    big = tl.zeros((BLOCK_T,), dtype=tl.int32)
    nrm_frame = nrm_ptr + t.to(tl.int64) * f * BLOCK_S
    pad = n_split + tl.arange(0, BLOCK_S)  # slots past the last slice hold zeros
    pad_m = (pad < BLOCK_S) & (pad * 0 + s == 0)  # a vector: the interpreter needs one
    for r0 in tl.range(0, f, BLOCK_T, num_stages=STAGES):
        rows = r0 + rows0
        rmask = rows < f
        ptrs = frame + rows.to(tl.int64)[:, None] * stride_i + cols[None, :]
        x = tl.load(ptrs, mask=rmask[:, None] & cmask[None, :], other=0.0).to(tl.float32)
        acc += x
        poison += x * 0.0
        sq = tl.sum(x * x, axis=1)
        big = tl.maximum(big, (sq > _FLT_MAX).to(tl.int32))
        tl.store(nrm_frame + rows * BLOCK_S + s, sq, mask=rmask)
        tl.store(nrm_frame + rows[:, None] * BLOCK_S + pad[None, :],
                 tl.zeros((BLOCK_T, BLOCK_S), dtype=tl.float32),
                 mask=rmask[:, None] & pad_m[None, :])  # fmt: skip
    col = tl.sum(acc, axis=0)
    tl.store(col_ptr + t.to(tl.int64) * d + cols, col, mask=cmask)
    mean = tl.div_rn(col, f.to(tl.float32))
    tl.store(msq_ptr + t * BLOCK_S + s, tl.sum(mean * mean, axis=0))
    tl.store(msq_ptr + t * BLOCK_S + pad, tl.zeros((BLOCK_S,), dtype=tl.float32), mask=pad_m)
    nonfinite = tl.sum(tl.sum(poison, axis=1), axis=0) != 0.0
    flags = tl.where(nonfinite, FLAG_NONFINITE, tl.max(big, axis=0) * FLAG_MAGNITUDE)
    tl.store(flg_ptr + t * n_split + s, flags)


@triton.jit
def _sumsq_rows(v, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    """``sum(v * v, axis=1)`` of a ``(BLOCK_T, BLOCK_D)`` tile: the four quarter-tiles of
    columns are squared and added elementwise (explicit fused multiply-adds, which the
    interpreter rounds once too), then one tree sum."""
    if BLOCK_D >= 64:
        q = tl.permute(tl.reshape(v, (BLOCK_T, 2, 2, BLOCK_D // 4)), (0, 3, 1, 2))
        h0, h1 = tl.split(q)
        a, b = tl.split(h0)
        c, e = tl.split(h1)
        acc = a * a
        acc = tl.fma(b, b, acc)
        acc = tl.fma(c, c, acc)
        acc = tl.fma(e, e, acc)
        return tl.sum(acc, axis=1)
    else:
        return tl.sum(v * v, axis=1)


@triton.jit
def _to_f32(x):
    """float32 of a float16/bfloat16/float32 tensor; bfloat16 as its bits shifted into place
    (the same value as a conversion, in one integer operation per element on the GPU)."""
    if x.dtype == tl.bfloat16:
        return (x.to(tl.uint16, bitcast=True).to(tl.uint32) << 16).to(tl.float32, bitcast=True)
    else:
        return x.to(tl.float32)


@triton.jit
def _frame_units(x_p, nrm_p, msq_p, col_p, cmask, inv_f, EPS: tl.constexpr, EVEN_D: tl.constexpr):
    """Unit vectors of one frame's ``(rows, cols)`` tile and ``u(mean_t)`` over ``cols``.

    ``x_p``: the tile's pointers; ``nrm_p``: ``(rows, BLOCK_S)`` pass-1 partials of the rows
    (zero-padded slots); ``msq_p``: the frame's ``BLOCK_S`` partial ``|mean|^2``; ``col_p``:
    its column sums over ``cols``. Columns past ``d`` (``cmask`` false) read zeros.
    """
    if EVEN_D:
        x = _to_f32(tl.load(x_p))
        col = tl.load(col_p)
    else:
        x = _to_f32(tl.load(x_p, mask=cmask[None, :], other=0.0))
        col = tl.load(col_p, mask=cmask, other=0.0)
    u = x * _inv_norm(tl.sum(tl.load(nrm_p), axis=1), EPS)[:, None]
    msq = tl.sum(tl.load(msq_p), axis=0)
    return u, col * (inv_f * _inv_norm(msq, EPS))  # u(mean_t) = mean_t / |mean_t|


@triton.jit(do_not_specialize=["f", "n_frames", "frames_per_prog"])
def frame_scores_kernel(
    x_ptr,  # (total_frames, f, d) features, channel stride 1
    nrm_ptr,  # (total_frames, f, BLOCK_S) float32 from pass 1
    col_ptr,  # (total_frames, d) float32 from pass 1
    msq_ptr,  # (total_frames, BLOCK_S) float32 from pass 1
    part_ptr,  # (total_frames, n_split2, f, 2) float32 partial d2 for S and T (out)
    n_frames,
    frames_per_prog,
    f,
    d,
    stride_t,
    stride_i,
    EPS: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_S: tl.constexpr,
    EVEN_D: tl.constexpr,
    STAGES: tl.constexpr,
):
    tile = tl.program_id(0)
    s = tl.program_id(1)
    lo = tl.program_id(2) * frames_per_prog
    hi = tl.minimum(lo + frames_per_prog, n_frames)
    n_walk = hi - lo + (lo > 0).to(tl.int32)  # and frame lo - 1, for T of frame lo
    n_split2 = tl.num_programs(1)
    rows = tile * BLOCK_T + tl.arange(0, BLOCK_T)
    rmask = rows < f
    rows_in = tl.minimum(rows, f - 1)  # rows past f re-read row f - 1: unmasked loads
    cols = s * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = cols < d
    slots = tl.arange(0, BLOCK_S)
    inv_f = tl.div_rn(1.0, f.to(tl.float32))
    # pointers of the last frame's tiles, stepped back two frames per iteration
    last = (hi - 1).to(tl.int64)
    x_p = x_ptr + last * stride_t + rows_in.to(tl.int64)[:, None] * stride_i + cols[None, :]
    nrm_p = nrm_ptr + (last * f + rows_in[:, None]) * BLOCK_S + slots[None, :]
    msq_p = msq_ptr + last * BLOCK_S + slots
    col_p = col_ptr + last * d + cols
    # (S, T) of a token sit side by side; frame t + 1's pair is ``step`` after frame t's
    step = 2 * n_split2 * f
    pair = tl.arange(0, 2)
    out_p = part_ptr + last * step + (s * f + rows[:, None, None]) * 2 + pair[None, :, None] + \
        pair[None, None, :] * step  # fmt: skip
    u_next = tl.zeros((BLOCK_T, BLOCK_D), dtype=tl.float32)
    s_next = tl.zeros((BLOCK_T,), dtype=tl.float32)
    # Frames ``a = hi - 1 - i`` and ``b = a - 1`` per iteration (``b = a`` for a lone last
    # frame). Each stores (S_a, T_a) and (S_{a+1}, T_{a+1}) and keeps S_b for the next.
    # Video boundaries play no part: T of a video's first frame is computed against the
    # previous video's last frame and never read.
    for i in tl.range(0, n_walk, 2, num_stages=STAGES):
        hb = (i + 1 < n_walk).to(tl.int64)  # frame b is walked
        ua, uma = _frame_units(x_p, nrm_p, msq_p, col_p, cmask, inv_f, EPS, EVEN_D)
        dt = u_next - ua  # T of frame a + 1, against frame a (none in the first iteration)
        t_next = _sumsq_rows(dt, BLOCK_T, BLOCK_D)
        ds = ua - uma[None, :]
        s_a = _sumsq_rows(ds, BLOCK_T, BLOCK_D)
        ub, umb = _frame_units(x_p - hb * stride_t, nrm_p - hb * f * BLOCK_S,
                               msq_p - hb * BLOCK_S, col_p - hb * d, cmask, inv_f, EPS,
                               EVEN_D)  # fmt: skip
        dt = ua - ub
        t_a = _sumsq_rows(dt, BLOCK_T, BLOCK_D)
        vals = tl.join(tl.join(s_a, t_a), tl.join(s_next, t_next))  # (rows, S/T, frame)
        own_a = pair * 0 + i < hi - lo  # frame a is this program's (not frame lo - 1)
        live = rmask[:, None] & tl.where(pair == 0, own_a, pair * 0 + i > 0)[None, :]
        tl.store(out_p, vals, mask=live[:, None, :])
        ds = ub - umb[None, :]
        s_next = _sumsq_rows(ds, BLOCK_T, BLOCK_D)
        u_next = ub
        x_p -= (last * 0 + 2) * stride_t  # in int64: a frame may hold over 2^30 elements
        nrm_p -= 2 * f * BLOCK_S
        msq_p -= 2 * BLOCK_S
        col_p -= 2 * d
        out_p -= 2 * step
    # S of frame 0, the one frame no iteration stores as an ``a + 1``
    if lo == 0:
        tl.store(part_ptr + (s * f + rows) * 2, s_next, mask=rmask)


@triton.jit
def _score(d2, nz_a, nz_b, METRIC: tl.constexpr):
    """Dissim ``sqrt(d2)`` (exactly 1 against a zero vector, 0 between two) or ``1 - cos =
    d2 / 2`` (exactly 1 when either vector is zero): SPEC 1, the same bits on every backend."""
    if METRIC == METRIC_DISSIM:
        return tl.where(nz_a & nz_b, tl.sqrt_rn(d2), tl.where(nz_a | nz_b, 1.0, 0.0))
    else:
        return tl.where(nz_a & nz_b, 0.5 * d2, 1.0)


@triton.jit(do_not_specialize=["f", "min_keep", "k_fixed", "n_videos", "n_frames"])
def frame_select_kernel(
    nrm_ptr,  # (total_frames, f, BLOCK_S) float32, zero-padded
    msq_ptr,  # (total_frames, BLOCK_S) float32, zero-padded
    flg_ptr,  # (total_frames, n_split1) int32
    part_ptr,  # (total_frames, n_split2, f, 2) float32
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
    n_split1,
    n_split2,
    w,
    threshold,
    k_fixed,
    min_keep,
    EPS: tl.constexpr,
    MODE: tl.constexpr,
    METRIC: tl.constexpr,
    STORE_ST: tl.constexpr,
    RANK: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_J: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_S2: tl.constexpr,
):
    """One program per frame, its ``f`` tokens in blocks of ``BLOCK_R`` rows: the state of a
    thread is bounded by the blocks, whatever ``f`` (16,384 at most). A norm is zero when its
    square is at most ``EPS * EPS`` (in float32: the same as ``sqrt_rn(sq) <= EPS``, with no
    square-root subroutine call in the loop, whose saved registers would spill)."""
    t = tl.program_id(0)
    t64 = t.to(tl.int64)
    start, end, b = _video_of(cu_ptr, n_videos, n_frames, t, BLOCK_B)
    has_prev = t > start
    splits = tl.arange(0, BLOCK_S)
    smask = splits < n_split1
    msq = tl.sum(tl.load(msq_ptr + t * BLOCK_S + splits), axis=0)
    sp = tl.arange(0, BLOCK_S2)

    # pass over the row blocks: S, T, I of each token, and the frame's sums over its tokens
    tsq = tl.zeros((BLOCK_R,), dtype=tl.float32)  # sum of T^2, elementwise over the blocks
    big = tl.zeros((), dtype=tl.int32)
    over = tl.zeros((), dtype=tl.int32)
    above = tl.zeros((), dtype=tl.int32)
    for r0 in range(0, f, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        rmask = rows < f
        pmask = rmask & (rows * 0 + t > start)  # the interpreter cannot mix scalar/vector masks
        # every partial sum of these tokens in one 2-D load each
        pm = (sp < n_split2)[:, None] & rmask[None, :]
        base = part_ptr + ((t64 * n_split2 + sp[:, None]) * f + rows[None, :]) * 2
        d2s = tl.sum(tl.load(base, mask=pm, other=0.0), axis=0)
        d2t = tl.sum(tl.load(base + 1, mask=pm & pmask[None, :], other=0.0), axis=0)
        nz_m = (msq + tl.zeros_like(d2s)) > EPS * EPS  # a vector: see ``pmask``
        nrm_t = nrm_ptr + (t64 * f + rows[:, None]) * BLOCK_S + splits[None, :]
        nx2 = tl.sum(tl.load(nrm_t, mask=rmask[:, None], other=0.0), axis=1)
        # a squared norm that overflows float32 only once the slices are added up
        big = tl.maximum(big, tl.max((rmask & (nx2 > _FLT_MAX)).to(tl.int32), axis=0))
        # zero vectors score exactly (SPEC 1) under both metrics: their norms are needed
        prev = tl.maximum(t - 1, 0).to(tl.int64)
        nrm_p = nrm_ptr + (prev * f + rows[:, None]) * BLOCK_S + splits[None, :]
        np2 = tl.sum(tl.load(nrm_p, mask=rmask[:, None], other=0.0), axis=1)
        nz_x = nx2 > EPS * EPS  # = sqrt_rn(nx2) > EPS (tests/test_select_state.py)
        nz_p = np2 > EPS * EPS
        S = _score(d2s, nz_x, nz_m, METRIC)
        if has_prev:
            T = _score(d2t, nz_x, nz_p, METRIC)
        else:
            T = S  # SPEC 4: the first frame of a video compares against its own mean
        S = tl.where(rmask, S, 0.0)
        T = tl.where(rmask, T, 0.0)
        I = T + w * S  # two roundings: launched with enable_fp_fusion=False, never an FMA
        tsq += T * T
        over = tl.maximum(over, tl.max((rmask & ~(tl.abs(I) <= _FLT_MAX)).to(tl.int32), axis=0))
        if MODE == MODE_MANUAL:
            above += tl.sum((rmask & (I > threshold)).to(tl.int32), axis=0)
        out = t64 * f + rows
        if STORE_ST:
            tl.store(s_ptr + out, S, mask=rmask)
            tl.store(tt_ptr + out, T, mask=rmask)
        tl.store(i_ptr + out, I, mask=rmask)
    # the pass-1 error bits (read here: nothing but the loop's own state lives in the loop)
    flg = tl.load(flg_ptr + t * n_split1 + splits, mask=smask, other=0)
    flags = tl.max(flg & FLAG_NONFINITE, axis=0) | tl.max(flg & FLAG_MAGNITUDE, axis=0)
    flags = flags | tl.where((flags & FLAG_NONFINITE) == 0, big * FLAG_MAGNITUDE, 0)
    r = tl.minimum(
        tl.div_rn(tl.sqrt_rn(tl.sum(tsq, axis=0)), 2.0 * tl.sqrt_rn(f.to(tl.float32))), 1.0
    )
    flags = tl.where(flags == 0, over * FLAG_W_OVERFLOW, flags)
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
        flags = flags | (bad_cu * FLAG_BAD_CU)
    if flags != 0:
        tl.atomic_or(hdr_ptr + 1, flags)

    if RANK:
        if MODE != MODE_BUDGET:  # the kept count (first: nothing but the ranks live in the loop)
            if MODE == MODE_ADAPTIVE:
                k = tl.ceil(r * f.to(tl.float32)).to(tl.int32)
            elif MODE == MODE_MANUAL:
                k = above
            else:
                k = k_fixed + tl.zeros((), dtype=tl.int32)
            k = tl.minimum(tl.maximum(k, min_keep), f)
            tl.store(cnt_ptr + t, k)
            tl.atomic_add(hdr_ptr, k)
        # a tiled rank over the I just stored: for each block of tokens i, over the blocks of
        # the frame, rank_i = #{j : I_j > I_i, or I_j == I_i and j < i} (ties to the lower j)
        tl.debug_barrier()
        for r0 in range(0, f, BLOCK_R):
            rows = r0 + tl.arange(0, BLOCK_R)
            rmask = rows < f
            ii = tl.load(i_ptr + t64 * f + rows, mask=rmask, other=0.0)
            rank = tl.zeros((BLOCK_R,), dtype=tl.int32)
            for j0 in range(0, f, BLOCK_J):
                cols = j0 + tl.arange(0, BLOCK_J)
                ij = tl.load(i_ptr + t64 * f + cols, mask=cols < f, other=float("-inf"))
                beats = (ij[None, :] > ii[:, None]) | (
                    (ij[None, :] == ii[:, None]) & (cols[None, :] < rows[:, None])
                )
                beats = beats & (cols < f)[None, :]
                rank += tl.sum(beats.to(tl.int32), axis=1)
            tl.store(rank_ptr + t64 * f + rows, rank, mask=rmask)


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


@triton.jit
def _budget_quota(lam, r, valid, pinned_video, f, min_keep):
    """Real-valued quota of frames with keep ratios ``r`` for the multiplier ``lam``.

    A pinned video (the frames with ``r > 0`` cannot hold the budget) fills those frames and
    splits the rest uniformly over the frames with ``r == 0``.
    """
    pos = r > 0.0
    weight = tl.where(pinned_video, tl.where(pos, 0.0, 1.0), r.to(tl.float64))
    x = tl.minimum(tl.maximum(lam * weight, min_keep.to(tl.float64)), f.to(tl.float64))
    x = tl.where(pinned_video & pos, f.to(tl.float64), x)
    return tl.where(valid, x, 0.0)


@triton.jit(do_not_specialize=["f", "min_keep", "n_videos", "n_frames"])
def video_counts_kernel(
    cu_ptr,  # (B + 1,) int32 frame offsets
    r_ptr,  # (total_frames,) float32 keep ratios
    cnt_ptr,  # (total_frames,) int32 counts (read; written here in budget mode)
    off_ptr,  # (total_frames,) int32 offset of each frame's kept tokens (out)
    cu_tok_ptr,  # (B + 1,) int32 per-video offsets into the output (out)
    hdr_ptr,  # (2,) int32 header: the output size is added here in budget mode
    n_videos,
    n_frames,
    f,
    min_keep,
    budget,
    MODE: tl.constexpr,
    STEPS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_B: tl.constexpr,
):
    b = tl.program_id(0)
    start = tl.minimum(tl.maximum(tl.load(cu_ptr + b), 0), n_frames)
    end = tl.minimum(tl.maximum(tl.load(cu_ptr + b + 1), start), n_frames)
    if MODE == MODE_BUDGET:
        total = _video_budget(end - start, f, budget, min_keep)
        # capacity when only frames with r > 0 grow, and the smallest positive r
        cap = tl.zeros((), dtype=tl.int32)
        min_pos = tl.full((), float("inf"), dtype=tl.float64)
        for s0 in range(start, end, BLOCK_N):
            fr = s0 + tl.arange(0, BLOCK_N)
            v = fr < end
            r = tl.load(r_ptr + fr, mask=v, other=0.0)
            cap += tl.sum(tl.where(v, tl.where(r > 0.0, f, min_keep), 0), axis=0)
            rp = tl.where(v & (r > 0.0), r.to(tl.float64), float("inf"))
            min_pos = tl.minimum(min_pos, tl.min(rp, axis=0))
        pinned = cap < total
        hi = tl.where(pinned | (min_pos == float("inf")), f.to(tl.float64), f / min_pos)
        lo = tl.zeros((), dtype=tl.float64)
        for _ in range(STEPS):
            mid = 0.5 * (lo + hi)
            g = tl.zeros((), dtype=tl.float64)
            for s0 in range(start, end, BLOCK_N):
                fr = s0 + tl.arange(0, BLOCK_N)
                v = fr < end
                r = tl.load(r_ptr + fr, mask=v, other=0.0)
                g += tl.sum(_budget_quota(mid, r, v, pinned, f, min_keep), axis=0)
            ok = g <= total.to(tl.float64)
            lo = tl.where(ok, mid, lo)
            hi = tl.where(ok, hi, mid)
        # integer parts, then the leftover to the largest fractions (ties to the lower frame)
        floor_sum = tl.zeros((), dtype=tl.int32)
        for s0 in range(start, end, BLOCK_N):
            fr = s0 + tl.arange(0, BLOCK_N)
            v = fr < end
            r = tl.load(r_ptr + fr, mask=v, other=0.0)
            x = _budget_quota(lo, r, v, pinned, f, min_keep)
            floor_sum += tl.sum(tl.floor(x), axis=0).to(tl.int32)
        left = total - floor_sum
        for s0 in range(start, end, BLOCK_N):
            fs = s0 + tl.arange(0, BLOCK_N)
            vs = fs < end
            xs = _budget_quota(lo, tl.load(r_ptr + fs, mask=vs, other=0.0), vs, pinned, f,
                               min_keep)  # fmt: skip
            qs = tl.floor(xs)
            fracs = tl.where(qs < f, xs - qs, -1.0)
            rank = tl.zeros((BLOCK_N,), dtype=tl.int32)
            for u0 in range(start, end, BLOCK_N):
                fu = u0 + tl.arange(0, BLOCK_N)
                vu = fu < end
                xu = _budget_quota(lo, tl.load(r_ptr + fu, mask=vu, other=0.0), vu, pinned, f,
                                   min_keep)  # fmt: skip
                qu = tl.floor(xu)
                fracu = tl.where(vu & (qu < f), xu - qu, -2.0)
                beats = (fracu[None, :] > fracs[:, None]) | (
                    (fracu[None, :] == fracs[:, None]) & (fu[None, :] < fs[:, None])
                )
                rank += tl.sum((beats & (fracu >= 0.0)[None, :]).to(tl.int32), axis=1)
            extra = (rank < left) & (fracs >= 0.0)
            tl.store(cnt_ptr + fs, qs.to(tl.int32) + extra.to(tl.int32), mask=vs)
        tl.atomic_add(hdr_ptr, total)
        # the videos before this one keep their budgets
        base = tl.zeros((), dtype=tl.int32)
        for j0 in range(0, b, BLOCK_B):
            vj = j0 + tl.arange(0, BLOCK_B)
            vm = vj < b
            c0 = tl.load(cu_ptr + vj, mask=vm, other=0)
            c1 = tl.load(cu_ptr + vj + 1, mask=vm, other=0)
            base += tl.sum(tl.where(vm, _video_budget(c1 - c0, f, budget, min_keep), 0), axis=0)
        tl.debug_barrier()  # this program's count stores are read back below
    else:
        base = tl.zeros((), dtype=tl.int32)
        for s0 in range(0, start, BLOCK_N):
            fr = s0 + tl.arange(0, BLOCK_N)
            base += tl.sum(tl.load(cnt_ptr + fr, mask=fr < start, other=0), axis=0)
    run = base
    for s0 in range(start, end, BLOCK_N):
        fr = s0 + tl.arange(0, BLOCK_N)
        v = fr < end
        c = tl.load(cnt_ptr + fr, mask=v, other=0)
        tl.store(off_ptr + fr, run + tl.cumsum(c, axis=0) - c, mask=v)
        run += tl.sum(c, axis=0)
    tl.store(cu_tok_ptr + b, base)
    if b == n_videos - 1:
        tl.store(cu_tok_ptr + n_videos, run)


@triton.jit
def _copy_rows(frame, src, dst, jm, out_ptr, d, stride_i, pd,
               BLOCK_D: tl.constexpr, D_PER_PROG: tl.constexpr):  # fmt: skip
    """Copy the rows ``src`` of ``frame`` to the rows ``dst`` of the output (where ``jm``),
    this program's ``D_PER_PROG`` channels, in ``(rows, BLOCK_D)`` tiles."""
    src_p = frame + src.to(tl.int64)[:, None] * stride_i
    dst_p = out_ptr + dst[:, None] * d
    for c0 in range(0, D_PER_PROG, BLOCK_D):
        cols = pd * D_PER_PROG + c0 + tl.arange(0, BLOCK_D)
        m2 = jm[:, None] & (cols < d)[None, :]
        v = tl.load(src_p + cols[None, :], mask=m2)
        tl.store(dst_p + cols[None, :], v, mask=m2)


@triton.jit(do_not_specialize=["f", "capacity"])
def gather_kernel(
    x_ptr,  # (total_frames, f, d) features, channel stride 1
    rank_ptr,  # (total_frames, f) int32 token ranks
    cnt_ptr,  # (total_frames,) int32 counts
    off_ptr,  # (total_frames,) int32 output offset of each frame
    out_ptr,  # (capacity, d) kept tokens (out)
    idx_ptr,  # (capacity,) int64 flat indices (out)
    capacity,
    f,
    d,
    stride_t,
    stride_i,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
    D_PER_PROG: tl.constexpr,
):
    """Copy the kept rows of frame ``program_id(0)`` (channel block ``program_id(1)``).

    The frame's tokens are read in blocks of ``BLOCK_R``; the kept ones fill output tiles of
    ``BLOCK_R`` consecutive slots (a ``(BLOCK_R, BLOCK_R)`` match of slots to the block's
    prefix-summed keep mask), each tile copied once full, and the last one at the end: every
    lane of a copy busy, and per-thread state independent of ``f``.
    """
    t = tl.program_id(0)
    pd = tl.program_id(1)
    t64 = t.to(tl.int64)
    # counts and offsets are garbage only for frames outside every video (malformed
    # cu_frames, reported by the select kernel): clamp, and mask the stores to the buffer
    k = tl.minimum(tl.maximum(tl.load(cnt_ptr + t), 0), f)
    off = tl.load(off_ptr + t)
    frame = x_ptr + t64 * stride_t
    lane = tl.arange(0, BLOCK_R)
    j0 = tl.zeros((), dtype=tl.int32)  # first slot of the tile being filled
    src = tl.zeros((BLOCK_R,), dtype=tl.int32)  # the token of each of its slots
    run = tl.zeros((), dtype=tl.int32)  # tokens kept before this block
    for t0 in range(0, f, BLOCK_R):
        toks = t0 + lane
        rank = tl.load(rank_ptr + t64 * f + toks, mask=toks < f, other=2147483647)
        keep = rank < k
        pos = run + tl.cumsum(keep.to(tl.int32), axis=0) - 1  # output slot of each kept token
        hit = keep[None, :] & (pos[None, :] == (j0 + lane)[:, None])
        src += tl.sum(tl.where(hit, toks[None, :], 0), axis=1)
        run += tl.sum(keep.to(tl.int32), axis=0)
        # at most BLOCK_R tokens kept here: at most one tile filled, its rest in the next
        if run >= j0 + BLOCK_R:
            dst = (off + j0 + lane).to(tl.int64)
            jm = (dst >= 0) & (dst < capacity)
            if pd == 0:
                tl.store(idx_ptr + dst, t64 * f + src, mask=jm)
            _copy_rows(frame, src, dst, jm, out_ptr, d, stride_i, pd, BLOCK_D, D_PER_PROG)
            j0 += BLOCK_R
            hit = keep[None, :] & (pos[None, :] == (j0 + lane)[:, None])
            src = tl.sum(tl.where(hit, toks[None, :], 0), axis=1)
    if j0 < k:  # the last, partly filled tile
        dst = (off + j0 + lane).to(tl.int64)
        jm = (j0 + lane < k) & (dst >= 0) & (dst < capacity)
        if pd == 0:
            tl.store(idx_ptr + dst, t64 * f + src, mask=jm)
        _copy_rows(frame, src, dst, jm, out_ptr, d, stride_i, pd, BLOCK_D, D_PER_PROG)
