"""Memory SharpV launchers at the kernel level: strided index tensors, huge hidden states,
several launch plans, vectorised and unaligned caches.

On CI the kernels run under ``TRITON_INTERPRET=1`` on CPU tensors (conftest.py); with
``SHARPV_TEST_COMPILED=1`` on a GPU machine the same tests run compiled. Similarities are
compared with a float64 evaluation.
"""

from __future__ import annotations

import pytest
import torch

from sharpv_kernels.ops.kv_compact.launch import CompactPlan, kv_compact_triton
from sharpv_kernels.ops.kv_compact.naive import kv_compact_reference
from sharpv_kernels.ops.layer_similarity.launch import (
    SimilarityPlan,
    layer_similarity_triton,
    plan_similarity,
)
from sharpv_kernels.ops.layer_similarity.naive import layer_similarity_reference

ATOL = 1e-5


def _sim64(h: torch.Tensor, r: torch.Tensor, starts: list[int], lens: list[int]) -> torch.Tensor:
    """Mean cosine over each span in float64 (zero rows have cosine 0; empty span -> 1)."""
    out = torch.ones(h.shape[0], dtype=torch.float64)
    for b, (s, n) in enumerate(zip(starts, lens, strict=True)):
        if n == 0:
            continue
        a, c = h[b, s : s + n].double().cpu(), r[b, s : s + n].double().cpu()
        na, nc = a.norm(dim=-1), c.norm(dim=-1)
        ok = (na > 1e-12) & (nc > 1e-12)
        cos = torch.where(ok, (a * c).sum(-1) / torch.where(ok, na * nc, 1.0), 0.0)
        out[b] = cos.mean()
    return out


def _strided(values: list[int], dtype: torch.dtype, device: str) -> torch.Tensor:
    """``values`` as a non-contiguous 1-D view (every other element of a longer tensor)."""
    full = torch.full((2 * len(values),), -7, dtype=dtype, device=device)
    full[::2] = torch.tensor(values, dtype=dtype)
    view = full[::2]
    assert not view.is_contiguous() or len(values) == 1
    return view


PLANS = [
    None,
    SimilarityPlan(block_t=2, block_d=16, warps=4, stages=2),
    SimilarityPlan(block_t=4, block_d=16, warps=4, stages=9),
]


@pytest.mark.parametrize("plan", PLANS, ids=["default", "small-tiles", "9-stages"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_similarity_strided_spans_and_out(plan, dtype, device):
    torch.manual_seed(1)
    starts, lens = [3, 0, 5], [6, 0, 4]
    h = torch.randn(3, 12, 40, dtype=dtype, device=device)
    r = torch.randn(3, 12, 40, dtype=dtype, device=device)
    h[0, 4] = 0.0  # a zero row: cosine 0
    out_full = torch.full((4, 6), float("nan"), device=device)
    out = out_full[:, ::2]  # strided along B
    layer_similarity_triton(h, r, _strided(starts, torch.int64, device),
                            _strided(lens, torch.int32, device), out, 2, plan=plan)  # fmt: skip
    want = _sim64(h, r, starts, lens)
    torch.testing.assert_close(out[2].double().cpu(), want, atol=ATOL, rtol=0)
    assert torch.isnan(out_full[:, 1::2]).all()  # nothing written between the strided slots
    assert torch.isnan(out[[0, 1, 3]]).all()  # only row ``layer``


@pytest.mark.parametrize("scale", [1e20, 3e38, 1e-20])
def test_similarity_finite_for_huge_and_tiny_hidden_states(scale, device):
    torch.manual_seed(2)
    h = torch.randn(1, 8, 64, device=device)
    r = torch.randn(1, 8, 64, device=device)
    h = h / h.abs().max() * scale  # entries up to ``scale``
    out = torch.zeros(1, 1, device=device)
    layer_similarity_triton(h, r, torch.tensor([1], device=device),
                            torch.tensor([6], device=device), out, 0,
                            plan=SimilarityPlan(block_t=4, block_d=16, warps=4))  # fmt: skip
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0].double().cpu(), _sim64(h, r, [1], [6]), atol=ATOL, rtol=0)


def test_similarity_parallel_rows_of_very_different_norms(device):
    """h = c * v with c spread over 1e-3..1e30: every cosine is exactly 1 up to rounding."""
    torch.manual_seed(3)
    v = torch.randn(1, 10, 96, device=device)
    c = torch.logspace(-3, 30, 10, device=device)[None, :, None]
    out = torch.zeros(1, 1, device=device)
    layer_similarity_triton(v * c, v, torch.tensor([0], device=device),
                            torch.tensor([10], device=device), out, 0)  # fmt: skip
    assert abs(float(out[0, 0]) - 1.0) < ATOL


