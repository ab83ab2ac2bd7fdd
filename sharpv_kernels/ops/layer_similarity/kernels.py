"""Triton kernels of ``layer_similarity`` (``@triton.jit`` code only; launchers in ``launch.py``).

``_sim_partial_kernel`` / ``_sim_finish_kernel``: mean cosine similarity between the rows of a
hidden state and of a reference over each sample's visual span, accumulated in float32, in two
deterministic passes (per-tile partial sums, then a fixed-order sum per sample).
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
