"""``torch.ops.sharpv.layer_similarity``: its registration and the one backend choice.

The op's body checks its arguments once (``checks.py``), then picks the implementation with
the backend switch (:func:`sharpv_kernels._utils.select_backend`,
``SHARPV_BACKEND=auto|triton|torch``, read at every call): the Triton kernels (``launch.py``)
or the plain PyTorch path (``torch_path.py``). The op writes into a caller-provided ``out``
and returns nothing, so its fake implementation only checks the arguments. Every check runs
before the first write: a call that raises leaves ``out`` unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

from ..._utils import check_written_memory, select_backend, signature_of
from .checks import SimilarityArgs, check_similarity_args, check_similarity_values
from .launch import layer_similarity_triton
from .torch_path import layer_similarity_torch

__all__ = ["layer_similarity_op"]


def _similarity_triton(a: SimilarityArgs) -> None:
    """The kernels want unit channel stride, contiguous spans and a unit-stride ``out`` row."""
    hidden = a.hidden if a.hidden.stride(2) == 1 else a.hidden.contiguous()
    reference = a.reference if a.reference.stride(2) == 1 else a.reference.contiguous()
    spans = (a.span_start.contiguous(), a.span_len.contiguous())
    if a.out.stride(1) == 1:
        layer_similarity_triton(hidden, reference, *spans, a.out, a.layer)
        return
    row = a.out.new_empty((1, a.out.shape[1]))
    layer_similarity_triton(hidden, reference, *spans, row, 0)
    a.out[a.layer].copy_(row[0])


@torch.library.custom_op("sharpv::layer_similarity", mutates_args=("out",))
@signature_of(SimilarityArgs)
def layer_similarity_op(*args: Any) -> None:
    """See :func:`sharpv_kernels.layer_similarity`."""
    a = check_similarity_args(*args)
    check_written_memory(out=a.out[a.layer])
    backend = select_backend(a.hidden.device)
    if a.hidden.device.type == "cpu":
        # free on the host; on CUDA it would synchronise once per layer, so there the
        # kernels clamp every span to [0, S) instead (bad spans: wrong numbers, no bad reads)
        check_similarity_values(a.hidden.shape[1], a.span_start, a.span_len)
    if backend == "triton":
        _similarity_triton(a)
    else:
        layer_similarity_torch(*a)


@layer_similarity_op.register_fake
def _layer_similarity_fake(*args: Any) -> None:
    check_similarity_args(*args)
