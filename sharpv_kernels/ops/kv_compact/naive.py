"""Plain-PyTorch reference of ``kv_compact_``, written to be read.

It loops over layers and samples and returns new tensors instead of writing in place; the
tests compare the Triton kernel and the vectorized CPU path against it.
"""

from __future__ import annotations

from typing import Any

import torch

from ..._utils import signature_of
from .checks import CompactArgs

__all__ = ["kv_compact_reference"]


@signature_of(CompactArgs)
def kv_compact_reference(
    *args: Any, **kwargs: Any
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """What ``kv_compact_`` leaves in the cache, computed out of place.

    Args:
        args, kwargs: the fields of :class:`~.checks.CompactArgs`: ``keys``/``values``
            ``L`` tensors ``(B, H, T_l, D)`` (sample ``b`` of layer ``l`` holds
            ``lengths[l, b]`` entries at the front of its ``T_l`` slots); ``lengths``
            ``(L, B)`` integer; ``span_start``/``span_len`` ``(B,)`` integer visual span of
            each sample; ``similarity`` ``(L, B)`` floating; (layer, sample) pairs with
            ``similarity < threshold`` lose their span.

    Returns:
        ``(keys, values, lengths)``: new tensors. In a compacted (layer, sample) the entries after
        the span move left over it (slots past the new length keep their old contents); every
        other slot is unchanged.
    """
    keys, values, lengths, span_start, span_len, similarity, threshold = CompactArgs(
        *args, **kwargs
    )
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
