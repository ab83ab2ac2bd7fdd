"""The plain PyTorch path of ``kv_compact_``: what CPU tensors run, and the eager GPU baseline
(``SHARPV_BACKEND=torch`` on CUDA).

Arguments are already validated (``checks.py``); index tensors may have any strides.
"""

from __future__ import annotations

from typing import Any

import torch

from .checks import CompactArgs

__all__ = ["kv_compact_torch"]


def kv_compact_torch(*args: Any) -> None:
    """In-place compaction: the decision for all (layer, sample) pairs at once, then one block
    copy (vectorized over heads, rows and channels) per compacted pair; only the entries that
    move are read and written.

    ``args``: the fields of :class:`~.checks.CompactArgs`: ``keys``/``values`` ``L`` tensors
    ``(B, H, T_l, D)``; ``lengths`` ``(L, B)`` integer, decreased in place; spans ``(B,)``
    integer; ``similarity`` ``(L, B)`` floating.
    """
    keys, values, lengths, span_start, span_len, similarity, threshold = CompactArgs(*args)
    s = span_start.to(torch.int64).cpu()
    n = span_len.to(torch.int64).cpu()
    drop = (similarity.cpu() < threshold) & (n > 0)[None, :]
    lens = lengths.to(torch.int64).cpu()
    for layer, b in drop.nonzero().tolist():
        start, count, length = int(s[b]), int(n[b]), int(lens[layer, b])
        moved = length - start - count
        if moved > 0:
            for t in (keys[layer], values[layer]):
                # clone: source and destination rows may overlap
                t[b, :, start : start + moved] = t[b, :, start + count : length].clone()
    lengths.sub_(torch.where(drop, n[None, :], 0).to(device=lengths.device, dtype=lengths.dtype))
