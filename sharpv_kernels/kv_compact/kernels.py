"""Triton kernels of Memory SharpV (``@triton.jit`` code only; launchers are in ``launch.py``).

* ``_sim_partial_kernel`` / ``_sim_finish_kernel``: mean cosine similarity between the rows of a
  hidden state and of a reference over each sample's visual span, accumulated in float32, in two
  deterministic passes (per-tile partial sums, then a fixed-order sum per sample).
* ``_kv_compact_kernel``: in-place left shift of the cache entries that follow a sample's visual
  span, for every (layer, sample) whose similarity is under the threshold, all layers in one launch.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit(do_not_specialize=["S", "n_tiles"])
def _sim_partial_kernel(
    h_ptr,
    r_ptr,
    start_ptr,
    len_ptr,
    part_ptr,
    S,
    D,
    stride_hb,
    stride_hs,
    stride_rb,
    stride_rs,
    n_tiles,
    EPS: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    STAGES: tl.constexpr,
):
    """Program (tile, b): sum over its <= BLOCK_T span rows of cos(h[b, i], r[b, i]).

    Writes ``part[b, tile]`` (float32), 0 for tiles past the span. Rows outside ``[0, S)`` are
    never read (the span is clamped), so bad spans cannot read out of bounds.

    Finite for every finite input: each row is scaled by its running max-abs before squaring
    (sums rescaled when the max grows, as in an online softmax), so ``|h|^2`` never overflows
    even for entries near the float32 maximum.
    """
    tile = tl.program_id(0)  # axis x: up to 2^31 - 1 tiles, any S
    b = tl.program_id(1)
    start = tl.load(start_ptr + b).to(tl.int64)
    n = tl.load(len_ptr + b).to(tl.int64)
    t0 = tile * BLOCK_T
    total = 0.0
    if t0 < n:
        offs_t = t0 + tl.arange(0, BLOCK_T)
        rows = start + offs_t
        row_ok = (offs_t < n) & (rows >= 0) & (rows < S)
        h_row = h_ptr + b.to(tl.int64) * stride_hb + rows * stride_hs
        r_row = r_ptr + b.to(tl.int64) * stride_rb + rows * stride_rs
        mh = tl.zeros((BLOCK_T,), dtype=tl.float32)  # running max |h| of each row
        mr = tl.zeros((BLOCK_T,), dtype=tl.float32)
        dot = tl.zeros((BLOCK_T,), dtype=tl.float32)  # sum (h/mh)(r/mr)
        hh = tl.zeros((BLOCK_T,), dtype=tl.float32)  # sum (h/mh)^2
        rr = tl.zeros((BLOCK_T,), dtype=tl.float32)
        for d0 in tl.range(0, D, BLOCK_D, num_stages=STAGES):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            m = row_ok[:, None] & (offs_d < D)[None, :]
            h = tl.load(h_row[:, None] + offs_d[None, :], mask=m, other=0.0).to(tl.float32)
            r = tl.load(r_row[:, None] + offs_d[None, :], mask=m, other=0.0).to(tl.float32)
            nh = tl.maximum(mh, tl.max(tl.abs(h), axis=1))
            nr = tl.maximum(mr, tl.max(tl.abs(r), axis=1))
            ih = tl.where(
                nh > 1e-30, tl.div_rn(1.0, tl.maximum(nh, 1e-30)), 0.0
            )  # tiny rows are zero
            ir = tl.where(nr > 1e-30, tl.div_rn(1.0, tl.maximum(nr, 1e-30)), 0.0)
            ch = mh * ih  # <= 1: the old sums in units of the new max
            cr = mr * ir
            hs = h * ih[:, None]
            rs = r * ir[:, None]
            dot = dot * (ch * cr) + tl.sum(hs * rs, axis=1)
            hh = hh * (ch * ch) + tl.sum(hs * hs, axis=1)
            rr = rr * (cr * cr) + tl.sum(rs * rs, axis=1)
            mh = nh
            mr = nr
        # |h| = mh * sqrt(hh) <= 1e-12 means unit(h) = 0 (SPEC), tested without overflow
        ok_h = tl.sqrt_rn(hh) > tl.div_rn(EPS, tl.maximum(mh, 1e-30))
        ok_r = tl.sqrt_rn(rr) > tl.div_rn(EPS, tl.maximum(mr, 1e-30))
        ok = row_ok & ok_h & ok_r
        den = tl.where(ok, tl.sqrt_rn(hh) * tl.sqrt_rn(rr), 1.0)
        cos = tl.where(ok, tl.minimum(tl.maximum(tl.div_rn(dot, den), -1.0), 1.0), 0.0)
        total = tl.sum(cos, axis=0)
    tl.store(part_ptr + b.to(tl.int64) * n_tiles + tile, total)


@triton.jit(do_not_specialize=["n_tiles"])
def _sim_finish_kernel(
    part_ptr,
    len_ptr,
    out_ptr,
    stride_out,
    n_tiles,
    BLOCK: tl.constexpr,
):
    """Program b: ``out[b] = sum(part[b, :]) / n_b`` in a fixed order; 1.0 for an empty span."""
    b = tl.program_id(0)
    n = tl.load(len_ptr + b).to(tl.float32)
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for t0 in range(0, n_tiles, BLOCK):
        offs = t0 + tl.arange(0, BLOCK)
        acc += tl.load(part_ptr + b.to(tl.int64) * n_tiles + offs, mask=offs < n_tiles, other=0.0)
    total = tl.sum(acc, axis=0)
    res = tl.where(n > 0, tl.div_rn(total, tl.maximum(n, 1.0)), 1.0)
    tl.store(out_ptr + b * stride_out, res)


@triton.jit
def _kv_compact_kernel(
    base_ptr,
    table_ptr,
    cap_ptr,
    lengths_ptr,
    start_ptr,
    span_ptr,
    sim_ptr,
    threshold,
    B,
    D,
    stride_len_l,
    stride_len_b,
    stride_sim_l,
    stride_sim_b,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ALIGN: tl.constexpr,
):
    """Program (layer * B + b, head): shift one head's suffix of one (layer, sample) left.

    The caches of all layers are addressed from ``base_ptr`` by element offsets: row ``l`` of
    ``table`` (int64, 8 columns) holds ``[k_off, v_off, k_sb, k_sh, k_st, v_sb, v_sh, v_st]``.
    When ``sim[l, b] < threshold`` and the span is non-empty, rows ``[s + n, len)`` move to
    ``[s, len - n)`` in both keys and values; nothing else is read or written. Tiles go in
    increasing order inside the program and a barrier separates each tile's loads from its
    stores, so overlapping source and destination rows are safe. Invalid spans are skipped.
    ``ALIGN`` (elements) divides every offset and stride of the table, as the launcher
    checked on the host: it lets rows move as 16-byte vectors.
    """
    pid = tl.program_id(0)
    head = tl.program_id(1).to(tl.int64)
    layer = pid // B
    b = pid % B
    sim = tl.load(sim_ptr + layer * stride_sim_l + b * stride_sim_b)
    s = tl.load(start_ptr + b).to(tl.int64)
    n = tl.load(span_ptr + b).to(tl.int64)
    length = tl.load(lengths_ptr + layer * stride_len_l + b * stride_len_b).to(tl.int64)
    cap = tl.load(cap_ptr + layer).to(tl.int64)
    valid = (s >= 0) & (n > 0) & (s + n <= length) & (length <= cap)
    n_move = tl.where((sim < threshold) & valid, length - s - n, 0)

    row = table_ptr + layer * 8
    k_off = tl.multiple_of(tl.load(row + 0), ALIGN)
    v_off = tl.multiple_of(tl.load(row + 1), ALIGN)
    k_sb = tl.multiple_of(tl.load(row + 2), ALIGN)
    k_sh = tl.multiple_of(tl.load(row + 3), ALIGN)
    k_st = tl.multiple_of(tl.load(row + 4), ALIGN)
    v_sb = tl.multiple_of(tl.load(row + 5), ALIGN)
    v_sh = tl.multiple_of(tl.load(row + 6), ALIGN)
    v_st = tl.multiple_of(tl.load(row + 7), ALIGN)
    bb = b.to(tl.int64)
    k_base = base_ptr + k_off + bb * k_sb + head * k_sh
    v_base = base_ptr + v_off + bb * v_sb + head * v_sh
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    for t0 in range(0, n_move, BLOCK_T):
        offs_t = t0 + tl.arange(0, BLOCK_T)
        m = (offs_t < n_move)[:, None] & d_ok[None, :]
        src = (s + n + offs_t)[:, None]
        dst = (s + offs_t)[:, None]
        k = tl.load(k_base + src * k_st + offs_d[None, :], mask=m)
        v = tl.load(v_base + src * v_st + offs_d[None, :], mask=m)
        tl.debug_barrier()
        tl.store(k_base + dst * k_st + offs_d[None, :], k, mask=m)
        tl.store(v_base + dst * v_st + offs_d[None, :], v, mask=m)
