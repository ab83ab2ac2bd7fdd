"""Argument checks of the Memory SharpV operators (SPEC, Memory SharpV item 6).

``check_*_args`` look at shapes, dtypes, devices and the memory the op will write (they run
in the fake implementations too); ``check_*_values`` read the integer arguments (one
device-to-host copy on CUDA). Index tensors (spans, lengths) and ``similarity`` may have any
strides; every check runs before the op's first write.
"""

from __future__ import annotations

import math

import torch

from .._utils import FLOAT_DTYPES, check_no_overlap, check_tensor

__all__ = [
    "INDEX_DTYPES",
    "check_similarity_args",
    "check_similarity_values",
    "check_compact_args",
    "check_compact_values",
    "check_written_memory",
]

INDEX_DTYPES = (torch.int32, torch.int64)


def _check_spans(span_start: object, span_len: object, bsz: int, device: torch.device) -> None:
    for name, t in (("span_start", span_start), ("span_len", span_len)):
        check_tensor(name, t, ndim=1, dtypes=INDEX_DTYPES, device=device)
        if t.shape[0] != bsz:
            raise ValueError(f"{name} must have shape ({bsz},), got {tuple(t.shape)}")


def check_similarity_args(
    hidden: object,
    reference: object,
    span_start: object,
    span_len: object,
    out: object,
    layer: object,
) -> None:
    """Shapes, dtypes and devices of ``layer_similarity``'s arguments."""
    check_tensor("hidden", hidden, ndim=3, dtypes=FLOAT_DTYPES)
    dev = hidden.device
    check_tensor("reference", reference, ndim=3, dtypes=FLOAT_DTYPES, device=dev)
    if reference.shape != hidden.shape:
        raise ValueError(
            f"reference must have the shape of hidden {tuple(hidden.shape)}, "
            f"got {tuple(reference.shape)}"
        )
    if hidden.shape[2] == 0:
        raise ValueError("hidden must have a non-empty last dimension")
    _check_spans(span_start, span_len, hidden.shape[0], dev)
    check_tensor("out", out, ndim=2, dtypes=(torch.float32,), device=dev)
    if out.shape[1] != hidden.shape[0]:
        raise ValueError(f"out must have shape (layers, {hidden.shape[0]}), got {tuple(out.shape)}")
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise TypeError(f"layer must be an int, got {type(layer).__name__}")
    if not 0 <= layer < out.shape[0]:
        raise ValueError(f"layer must be in [0, {out.shape[0]}), got {layer}")


def check_similarity_values(seq: int, span_start: torch.Tensor, span_len: torch.Tensor) -> None:
    """Every span must lie in ``[0, seq)`` (reads the spans: call it on CPU tensors only)."""
    s, n = span_start.long(), span_len.long()
    if bool(((s < 0) | (n < 0) | (s + n > seq)).any()):
        raise ValueError(f"span_start/span_len must describe spans inside [0, {seq})")


def check_compact_args(
    keys: object,
    values: object,
    lengths: object,
    span_start: object,
    span_len: object,
    similarity: object,
    threshold: object,
) -> None:
    """Shapes, dtypes and devices of ``kv_compact_``'s arguments."""
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
    _check_spans(span_start, span_len, bsz, dev)
    check_tensor("similarity", similarity, ndim=2, dtypes=(torch.float32,), device=dev)
    if tuple(similarity.shape) != (n_layers, bsz):
        raise ValueError(
            f"similarity must have shape ({n_layers}, {bsz}), got {tuple(similarity.shape)}"
        )
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a float, got {type(threshold).__name__}")
    if math.isnan(threshold):
        raise ValueError("threshold must not be NaN")


def check_compact_values(
    keys: list[torch.Tensor],
    lengths: torch.Tensor,
    span_start: torch.Tensor,
    span_len: torch.Tensor,
    similarity: torch.Tensor,
    threshold: float,
) -> None:
    """Lengths within capacity, spans non-negative, and the span of every (layer, sample) to
    compact inside its entries. One device-to-host copy."""
    caps = torch.tensor([k.shape[2] for k in keys], dtype=torch.int64)
    host = torch.cat([lengths.long(), span_start.long()[None], span_len.long()[None]], dim=0).cpu()
    sim = similarity.cpu()
    n_layers = len(keys)
    lens, s, n = host[:n_layers], host[n_layers], host[n_layers + 1]
    if bool((lens < 0).any()) or bool((lens > caps[:, None]).any()):
        raise ValueError("lengths must be in [0, T_l] where T_l = keys[l].shape[2]")
    if bool(((s < 0) | (n < 0)).any()):
        raise ValueError("span_start and span_len must be non-negative")
    drop = (sim < threshold) & (n > 0)[None, :]
    if bool((drop & ((s + n)[None, :] > lens)).any()):
        raise ValueError(
            "span_start + span_len must be <= lengths[l, b] for every (layer, sample) to compact"
        )


def check_written_memory(
    keys: list[torch.Tensor] | None = None,
    values: list[torch.Tensor] | None = None,
    lengths: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> None:
    """The tensors an op writes must not alias themselves or each other (a stride-0
    ``lengths``, two layers that are views of one slot range): ``ValueError`` naming them.
    Reads data pointers, so it runs in the real implementations, not the fake ones."""
    written = [(f"keys[{i}]", k) for i, k in enumerate(keys or [])]
    written += [(f"values[{i}]", v) for i, v in enumerate(values or [])]
    if lengths is not None:
        written.append(("lengths", lengths))
    if out is not None:
        written.append(("out", out))
    check_no_overlap(written)
