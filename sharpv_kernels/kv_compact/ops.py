"""``torch.ops.sharpv.layer_similarity`` and ``torch.ops.sharpv.kv_compact_``.

One body per op picks the implementation with the backend switch
(:func:`sharpv_kernels._utils.select_backend`, ``SHARPV_BACKEND=auto|triton|torch``, read at
every call): the Triton kernels (``launch.py``) or the plain PyTorch path
(``torch_path.py``), as the Visual SharpV ops do. Both ops mutate caller-provided tensors and
return nothing, so their fake implementations only check the arguments. Every check runs
before the first write: an op that raises leaves its arguments unchanged.
"""

from __future__ import annotations

import torch

from .._utils import select_backend
from .checks import (
    check_compact_args,
    check_compact_values,
    check_similarity_args,
    check_similarity_values,
    check_written_memory,
)
from .launch import kv_compact_triton, layer_similarity_triton
from .torch_path import kv_compact_torch, layer_similarity_torch

__all__ = ["layer_similarity_op", "kv_compact_op"]


def _similarity_triton(hidden, reference, span_start, span_len, out, layer) -> None:
    """The kernels want unit channel stride, contiguous spans and a unit-stride ``out`` row."""
    if hidden.stride(2) != 1:
        hidden = hidden.contiguous()
    if reference.stride(2) != 1:
        reference = reference.contiguous()
    if out.stride(1) == 1:
        layer_similarity_triton(
            hidden, reference, span_start.contiguous(), span_len.contiguous(), out, layer
        )
        return
    row = out.new_empty((1, out.shape[1]))
    layer_similarity_triton(
        hidden, reference, span_start.contiguous(), span_len.contiguous(), row, 0
    )
    out[layer].copy_(row[0])


@torch.library.custom_op("sharpv::layer_similarity", mutates_args=("out",))
def layer_similarity_op(
    hidden: torch.Tensor,
    reference: torch.Tensor,
    span_start: torch.Tensor,
    span_len: torch.Tensor,
    out: torch.Tensor,
    layer: int,
) -> None:
    """See :func:`sharpv_kernels.layer_similarity`."""
    check_similarity_args(hidden, reference, span_start, span_len, out, layer)
    check_written_memory(out=out[layer])
    backend = select_backend(hidden.device)
    if hidden.device.type == "cpu":
        # free on the host; on CUDA it would synchronise once per layer, so there the
        # kernels clamp every span to [0, S) instead (bad spans: wrong numbers, no bad reads)
        check_similarity_values(hidden.shape[1], span_start, span_len)
    run = _similarity_triton if backend == "triton" else layer_similarity_torch
    run(hidden, reference, span_start, span_len, out, layer)


@layer_similarity_op.register_fake
def _layer_similarity_fake(hidden, reference, span_start, span_len, out, layer):
    check_similarity_args(hidden, reference, span_start, span_len, out, layer)


def _compact_triton(keys, values, lengths, span_start, span_len, similarity, threshold) -> None:
    """The kernel wants unit-stride rows of ``lengths``/``similarity`` and contiguous spans."""
    lens = lengths.contiguous()
    kv_compact_triton(
        keys, values, lens, span_start.contiguous(), span_len.contiguous(),
        similarity.contiguous(), threshold,
    )  # fmt: skip
    if lens is not lengths:
        lengths.copy_(lens)


@torch.library.custom_op("sharpv::kv_compact_", mutates_args=("keys", "values", "lengths"))
def kv_compact_op(
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
    lengths: torch.Tensor,
    span_start: torch.Tensor,
    span_len: torch.Tensor,
    similarity: torch.Tensor,
    threshold: float,
) -> None:
    """See :func:`sharpv_kernels.kv_compact_`."""
    check_compact_args(keys, values, lengths, span_start, span_len, similarity, threshold)
    check_written_memory(keys=keys, values=values, lengths=lengths)
    backend = select_backend(keys[0].device)
    if keys[0].device.type == "cpu" or backend != "triton":
        # free on the host; on CUDA it would copy to the host (a synchronisation) at every
        # call, so there the kernel skips every (layer, sample) whose span or length is
        # invalid instead (left as it is, its length unchanged)
        check_compact_values(keys, lengths, span_start, span_len, similarity, threshold)
    run = _compact_triton if backend == "triton" else kv_compact_torch
    run(keys, values, lengths, span_start, span_len, similarity, threshold)


@kv_compact_op.register_fake
def _kv_compact_fake(keys, values, lengths, span_start, span_len, similarity, threshold):
    check_compact_args(keys, values, lengths, span_start, span_len, similarity, threshold)
