"""Inputs shared by the Memory SharpV op tests (``test_layer_similarity.py``,
``test_kv_compact.py``)."""

from __future__ import annotations

import pytest
import torch

from .backends import MEMORY_BACKENDS

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
PATHS = MEMORY_BACKENDS

# (span_start, span_len) per sample for a sequence of 24 rows: start, middle, end (empty
# suffix), empty span
SPANS = {
    "start": ([0], [9]),
    "middle": ([6], [10]),
    "end": ([14], [10]),
    "mixed": ([0, 7, 20, 3], [5, 9, 4, 0]),
}


def make_spans(name: str, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    s, n = SPANS[name]
    return (
        torch.tensor(s, dtype=torch.int32, device=device),
        torch.tensor(n, dtype=torch.int64, device=device),
    )


def strided_spans():
    s = torch.tensor([[1, 7], [0, 7], [4, 7]], dtype=torch.int64)[:, 0]  # [1, 0, 4], stride 2
    n = torch.tensor([5, -1, 0, -1, 3], dtype=torch.int32)[::2]  # [5, 0, 3]
    return s, n


def snapshot(*tensors):
    return [t.clone() for t in tensors]


def unchanged(before, *tensors) -> None:
    for b, t in zip(before, tensors, strict=True):
        assert torch.equal(b, t)


def small_args(device):
    torch.manual_seed(4)
    h = torch.randn(2, 6, 8, device=device)
    s = torch.tensor([1, 0], dtype=torch.int32, device=device)
    n = torch.tensor([3, 6], dtype=torch.int32, device=device)
    lengths = torch.tensor([[6, 6], [6, 6]], dtype=torch.int32, device=device)
    keys = [torch.randn(2, 1, 8, 4, device=device) for _ in range(2)]
    values = [torch.randn(2, 1, 8, 4, device=device) for _ in range(2)]
    sim = torch.tensor([[1.0, 0.1], [0.1, 0.3]], device=device)
    return h, s, n, lengths, keys, values, sim


def every_case(test):
    """Run ``test(path, dtype, spans)`` on every backend, dtype and span layout."""
    test = pytest.mark.parametrize("spans", list(SPANS))(test)
    test = pytest.mark.parametrize("dtype", DTYPES)(test)
    return pytest.mark.parametrize("path", PATHS)(test)
