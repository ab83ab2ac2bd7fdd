"""``torch.ops.sharpv.kv_compact_``: its registration and the one backend choice.

The op's body checks its arguments once (``checks.py``), then picks the implementation with
the backend switch (:func:`sharpv_kernels._utils.select_backend`,
``SHARPV_BACKEND=auto|triton|torch``, read at every call): the Triton kernel (``launch.py``)
or the plain PyTorch path (``torch_path.py``). The op mutates caller-provided tensors and
returns nothing, so its fake implementation only checks the arguments. Every check runs
before the first write: a call that raises leaves its arguments unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

from ..._utils import check_written_memory, select_backend, signature_of
from .checks import CompactArgs, check_compact_args, check_compact_values
from .launch import kv_compact_triton
from .torch_path import kv_compact_torch

__all__ = ["kv_compact_op"]


def _compact_triton(a: CompactArgs) -> None:
    """The kernel wants unit-stride rows of ``lengths``/``similarity`` and contiguous spans."""
    lens = a.lengths.contiguous()
    index = (a.span_start.contiguous(), a.span_len.contiguous(), a.similarity.contiguous())
    kv_compact_triton(a.keys, a.values, lens, *index, a.threshold)
    if lens is not a.lengths:
        a.lengths.copy_(lens)


@torch.library.custom_op("sharpv::kv_compact_", mutates_args=("keys", "values", "lengths"))
@signature_of(CompactArgs)
def kv_compact_op(*args: Any) -> None:
    """See :func:`sharpv_kernels.kv_compact_`."""
    a = check_compact_args(*args)
    check_written_memory(keys=a.keys, values=a.values, lengths=a.lengths)
    backend = select_backend(a.keys[0].device)
    if a.keys[0].device.type == "cpu" or backend != "triton":
        # free on the host; on CUDA it would copy to the host (a synchronisation) at every
        # call, so there the kernel skips every (layer, sample) whose span or length is
        # invalid instead (left as it is, its length unchanged)
        check_compact_values(a)
    if backend == "triton":
        _compact_triton(a)
    else:
        kv_compact_torch(*a)


@kv_compact_op.register_fake
def _kv_compact_fake(*args: Any) -> None:
    check_compact_args(*args)
