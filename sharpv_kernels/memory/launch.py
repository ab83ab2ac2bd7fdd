"""Launchers of the Memory SharpV Triton kernels.

They take already-validated arguments (see ``checks.py``) and work on CUDA tensors, or on CPU
tensors when Triton's interpreter is on (``TRITON_INTERPRET=1``), which is how CI tests the
kernels themselves. Neither launcher synchronises with the host.
"""

from __future__ import annotations

import torch
import triton

from .._utils import is_interpreting, next_power_of_2
from . import kernels as K

__all__ = ["layer_similarity_triton", "kv_compact_triton", "compact_table"]


def _sim_blocks(d: int) -> tuple[int, int, int]:
    """``(BLOCK_T, BLOCK_D, num_warps)`` of the similarity kernel for hidden size ``d``.

    (32, 64) tiles on 8 warps need about 100 registers and no spills (sm_90,
    ``scripts/aot_compile_check.py``); (32, 128) on 4 warps spill.
    """
    if is_interpreting():
        return 16, min(64, next_power_of_2(d)), 4
    return 32, min(64, next_power_of_2(d)), 8


def _compact_blocks(d: int) -> tuple[int, int, int]:
    """``(BLOCK_T, BLOCK_D, num_warps)`` of the compaction kernel for head dim ``d``.

    Tiles of 4096 elements on 8 warps stay near 110 registers without spills for head dims
    64 and 128 (sm_90, ``scripts/aot_compile_check.py``); 8192-element tiles on 4 warps spill.
    """
    block_d = next_power_of_2(d)
    if is_interpreting():
        return 16, block_d, 4
    block_t = max(1, min(64, 4096 // block_d))
    return block_t, block_d, 8 if block_t * block_d >= 4096 else 4


def layer_similarity_triton(
    hidden: torch.Tensor,
    reference: torch.Tensor,
    span_start: torch.Tensor,
    span_len: torch.Tensor,
    out: torch.Tensor,
    layer: int,
) -> None:
    """Write ``out[layer, b]`` = mean over the span rows of cos(hidden[b, i], reference[b, i]).

    Args:
        hidden: ``(B, S, d)`` float32/float16/bfloat16, last dim contiguous.
        reference: ``(B, S, d)`` float32/float16/bfloat16, last dim contiguous.
        span_start, span_len: ``(B,)`` int32/int64, the span is ``[start, start + len)``.
        out: ``(L, B)`` float32 with unit stride along B; only row ``layer`` is written.
        layer: row of ``out`` to write.
    """
    bsz, seq, d = hidden.shape
    block_t, block_d, warps = _sim_blocks(d)
    n_tiles = max(1, triton.cdiv(seq, block_t))
    part = torch.empty((bsz, n_tiles), dtype=torch.float32, device=hidden.device)
    K._sim_partial_kernel[(bsz, n_tiles)](
        hidden, reference, span_start, span_len, part, seq, d,
        hidden.stride(0), hidden.stride(1), reference.stride(0), reference.stride(1), n_tiles,
        BLOCK_T=block_t, BLOCK_D=block_d, num_warps=warps,
    )  # fmt: skip
    block = min(1024, next_power_of_2(n_tiles))
    K._sim_finish_kernel[(bsz,)](part, span_len, out[layer], n_tiles, BLOCK=block, num_warps=4)


def compact_table(
    keys: list[torch.Tensor], values: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Address every layer's keys and values from one base tensor.

    Returns ``(base, table, caps)``: ``base`` is ``keys[0]``; ``table`` ``(L, 8)`` int64 holds
    ``[k_off, v_off, k_sb, k_sh, k_st, v_sb, v_sh, v_st]`` in elements relative to ``base``;
    ``caps`` ``(L,)`` int64 the capacity ``T_l`` of each layer. Both live on the device of
    ``base`` (one small host-to-device copy, no synchronisation).
    """
    base = keys[0]
    elt = base.element_size()
    p0 = base.data_ptr()
    rows, caps = [], []
    for k, v in zip(keys, values, strict=True):
        dk, dv = k.data_ptr() - p0, v.data_ptr() - p0
        if dk % elt or dv % elt:  # pragma: no cover - allocations are always aligned
            raise ValueError("keys/values must be aligned to their element size")
        rows.append([dk // elt, dv // elt, k.stride(0), k.stride(1), k.stride(2),
                     v.stride(0), v.stride(1), v.stride(2)])  # fmt: skip
        caps.append(k.shape[2])
    table = torch.tensor(rows, dtype=torch.int64).to(base.device, non_blocking=True)
    cap = torch.tensor(caps, dtype=torch.int64).to(base.device, non_blocking=True)
    return base, table, cap


def kv_compact_triton(
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
    lengths: torch.Tensor,
    span_start: torch.Tensor,
    span_len: torch.Tensor,
    similarity: torch.Tensor,
    threshold: float,
) -> None:
    """Compact every (layer, sample) with ``similarity < threshold`` in place, one launch.

    Args:
        keys, values: ``L`` tensors ``(B, H, T_l, D)``, one dtype, ``stride(-1) == 1``.
        lengths: ``(L, B)`` int32/int64 entries held per (layer, sample); decreased in place.
        span_start, span_len: ``(B,)`` int32/int64 visual span of each sample.
        similarity: ``(L, B)`` float32 with unit stride along B.
        threshold: a (layer, sample) is compacted when ``similarity < threshold``.
    """
    n_layers = len(keys)
    bsz, n_heads, _, d = keys[0].shape
    if n_layers == 0 or bsz == 0 or n_heads == 0:
        return
    base, table, cap = compact_table(keys, values)
    block_t, block_d, warps = _compact_blocks(d)
    # The lengths are decreased after the launch (stream order) so that every head's program
    # reads the original length.
    s, n = span_start[None, :].to(lengths.dtype), span_len[None, :].to(lengths.dtype)
    valid = (s >= 0) & (n > 0) & (s + n <= lengths) & (lengths <= cap[:, None])
    drop = (similarity < threshold) & valid
    K._kv_compact_kernel[(n_layers * bsz, n_heads)](
        base, table, cap, lengths, span_start, span_len, similarity, float(threshold),
        bsz, d, lengths.stride(0), similarity.stride(0),
        BLOCK_T=block_t, BLOCK_D=block_d, num_warps=warps,
    )  # fmt: skip
    lengths.sub_(torch.where(drop, n, 0))
