"""Plain-PyTorch references of the Memory SharpV operators, written to be read.

They loop over samples and layers and return new tensors instead of writing in place; the tests
compare the Triton kernels and the vectorized CPU path against them.
"""

from __future__ import annotations

import torch

__all__ = ["layer_similarity_reference", "kv_compact_reference"]


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


def kv_compact_reference(
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
    lengths: torch.Tensor,
    span_start: torch.Tensor,
    span_len: torch.Tensor,
    similarity: torch.Tensor,
    threshold: float,
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """What ``kv_compact_`` leaves in the cache, computed out of place.

    Args:
        keys, values: ``L`` tensors ``(B, H, T_l, D)``; sample ``b`` of layer ``l`` holds
            ``lengths[l, b]`` entries at the front of its ``T_l`` slots.
        lengths: ``(L, B)`` integer.
        span_start, span_len: ``(B,)`` integer visual span of each sample.
        similarity: ``(L, B)`` floating.
        threshold: (layer, sample) pairs with ``similarity < threshold`` lose their span.

    Returns:
        ``(keys, values, lengths)``: new tensors. In a compacted (layer, sample) the entries after
        the span move left over it (slots past the new length keep their old contents); every
        other slot is unchanged.
    """
    new_keys = [k.clone() for k in keys]
    new_values = [v.clone() for v in values]
    new_lengths = lengths.clone()
    for layer in range(len(keys)):
        for b in range(keys[layer].shape[0]):
            s, n = int(span_start[b]), int(span_len[b])
            length = int(lengths[layer, b])
            if n == 0 or not bool(similarity[layer, b] < threshold):
                continue
            kept = slice(s + n, length)  # the entries that follow the span
            dest = slice(s, length - n)
            new_keys[layer][b, :, dest] = keys[layer][b, :, kept]
            new_values[layer][b, :, dest] = values[layer][b, :, kept]
            new_lengths[layer, b] = length - n
    return new_keys, new_values, new_lengths
