"""The native kernel agrees with the PyTorch path on random varlen batches, and with itself
bit for bit whatever the thread count (frame ranges re-read the frame before them, so a
range boundary changes nothing)."""

from __future__ import annotations

import pytest
import torch

from sharpv_kernels import visual_prune

from .backends import use_backend
from .visual_cases import MODE_KW

#: (frames, f, d, cu_frames): several videos of different lengths, odd f and d
CASES = [(7, 9, 37, [0, 1, 4, 7]), (10, 13, 300, [0, 6, 10]), (5, 4, 16, [0, 5])]


def _run(x: torch.Tensor, cu: list[int], mode: str, threads: int):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return visual_prune(x, cu, mode=mode, return_scores=True, **MODE_KW[mode])
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"n{c[0]}-f{c[1]}-d{c[2]}")
@pytest.mark.parametrize("mode", list(MODE_KW))
def test_native_matches_torch_and_itself(dtype, case, mode):
    n, f, d, cu = case
    x = torch.randn(n, f, d, generator=torch.Generator().manual_seed(n * d)).to(dtype)
    with use_backend("torch"):
        want = _run(x, cu, mode, 1)
    with use_backend("native"):
        one, two = _run(x, cu, mode, 1), _run(x, cu, mode, 2)
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)  # 1 and 2 threads: the same bits
    torch.testing.assert_close(one.scores, want.scores, atol=1e-5, rtol=0)
    torch.testing.assert_close(one.ratios, want.ratios, atol=1e-5, rtol=0)
    assert torch.equal(one.indices, want.indices) and torch.equal(one.counts, want.counts)
    assert torch.equal(one.tokens, want.tokens) and torch.equal(one.cu_tokens, want.cu_tokens)
