"""Triton kernel of ``kv_compact_`` (``@triton.jit`` code only; the launcher is in ``launch.py``).

``_kv_compact_kernel``: in-place left shift of the cache entries that follow a sample's visual
span, for every (layer, sample) whose similarity is under the threshold, all layers in one launch.
"""

from __future__ import annotations

import triton
import triton.language as tl


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
