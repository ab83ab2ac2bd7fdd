"""The public ``visual_prune`` checks its arguments once and, in plain eager mode, runs the op's
body without the ``torch.library`` dispatch (a host-overhead saving, ``bench/NOTES.md``);
whenever something must see the op (tracing, a dispatch or function mode, autograd) it goes
through ``torch.ops.sharpv.visual_prune``. Both routes give the same result."""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import sharpv_kernels as sk
from sharpv_kernels.visual import ops


class _PassThrough(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


class _Seen(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def test_plain_eager_only_without_modes_tracing_or_grad():
    x = torch.zeros(2, 3, 4)
    assert ops.plain_eager(x)
    assert not ops.plain_eager(x.requires_grad_())
    with torch.no_grad():
        assert ops.plain_eager(x)
    y = torch.zeros(2, 3, 4)
    with _Seen():
        assert not ops.plain_eager(y)
    with _PassThrough():
        assert not ops.plain_eager(y)


def test_both_routes_agree_and_a_mode_sees_the_op():
    x = torch.randn(5, 6, 8, generator=torch.Generator().manual_seed(0))
    for cu in ([0, 2, 5], torch.tensor([0, 2, 5]), None):
        for kw in ({"mode": "budget", "budget": 0.4}, {"mode": "adaptive"}):
            fast = sk.visual_prune(x, cu, return_scores=True, **kw)
            with _Seen() as seen:
                slow = sk.visual_prune(x, cu, return_scores=True, **kw)
            assert "sharpv.visual_prune.default" in seen.ops
            for a, b in zip(fast, slow, strict=True):
                assert torch.equal(a, b)


def test_reused_scratch_gives_the_same_results_and_fresh_outputs(monkeypatch):
    """The launcher keeps its scratch buffers per thread and stream across calls: calls of
    other shapes in between, and a call on another thread, change nothing, and no output of
    one call shares storage with another call's."""
    import threading

    monkeypatch.setenv("SHARPV_BACKEND", "triton")
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(3, 8, 16, generator=g), torch.randn(2, 4, 16, generator=g)
    kw = {"mode": "adaptive", "return_scores": True}
    first = sk.visual_prune(x, [0, 1, 3], **kw)
    other = sk.visual_prune(y, **kw)
    seen: list = []
    worker = threading.Thread(target=lambda: seen.append(sk.visual_prune(y, **kw)))
    worker.start()
    worker.join()
    again = sk.visual_prune(x, [0, 1, 3], **kw)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
        assert a.numel() == 0 or a.data_ptr() != b.data_ptr()
    for a, b in zip(other, seen[0], strict=True):
        assert torch.equal(a, b)
