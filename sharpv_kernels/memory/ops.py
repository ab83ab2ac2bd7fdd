"""``torch.ops.sharpv.layer_similarity`` and ``torch.ops.sharpv.kv_compact_``.

CUDA tensors run the Triton kernels (``launch.py``); other devices run the vectorized PyTorch
path (``cpu.py``). Both ops mutate caller-provided tensors and return nothing, so their fake
implementations only check the arguments.
"""

from __future__ import annotations

import torch

from .checks import (
    check_compact_args,
    check_compact_values,
    check_similarity_args,
    check_similarity_values,
)
from .cpu import kv_compact_cpu, layer_similarity_cpu
from .launch import kv_compact_triton, layer_similarity_triton

__all__ = ["layer_similarity", "kv_compact_"]


@torch.library.custom_op("sharpv::layer_similarity", mutates_args=("out",))
def _layer_similarity_op(
    hidden: torch.Tensor,
    reference: torch.Tensor,
    span_start: torch.Tensor,
    span_len: torch.Tensor,
    out: torch.Tensor,
    layer: int,
) -> None:
    check_similarity_args(hidden, reference, span_start, span_len, out, layer)
    check_similarity_values(hidden.shape[1], span_start, span_len)
    layer_similarity_cpu(hidden, reference, span_start, span_len, out, layer)


@_layer_similarity_op.register_kernel("cuda")
def _layer_similarity_cuda(hidden, reference, span_start, span_len, out, layer):
    # No value check here: it would synchronise once per layer. The kernels clamp every span
    # to [0, S), so bad spans give wrong numbers but never touch memory outside the inputs.
    check_similarity_args(hidden, reference, span_start, span_len, out, layer)
    if hidden.stride(2) != 1:
        hidden = hidden.contiguous()
    if reference.stride(2) != 1:
        reference = reference.contiguous()
    if out.stride(1) != 1:
        raise ValueError("out must be contiguous in its last dimension")
    layer_similarity_triton(hidden, reference, span_start, span_len, out, layer)


@_layer_similarity_op.register_fake
def _layer_similarity_fake(hidden, reference, span_start, span_len, out, layer):
    check_similarity_args(hidden, reference, span_start, span_len, out, layer)


@torch.library.custom_op("sharpv::kv_compact_", mutates_args=("keys", "values", "lengths"))
def _kv_compact_op(
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
    lengths: torch.Tensor,
    span_start: torch.Tensor,
    span_len: torch.Tensor,
    similarity: torch.Tensor,
    threshold: float,
) -> None:
    check_compact_args(keys, values, lengths, span_start, span_len, similarity, threshold)
    check_compact_values(keys, lengths, span_start, span_len, similarity, threshold)
    kv_compact_cpu(keys, values, lengths, span_start, span_len, similarity, threshold)


@_kv_compact_op.register_kernel("cuda")
def _kv_compact_cuda(keys, values, lengths, span_start, span_len, similarity, threshold):
    check_compact_args(keys, values, lengths, span_start, span_len, similarity, threshold)
    check_compact_values(keys, lengths, span_start, span_len, similarity, threshold)
    kv_compact_triton(keys, values, lengths, span_start, span_len, similarity, threshold)


@_kv_compact_op.register_fake
def _kv_compact_fake(keys, values, lengths, span_start, span_len, similarity, threshold):
    check_compact_args(keys, values, lengths, span_start, span_len, similarity, threshold)


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
    empty span gives 1.0). No host synchronisation on CUDA.

    Args:
        hidden: ``(B, S, d)`` float32/float16/bfloat16, the hidden state entering layer ``layer``
            (before its input norm).
        reference: ``(B, S, d)`` float32/float16/bfloat16, the embeddings entering layer 0.
        span_start, span_len: ``(B,)`` int32/int64, each sample's visual rows.
        out: ``(L, B)`` float32, written in row ``layer`` only.
        layer: ``0 <= layer < L``.

    Raises:
        TypeError/ValueError naming the bad argument. On CPU, spans outside ``[0, S)`` too.
    """
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
    All arguments are checked (one device-to-host copy) before anything is written, so a call
    that raises leaves the cache intact.

    Args:
        keys, values: lists of ``L`` tensors ``(B, H, T_l, D)``, one float dtype, each
            contiguous in its last dimension (any other strides, e.g. views of a
            sequence-major buffer); the capacity ``T_l`` may differ per layer.
        lengths: ``(L, B)`` int32/int64 entries held, ``0 <= lengths[l, b] <= T_l``.
        span_start, span_len: ``(B,)`` int32/int64; the span of every (layer, sample) to compact
            must lie inside its entries.
        similarity: ``(L, B)`` float32 (e.g. from :func:`layer_similarity`).
        threshold: compaction when ``similarity < threshold`` (NaN similarity never compacts).
    """
    for name, seq in (("keys", keys), ("values", values)):
        if not isinstance(seq, (list, tuple)):
            raise TypeError(f"{name} must be a list of tensors, got {type(seq).__name__}")
    torch.ops.sharpv.kv_compact_(
        list(keys), list(values), lengths, span_start, span_len, similarity, float(threshold)
    )