#: (plan, channels): the GPU plans at LLaVA-OV-7B's benchmark shape on H100 (2-row tiles of
#: 1024 channels, 9 stages) and A100 (4 x 512, 8 stages) over several channel tiles, the last
#: one partial; the same depths with 16-channel tiles, and with tiles wider than the row.
GPU_PLANS = {
    "h100-benchmark-plan": (plan_similarity((1, 1946, 3584), 2, 132), 1100),
    "a100-benchmark-plan": (plan_similarity((1, 1946, 3584), 2, 108, 164 * 1024), 1100),
    "2-row-16-channels-9-stages": (SimilarityPlan(block_t=2, block_d=16, warps=4, stages=9), 37),
    "4-row-wide-tile-8-stages": (SimilarityPlan(block_t=4, block_d=64, warps=4, stages=8), 37),
}


@pytest.mark.parametrize("name", list(GPU_PLANS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_similarity_two_wave_plans(name, dtype, device):
    """The deep-pipeline plans against the reference and float64: odd sizes (partial row and
    channel tiles), a zero row, NaN-poisoned output."""
    plan, d = GPU_PLANS[name]
    assert plan.stages >= 8 and plan.block_t > 1
    torch.manual_seed(5)
    bsz, seq = 3, 23
    starts, lens = [0, 5, 21], [23, 11, 2]  # whole sequence, middle, last two rows
    h = torch.randn(bsz, seq, d, device=device)
    r = (0.6 * h + 0.8 * torch.randn(bsz, seq, d, device=device)).to(dtype)
    h = h.to(dtype)
    h[1, 7] = 0.0  # a zero row: cosine 0
    out = torch.full((3, bsz), float("nan"), device=device)
    s = torch.tensor(starts, device=device)
    n = torch.tensor(lens, dtype=torch.int32, device=device)
    layer_similarity_triton(h, r, s, n, out, 1, plan=plan)
    got = out[1].double().cpu()
    torch.testing.assert_close(got, _sim64(h, r, starts, lens), atol=ATOL, rtol=0)
    want = layer_similarity_reference(h.cpu(), r.cpu(), s.cpu(), n.cpu()).double()
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    assert torch.isnan(out[[0, 2]]).all()  # only row ``layer``


def _cache(n_layers, bsz, heads, cap, hd, dtype, device, offset=0):
    """Keys/values per layer; ``offset`` > 0 puts each layer at an odd element offset."""
    torch.manual_seed(4)
    keys, values = [], []
    for _ in range(n_layers):
        for store in (keys, values):
            flat = torch.randn(bsz * heads * cap * hd + offset, dtype=dtype, device=device)
            store.append(flat[offset:].view(bsz, heads, cap, hd))
    return keys, values


@pytest.mark.parametrize(
    "plan", [None, CompactPlan(block_t=2, block_d=16, warps=4)], ids=["default", "2-row-tiles"]
)
@pytest.mark.parametrize("offset", [0, 1], ids=["aligned", "odd-offset"])
def test_kv_compact_strided_index_tensors(plan, offset, device):
    n_layers, bsz, heads, cap, hd = 3, 2, 2, 11, 16
    keys, values = _cache(n_layers, bsz, heads, cap, hd, torch.float16, device, offset)
    starts, lens = [2, 4], [3, 5]
    lengths_full = torch.tensor([[11, 0, 10, 0], [9, 0, 11, 0], [11, 0, 11, 0]], device=device)
    lengths = lengths_full[:, ::2]  # strided along B
    sim_full = torch.tensor([[0.1, 9, 0.9, 9], [0.0, 9, 0.05, 9], [0.5, 9, 0.1, 9]],
                            device=device)  # fmt: skip
    sim = sim_full[:, ::2]
    s, n = _strided(starts, torch.int32, device), _strided(lens, torch.int64, device)
    want_k, want_v, want_len = kv_compact_reference(
        [k.cpu() for k in keys], [v.cpu() for v in values], lengths.cpu(),
        torch.tensor(starts), torch.tensor(lens), sim.cpu(), 0.2,
    )  # fmt: skip
    kv_compact_triton(keys, values, lengths, s, n, sim, 0.2, plan=plan)
    assert lengths.cpu().tolist() == want_len.tolist()
    for got, want in zip(keys + values, want_k + want_v, strict=True):
        assert torch.equal(got.cpu(), want)
    assert lengths_full[:, 1::2].eq(0).all()


def test_kv_compact_moves_only_the_suffix(device):
    """Slots before the span and past the old length are never written (NaN sentinels)."""
    keys, values = _cache(1, 1, 1, 12, 16, torch.float32, device)
    keys[0][0, 0, 10:] = float("nan")  # past the length: must stay NaN
    before = keys[0].clone()
    lengths = torch.tensor([[10]], device=device)
    s, n = torch.tensor([2], device=device), torch.tensor([3], device=device)
    kv_compact_triton(keys, values, lengths, s, n, torch.zeros(1, 1, device=device), 0.2)
    k = keys[0][0, 0].cpu()
    b = before[0, 0].cpu()
    assert torch.equal(k[:2], b[:2])
    assert torch.equal(k[2:7], b[5:10])
    assert torch.isnan(k[10:]).all()
    assert int(lengths) == 7
