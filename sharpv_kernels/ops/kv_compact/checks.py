"""The contract of ``kv_compact_`` (SPEC, Memory SharpV items 4 and 6): its arguments, as one
typed tuple every backend takes, and their checks.

:func:`check_compact_args` looks at shapes, dtypes and devices (it runs in the fake
implementation too); :func:`check_compact_values` reads the integer arguments (one
device-to-host copy). Index tensors (spans, lengths) and ``similarity`` may have any strides;
every check runs before the op's first write.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from ..._utils import FLOAT_DTYPES, INDEX_DTYPES, check_spans, check_tensor

__all__ = ["CompactArgs", "check_compact_args", "check_compact_values"]


class CompactArgs(NamedTuple):
    """The arguments of ``kv_compact_``, in order (see :func:`sharpv_kernels.kv_compact_`)."""

    #: the cache, written in place: ``L`` tensors ``(B, H, T_l, D)``, one float dtype, each
    #: with unit last stride (any other strides); the capacity ``T_l`` may differ per layer
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    #: ``(L, B)`` int32/int64, any strides: entries held per (layer, sample); decreased
    lengths: torch.Tensor
    #: ``(B,)`` int32/int64, any strides: each sample's visual span
    span_start: torch.Tensor
    span_len: torch.Tensor
    #: ``(L, B)`` float32, any strides; a (layer, sample) with ``similarity < threshold``
    #: loses its span (NaN similarity never does)
    similarity: torch.Tensor
    threshold: float


def check_compact_args(*args: Any) -> CompactArgs:
    """Shapes, dtypes and devices of ``kv_compact_``'s arguments (the fields of
    :class:`CompactArgs`, in order); returns them as a :class:`CompactArgs`."""
    a = CompactArgs(*args)
    keys, values, lengths, similarity, threshold = (
        a.keys, a.values, a.lengths, a.similarity, a.threshold
    )  # fmt: skip
    for name, seq in (("keys", keys), ("values", values)):
        if not isinstance(seq, (list, tuple)):
            raise TypeError(f"{name} must be a list of tensors, got {type(seq).__name__}")
    if len(keys) == 0:
        raise ValueError("keys must hold at least one layer")
    if len(values) != len(keys):
        raise ValueError(f"values must hold {len(keys)} layers like keys, got {len(values)}")
    k0 = check_tensor("keys[0]", keys[0], ndim=4, dtypes=FLOAT_DTYPES)
    dev, dtype = k0.device, k0.dtype
    bsz, heads, _, dim = k0.shape
    for i, (k, v) in enumerate(zip(keys, values, strict=True)):
        for name, t in ((f"keys[{i}]", k), (f"values[{i}]", v)):
            check_tensor(name, t, ndim=4, dtypes=(dtype,), device=dev)
            if (t.shape[0], t.shape[1], t.shape[3]) != (bsz, heads, dim):
                raise ValueError(
                    f"{name} must have shape ({bsz}, {heads}, T, {dim}) like keys[0], "
                    f"got {tuple(t.shape)}"
                )
            if t.stride(3) != 1 and dim > 1:
                raise ValueError(f"{name} must be contiguous in its last dimension")
        if v.shape != k.shape:
            raise ValueError(f"values[{i}] must have the shape of keys[{i}] {tuple(k.shape)}")
    n_layers = len(keys)
    check_tensor("lengths", lengths, ndim=2, dtypes=INDEX_DTYPES, device=dev)
    if tuple(lengths.shape) != (n_layers, bsz):
        raise ValueError(f"lengths must have shape ({n_layers}, {bsz}), got {tuple(lengths.shape)}")
    check_spans(a.span_start, a.span_len, bsz, dev)
    check_tensor("similarity", similarity, ndim=2, dtypes=(torch.float32,), device=dev)
    if tuple(similarity.shape) != (n_layers, bsz):
        raise ValueError(
            f"similarity must have shape ({n_layers}, {bsz}), got {tuple(similarity.shape)}"
        )
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a float, got {type(threshold).__name__}")
    if math.isnan(threshold):
        raise ValueError("threshold must not be NaN")
    return a


def check_compact_values(a: CompactArgs) -> None:
    """Lengths within capacity, spans non-negative, and the span of every (layer, sample) to
    compact inside its entries. One device-to-host copy."""
    keys, lengths, similarity = a.keys, a.lengths, a.similarity
    caps = torch.tensor([k.shape[2] for k in keys], dtype=torch.int64)
    host = torch.cat(
        [lengths.long(), a.span_start.long()[None], a.span_len.long()[None]], dim=0
    ).cpu()
    sim = similarity.cpu()
    n_layers = len(keys)
    lens, s, n = host[:n_layers], host[n_layers], host[n_layers + 1]
    if bool((lens < 0).any()) or bool((lens > caps[:, None]).any()):
        raise ValueError("lengths must be in [0, T_l] where T_l = keys[l].shape[2]")
    if bool(((s < 0) | (n < 0)).any()):
        raise ValueError("span_start and span_len must be non-negative")
    drop = (sim < a.threshold) & (n > 0)[None, :]
    if bool((drop & ((s + n)[None, :] > lens)).any()):
        raise ValueError(
            "span_start + span_len must be <= lengths[l, b] for every (layer, sample) to compact"
        )
