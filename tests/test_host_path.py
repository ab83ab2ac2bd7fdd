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


def test_remembered_verdicts_never_accept_what_a_fresh_check_rejects():
    """Option and cu_frames verdicts are remembered per distinct value (and type): a value
    accepted once does not let an equal-hashing value of another type through, and a
    rejected value is rejected at every call, with the same message."""
    import pytest

    x = torch.randn(3, 4, 8)
    sk.visual_prune(x, [0, 1, 3], min_keep=1, w=1)
    for _ in range(2):
        with pytest.raises(TypeError, match="min_keep"):
            sk.visual_prune(x, [0, 1, 3], min_keep=True)
        with pytest.raises(TypeError, match="cu_frames"):
            sk.visual_prune(x, [0, True, 3])
        with pytest.raises(ValueError, match="w must be finite"):
            sk.visual_prune(x, w=float("nan"))
        with pytest.raises(ValueError, match="cu_frames must start at 0"):
            sk.visual_prune(x, [0, 3, 3])
        with pytest.raises(ValueError, match="cu_frames values must fit in int32"):
            sk.visual_prune(x, [0, 2**31, 3])
        with pytest.raises(TypeError, match="w must be a real number"):
            sk.visual_prune(x, w=[1.0])  # unhashable: checked without the memo
        with pytest.raises(ValueError, match="budget"):
            sk.visual_prune(x, mode="budget", budget=1.5)
    # the options reach the kernels as float/int whatever numbers were passed
    a = sk.visual_prune(x, mode="ratio", keep_ratio=1, w=2, threshold=1)
    b = sk.visual_prune(x, mode="ratio", keep_ratio=1.0, w=2.0, threshold=1.0)
    for u, v in zip(a[:5], b[:5], strict=True):
        assert torch.equal(u, v)


def test_host_cu_frames_tensor_is_never_handed_out_or_changed():
    """A list ``cu_frames`` becomes a tensor kept per distinct value in plain eager mode: no
    output shares its storage, it stays a normal tensor under inference mode, and a call
    under a dispatch mode gets a tensor of its own."""
    x = torch.randn(4, 5, 8)
    with torch.inference_mode():
        first = sk.visual_prune(x, [0, 1, 4], mode="budget", budget=0.5)
    again = sk.visual_prune(x, [0, 1, 4], mode="budget", budget=0.5)  # outside: still fine
    for u, v in zip(first[:5], again[:5], strict=True):
        assert torch.equal(u, v)
    from sharpv_kernels.ops.visual_prune.checks import _shared_host_tensor

    shared = _shared_host_tensor((0, 1, 4))
    assert not shared.is_inference() and shared.tolist() == [0, 1, 4]
    outs = [t for t in again if isinstance(t, torch.Tensor)]
    assert all(t.untyped_storage().data_ptr() != shared.untyped_storage().data_ptr()
               for t in outs)  # fmt: skip
    with _Seen():
        sk.visual_prune(x, [0, 1, 4], mode="budget", budget=0.5)
    assert shared.tolist() == [0, 1, 4]


def test_scores_only_when_asked_and_fresh_when_returned():
    """Without ``return_scores`` the importance is never returned (the launcher keeps it in
    scratch); with it, each call's scores are a tensor of their own, equal on every route."""
    x = torch.randn(4, 6, 8, generator=torch.Generator().manual_seed(3))
    plain = sk.visual_prune(x, [0, 2, 4])
    assert plain.scores is None
    a = sk.visual_prune(x, [0, 2, 4], return_scores=True)
    b = sk.visual_prune(x, [0, 2, 4], return_scores=True)
    assert a.scores.shape == (4, 6) and torch.equal(a.scores, b.scores)
    assert a.scores.data_ptr() != b.scores.data_ptr()
    for u, v in zip(plain[:5], a[:5], strict=True):
        assert torch.equal(u, v)
    op = torch.ops.sharpv.visual_prune(x, torch.tensor([0, 2, 4]), "adaptive", 1.0, 1.6,
                                       None, None, 1, "dissim", False)  # fmt: skip
    assert op[5].numel() == 0
    for u, v in zip(op[:5], a[:5], strict=True):
        assert torch.equal(u, v)


def test_visual_scores_routes_agree_and_a_mode_sees_the_op():
    x = torch.randn(4, 5, 8, generator=torch.Generator().manual_seed(1))
    for cu in ([0, 1, 4], torch.tensor([0, 1, 4]), None):
        fast = sk.visual_scores(x, cu, w=0.5)
        with _Seen() as seen:
            slow = sk.visual_scores(x, cu, w=0.5)
        assert "sharpv.visual_scores.default" in seen.ops
        for a, b in zip(fast, slow, strict=True):
            assert a.dtype == torch.float32 and torch.equal(a, b)
