"""Vectorized PyTorch path of the Memory SharpV operators (what CPU tensors run).

Arguments are already validated (``checks.py``).
"""

from __future__ import annotations

import torch

__all__ = ["layer_similarity_cpu", "kv_compact_cpu"]


def layer_similarity_cpu(
    hidden: torch.Tensor,
    reference: torch.Tensor,
    span_start: torch.Tensor,
    span_len: torch.Tensor,
    out: torch.Tensor,
    layer: int,
) -> None:
    """Write ``out[layer]`` (``(L, B)`` float32) = mean span cosine, as the Triton kernels.

    ``hidden``/``reference``: ``(B, S, d)`` floating; spans ``(B,)`` integer.
    """
    seq = hidden.shape[1]
    start = span_start.to(device=hidden.device, dtype=torch.int64)
    n = span_len.to(device=hidden.device, dtype=torch.int64)
    pos = torch.arange(seq, device=hidden.device)
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < (start + n)[:, None])
    h = hidden.float()
    r = reference.float()
    dot = (h * r).sum(-1)
    nh = h.square().sum(-1).sqrt()
    nr = r.square().sum(-1).sqrt()
    ok = inside & (nh > 1e-12) & (nr > 1e-12)
    cos = torch.where(ok, dot / torch.where(ok, nh * nr, torch.ones_like(nh)), 0.0)
    total = cos.sum(-1)
    res = torch.where(n > 0, total / n.clamp_min(1).to(torch.float32), 1.0)
    out[layer].copy_(res)


def kv_compact_cpu(
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
    lengths: torch.Tensor,
    span_start: torch.Tensor,
    span_len: torch.Tensor,
    similarity: torch.Tensor,
    threshold: float,
) -> None:
    """In-place compaction: the decision for all (layer, sample) pairs at once, then one block
    copy (vectorized over heads, rows and channels) per compacted pair; only the entries that
    move are read and written.

    ``keys``/``values``: ``L`` tensors ``(B, H, T_l, D)``; ``lengths`` ``(L, B)`` integer,
    decreased in place; spans ``(B,)`` integer; ``similarity`` ``(L, B)`` floating.
    """
    s = span_start.to(torch.int64).cpu()
    n = span_len.to(torch.int64).cpu()
    drop = ((similarity < threshold) & (span_len > 0)[None, :]).cpu()
    lens = lengths.to(torch.int64).cpu()
    for layer, b in drop.nonzero().tolist():
        start, count, length = int(s[b]), int(n[b]), int(lens[layer, b])
        moved = length - start - count
        if moved > 0:
            for t in (keys[layer], values[layer]):
                # clone: source and destination rows may overlap
                t[b, :, start : start + moved] = t[b, :, start + count : length].clone()
    lengths.sub_(torch.where(drop.to(lengths.device), span_len[None, :].to(lengths.dtype), 0))
