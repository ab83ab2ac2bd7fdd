"""The plain PyTorch path of the Memory SharpV operators: what CPU tensors run, and the eager
GPU baseline (``SHARPV_BACKEND=torch`` on CUDA).

Arguments are already validated (``checks.py``); index tensors may have any strides.
"""

from __future__ import annotations

import torch

from ..vocab import ZERO_NORM_EPS

__all__ = ["layer_similarity_torch", "kv_compact_torch", "unit_rows_scaled"]


def unit_rows_scaled(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u, nonzero)``: the rows of ``x`` divided by their L2 norm, computed in float32 without
    overflow for any finite row, and which rows have norm > 1e-12 (the others give ``u = 0``).

    Each row is first divided by its largest magnitude, so the squares never overflow (rows
    around 1e20 give exact unit vectors instead of ``inf / inf``).

    Examples:
        >>> u, nz = unit_rows_scaled(torch.tensor([[3e20, 4e20], [0.0, 0.0]]))
        >>> u.tolist(), nz.tolist()
        ([[0.6000000238418579, 0.800000011920929], [0.0, 0.0]], [True, False])
    """
    x = x.float()
    peak = x.abs().amax(dim=-1, keepdim=True)
    y = x / torch.where(peak > 0, peak, 1.0)
    n = torch.linalg.vector_norm(y, dim=-1, keepdim=True)
    nonzero = (n * peak > ZERO_NORM_EPS)[..., 0]
    return torch.where(nonzero[..., None], y / n.clamp_min(1e-30), 0.0), nonzero


def layer_similarity_torch(
    hidden: torch.Tensor,
    reference: torch.Tensor,
    span_start: torch.Tensor,
    span_len: torch.Tensor,
    out: torch.Tensor,
    layer: int,
) -> None:
    """Write ``out[layer]`` (``(L, B)`` float32) = mean over each span of ``cos(h_i, v_i)``.

    ``hidden``/``reference``: ``(B, S, d)`` floating, any strides; spans ``(B,)`` integer. A
    zero row has cosine 0, an empty span gives 1.0; finite for every finite input.
    """
    seq = hidden.shape[1]
    start = span_start.to(device=hidden.device, dtype=torch.int64)
    n = span_len.to(device=hidden.device, dtype=torch.int64)
    pos = torch.arange(seq, device=hidden.device)
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < (start + n)[:, None])
    uh, _ = unit_rows_scaled(hidden)
    ur, _ = unit_rows_scaled(reference)
    cos = torch.where(inside, (uh * ur).sum(-1), 0.0)
    res = torch.where(n > 0, cos.sum(-1) / n.clamp_min(1).to(torch.float32), 1.0)
    out[layer].copy_(res)


def kv_compact_torch(
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
