"""Public Python API of Memory SharpV: per-layer visual similarity and KV-cache compaction.

Both functions call the ``torch.ops.sharpv`` operators (``ops.py``), so they work under
``torch.compile(fullgraph=True)``; ``SHARPV_BACKEND=auto|triton|torch`` picks the
implementation as for Visual SharpV.
"""

from __future__ import annotations

import torch

from . import ops as _ops  # noqa: F401  (registers torch.ops.sharpv.layer_similarity/kv_compact_)

__all__ = ["layer_similarity", "kv_compact_"]


def layer_similarity(
    hidden: torch.Tensor,
    reference: torch.Tensor,
    span_start: torch.Tensor,
    span_len: torch.Tensor,
    out: torch.Tensor,
    layer: int,
) -> None:
    """Per-sample visual similarity of one decoder layer, written into a device buffer.

    ``out[layer, b] = mean over i in [span_start[b], span_start[b] + span_len[b]) of
    cos(hidden[b, i], reference[b, i])``, accumulated in float32 (a zero row has cosine 0, an
    empty span gives 1.0), finite for every finite input (rows are scaled by their largest
    entry before the norm, so hidden states around 1e20 are fine). No host synchronisation
    on CUDA.

    Args:
        hidden: ``(B, S, d)`` float32/float16/bfloat16, the hidden state entering layer ``layer``
            (before its input norm); any strides.
        reference: ``(B, S, d)`` float32/float16/bfloat16, the embeddings entering layer 0.
        span_start, span_len: ``(B,)`` int32/int64, any strides, each sample's visual rows.
        out: ``(L, B)`` float32, any strides, written in row ``layer`` only.
        layer: ``0 <= layer < L``.

    Raises:
        TypeError/ValueError naming the bad argument (``out`` whose row aliases itself too);
        on CPU, spans outside ``[0, S)`` as well. ``out`` is then unchanged.

    Examples:
        >>> h = torch.randn(2, 10, 16)
        >>> out = torch.zeros(4, 2)
        >>> layer_similarity(h, 3.0 * h, torch.tensor([2, 0]), torch.tensor([5, 0]), out, 1)
        >>> [round(v, 4) for v in out[1].tolist()]
        [1.0, 1.0]
    """
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise TypeError(f"layer must be an int, got {type(layer).__name__}")
    torch.ops.sharpv.layer_similarity(hidden, reference, span_start, span_len, out, layer)


def kv_compact_(
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
    lengths: torch.Tensor,
    span_start: torch.Tensor,
    span_len: torch.Tensor,
    similarity: torch.Tensor,
    threshold: float,
) -> None:
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
    for name, seq in (("keys", keys), ("values", values)):
        if not isinstance(seq, (list, tuple)):
            raise TypeError(f"{name} must be a list of tensors, got {type(seq).__name__}")
    torch.ops.sharpv.kv_compact_(
        list(keys), list(values), lengths, span_start, span_len, similarity, float(threshold)
    )
