"""Public Python API of ``kv_compact_`` (Memory SharpV: in-place KV-cache compaction).

It calls the ``torch.ops.sharpv.kv_compact_`` operator (``ops.py``), so it works under
``torch.compile(fullgraph=True)``; ``SHARPV_BACKEND=auto|triton|torch`` picks the
implementation. Its arguments are the fields of :class:`~.checks.CompactArgs`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..._utils import signature_of
from . import ops as _ops  # noqa: F401  (registers torch.ops.sharpv.kv_compact_)
from .checks import CompactArgs

__all__ = ["kv_compact_"]


@signature_of(CompactArgs)
def kv_compact_(*args: Any, **kwargs: Any) -> None:
    """Remove each sample's visual span from every layer whose similarity is under a threshold.

    In place, all layers in one launch on CUDA: for every (layer ``l``, sample ``b``) with
    ``similarity[l, b] < threshold`` and a non-empty span, the entries
    ``[s + n, lengths[l, b])`` move to ``[s, lengths[l, b] - n)`` in ``keys[l][b]`` and
    ``values[l][b]`` (``s = span_start[b]``, ``n = span_len[b]``) and ``lengths[l, b]``
    decreases by ``n``. The decision is read on the device; only the moving entries are touched.
    All arguments are checked (one device-to-host copy), including that no written tensor
    aliases itself or another, before anything is written, so a call that raises leaves every
    tensor it was given unchanged.

    Args:
        keys, values: lists of ``L`` tensors ``(B, H, T_l, D)``, one float dtype, each
            contiguous in its last dimension (any other strides, e.g. views of a
            sequence-major buffer); the capacity ``T_l`` may differ per layer.
        lengths: ``(L, B)`` int32/int64, any strides (not self-overlapping), entries held,
            ``0 <= lengths[l, b] <= T_l``.
        span_start, span_len: ``(B,)`` int32/int64, any strides; the span of every
            (layer, sample) to compact must lie inside its entries.
        similarity: ``(L, B)`` float32, any strides (e.g. from :func:`layer_similarity`).
        threshold: compaction when ``similarity < threshold`` (NaN similarity never compacts).

    Examples:
        >>> k = [torch.arange(6.0).view(1, 1, 6, 1)]
        >>> v = [k[0].clone()]
        >>> lengths = torch.tensor([[6]])
        >>> kv_compact_(k, v, lengths, torch.tensor([1]), torch.tensor([2]),
        ...             torch.tensor([[0.1]]), 0.2)
        >>> lengths.tolist(), k[0].flatten()[:4].tolist()
        ([[4]], [0.0, 3.0, 4.0, 5.0])
    """
    a = CompactArgs(*args, **kwargs)
    for name, seq in (("keys", a.keys), ("values", a.values)):
        if not isinstance(seq, (list, tuple)):
            raise TypeError(f"{name} must be a list of tensors, got {type(seq).__name__}")
    keys, values, *index, threshold = a
    torch.ops.sharpv.kv_compact_(list(keys), list(values), *index, float(threshold))
