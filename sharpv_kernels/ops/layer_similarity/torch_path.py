"""The plain PyTorch path of ``layer_similarity``: what CPU tensors run, and the eager GPU
baseline (``SHARPV_BACKEND=torch`` on CUDA).

Arguments are already validated (``checks.py``); index tensors may have any strides.
"""

from __future__ import annotations

from typing import Any

import torch

from ...vocab import ZERO_NORM_EPS
from .checks import SimilarityArgs

__all__ = ["layer_similarity_torch", "unit_rows_scaled"]


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


def layer_similarity_torch(*args: Any) -> None:
    """Write ``out[layer]`` (``(L, B)`` float32) = mean over each span of ``cos(h_i, v_i)``.

    ``args``: the fields of :class:`~.checks.SimilarityArgs`; ``hidden``/``reference``
    ``(B, S, d)`` floating, any strides; spans ``(B,)`` integer. A zero row has cosine 0, an
    empty span gives 1.0; finite for every finite input.
    """
    hidden, reference, span_start, span_len, out, layer = SimilarityArgs(*args)
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
