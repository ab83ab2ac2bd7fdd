"""The contract of ``layer_similarity`` (SPEC, Memory SharpV items 2 and 6): its arguments,
as one typed tuple every backend takes, and their checks.

:func:`check_similarity_args` looks at shapes, dtypes and devices (it runs in the fake
implementation too); :func:`check_similarity_values` reads the spans (CPU only: on CUDA it
would synchronise once per layer). Every check runs before the op's first write.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from ..._utils import FLOAT_DTYPES, check_spans, check_tensor

__all__ = ["SimilarityArgs", "check_similarity_args", "check_similarity_values"]


class SimilarityArgs(NamedTuple):
    """The arguments of ``layer_similarity``, in order (:func:`sharpv_kernels.layer_similarity`):
    ``hidden``/``reference`` ``(B, S, d)`` float32/float16/bfloat16, any strides (the hidden
    state entering layer ``layer``, the embeddings entering layer 0); the spans ``(B,)``
    int32/int64, any strides (each sample's visual rows); ``out`` ``(L, B)`` float32, any
    strides, written in row ``layer`` only (``0 <= layer < L``)."""

    hidden: torch.Tensor
    reference: torch.Tensor
    span_start: torch.Tensor
    span_len: torch.Tensor
    out: torch.Tensor
    layer: int


def check_similarity_args(*args: Any) -> SimilarityArgs:
    """Shapes, dtypes and devices of ``layer_similarity``'s arguments (the fields of
    :class:`SimilarityArgs`, in order); returns them as a :class:`SimilarityArgs`."""
    a = SimilarityArgs(*args)
    hidden, out, layer = a.hidden, a.out, a.layer
    check_tensor("hidden", hidden, ndim=3, dtypes=FLOAT_DTYPES)
    dev = hidden.device
    check_tensor("reference", a.reference, ndim=3, dtypes=FLOAT_DTYPES, device=dev)
    if a.reference.shape != hidden.shape:
        raise ValueError(
            f"reference must have the shape of hidden {tuple(hidden.shape)}, "
            f"got {tuple(a.reference.shape)}"
        )
    if hidden.shape[2] == 0:
        raise ValueError("hidden must have a non-empty last dimension")
    check_spans(a.span_start, a.span_len, hidden.shape[0], dev)
    check_tensor("out", out, ndim=2, dtypes=(torch.float32,), device=dev)
    if out.shape[1] != hidden.shape[0]:
        raise ValueError(f"out must have shape (layers, {hidden.shape[0]}), got {tuple(out.shape)}")
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise TypeError(f"layer must be an int, got {type(layer).__name__}")
    if not 0 <= layer < out.shape[0]:
        raise ValueError(f"layer must be in [0, {out.shape[0]}), got {layer}")
    return a


def check_similarity_values(seq: int, span_start: torch.Tensor, span_len: torch.Tensor) -> None:
    """Every span must lie in ``[0, seq)`` (reads the spans: call it on CPU tensors only)."""
    s, n = span_start.long(), span_len.long()
    if bool(((s < 0) | (n < 0) | (s + n > seq)).any()):
        raise ValueError(f"span_start/span_len must describe spans inside [0, {seq})")
