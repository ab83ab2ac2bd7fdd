"""Plain-PyTorch reference of ``layer_similarity``, written to be read.

It loops over samples and returns a new tensor instead of writing into ``out``; the tests
compare the Triton kernels and the vectorized CPU path against it.
"""

from __future__ import annotations

import torch

__all__ = ["layer_similarity_reference"]


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` (float32) divided by their L2 norm; rows of norm <= 1e-12 become zero."""
    norm = x.norm(dim=-1, keepdim=True)
    return torch.where(norm > 1e-12, x / norm.clamp_min(1e-12), torch.zeros_like(x))


def layer_similarity_reference(
    hidden: torch.Tensor,
    reference: torch.Tensor,
    span_start: torch.Tensor,
    span_len: torch.Tensor,
) -> torch.Tensor:
    """Mean cosine similarity over each sample's span (SPEC Memory SharpV item 2).

    Args:
        hidden: ``(B, S, d)`` floating, the hidden state entering a decoder layer.
        reference: ``(B, S, d)`` floating, the embeddings entering layer 0.
        span_start, span_len: ``(B,)`` integer; sample ``b``'s visual rows are
            ``[span_start[b], span_start[b] + span_len[b])``.

    Returns:
        ``(B,)`` float32: ``mean_i cos(hidden[b, i], reference[b, i])`` over the span, 1.0 for an
        empty span.
    """
    out = torch.ones(hidden.shape[0], dtype=torch.float32)
    for b in range(hidden.shape[0]):
        s, n = int(span_start[b]), int(span_len[b])
        if n == 0:
            continue
        h = _unit(hidden[b, s : s + n].float().cpu())
        r = _unit(reference[b, s : s + n].float().cpu())
        out[b] = (h * r).sum(dim=-1).mean()
    return out.to(hidden.device)
