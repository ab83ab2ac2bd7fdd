"""The kernels under the interpreter with real-GPU launch plans (``SHARPV_SIM_SMS``) and the
programs run in forward, reversed and shuffled order (``SHARPV_SIM_ORDER``), against the
PyTorch backend. None of the kernels waits on another program: every order must give the
same result (atomics aside, which only add integers). Shapes are small but chosen so that
the planners cut them as a GPU would (several channel slices, frame chunks, row tiles);
``(2, 7, 640)`` float32 broke the pass-1 slot rule at 108/132/170 SMs before."""

from __future__ import annotations

import pytest
import torch

import sharpv_kernels as sk
from sharpv_kernels._gpu import program_order
from sharpv_kernels.ops.visual_prune.launch import plan_launch
from tests.backends import use_backend

ORDERS = ["reversed", "shuffled:1", "shuffled:7"]
SMS = [108, 132, 170]


@pytest.fixture
def g(sms, order, monkeypatch):
    """Plans for the GPU with ``sms`` SMs, programs in ``order``; a generator seeded by ``sms``."""
    monkeypatch.setenv("SHARPV_SIM_SMS", str(sms))
    monkeypatch.setenv("SHARPV_SIM_ORDER", order)
    return torch.Generator().manual_seed(sms)


def _visual(backend, x, cu, mode, **kw):
    with use_backend(backend):
        return sk.visual_prune(x, cu, mode=mode, return_scores=True, **kw)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("sms", SMS)
def test_visual_prune_real_plans_any_order(sms, order, g):
    x = torch.randn(2, 7, 640, generator=g)
    plan = plan_launch(tuple(x.shape), 4, sms)
    assert plan.norms_cols < 640 and plan.scores_cols < 640  # several channel slices
    cases = [("adaptive", {}, [0, 2]), ("budget", {"budget": 0.5}, [0, 1, 2])]
    if sms != 132:  # one mode per SM count and order; both at 132
        cases = [cases[(ORDERS.index(order) + SMS.index(sms)) % 2]]
    for mode, kw, cu in cases:
        want = _visual("torch", x, cu, mode, **kw)
        got = _visual("triton", x, cu, mode, **kw)
        torch.testing.assert_close(got.scores, want.scores, rtol=1e-5, atol=1e-5)
        for name in ("counts", "cu_tokens", "indices"):
            assert torch.equal(getattr(got, name).long(), getattr(want, name).long()), name
        assert torch.equal(got.tokens, want.tokens)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("sms", SMS)
def test_memory_ops_real_plans_any_order(sms, order, g):
    h, r = torch.randn(2, 24, 48, generator=g), torch.randn(2, 24, 48, generator=g)
    start, n = torch.tensor([3, 0]), torch.tensor([17, 24])
    outs = {}
    for backend in ("torch", "triton"):
        out = torch.zeros(2, 2)
        with use_backend(backend):
            sk.layer_similarity(h, r, start, n, out, 1)
        outs[backend] = out
    torch.testing.assert_close(outs["triton"], outs["torch"], rtol=1e-5, atol=1e-6)

    caches = {}
    for backend in ("torch", "triton"):
        g = torch.Generator().manual_seed(0)
        keys = [torch.randn(2, 3, 12, 8, generator=g) for _ in range(2)]
        values = [torch.randn(2, 3, 12, 8, generator=g) for _ in range(2)]
        lengths = torch.tensor([[12, 10], [11, 12]])
        sim = torch.tensor([[0.1, 0.9], [0.0, 0.1]])
        with use_backend(backend):
            sk.kv_compact_(keys, values, lengths, torch.tensor([2, 1]), torch.tensor([4, 5]),
                           sim, 0.2)  # fmt: skip
        caches[backend] = (keys, values, lengths)
    for got, want in zip(caches["triton"][0] + caches["triton"][1],
                         caches["torch"][0] + caches["torch"][1], strict=True):  # fmt: skip
        assert torch.equal(got, want)
    assert torch.equal(caches["triton"][2], caches["torch"][2])


def test_program_order_runs_every_program_once_in_that_order():
    import triton
    import triton.language as tl

    @triton.jit
    def record(out_ptr, seq_ptr):
        pid = tl.program_id(0) * 6 + tl.program_id(1) * 3 + tl.program_id(2)
        k = tl.atomic_add(seq_ptr, 1)
        tl.store(out_ptr + k, pid)

    runs = {}
    for spec in ("forward", "reversed", "shuffled:3"):
        out, seq = torch.full((24,), -1, dtype=torch.int32), torch.zeros(1, dtype=torch.int32)
        with program_order(spec):
            record[(4, 2, 3)](out, seq)
        runs[spec] = out.tolist()
    assert runs["forward"] == list(range(24))
    assert runs["reversed"] == list(range(23, -1, -1))
    assert sorted(runs["shuffled:3"]) == list(range(24)) and runs["shuffled:3"] != runs["forward"]


def test_bad_order_is_an_error(monkeypatch):
    monkeypatch.setenv("SHARPV_SIM_ORDER", "backwards")
    with use_backend("triton"), pytest.raises(ValueError, match="SHARPV_SIM_ORDER"):
        sk.visual_prune(torch.randn(2, 4, 16))
