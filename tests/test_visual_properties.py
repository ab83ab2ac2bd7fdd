"""Property tests (hypothesis) of Visual SharpV on both backends (``SHARPV_BACKEND``)."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sharpv_kernels import budget_token_count, visual_prune

from .backends import use_backend
from .visual_cases import expected_budget


@st.composite
def batches(draw, max_videos=4, max_frames=6, max_f=9, max_d=12):
    lengths = draw(st.lists(st.integers(1, max_frames), min_size=1, max_size=max_videos))
    f = draw(st.integers(1, max_f))
    d = draw(st.integers(1, max_d))
    seed = draw(st.integers(0, 2**16))
    dtype = draw(st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
    g = torch.Generator().manual_seed(seed)
    n = sum(lengths)
    x = torch.randn(n, f, d, generator=g)
    if draw(st.booleans()):  # slow motion: many near-ties and small ratios
        x = x[:1] + 0.01 * x
    cu = [0]
    for length in lengths:
        cu.append(cu[-1] + length)
    mode = draw(st.sampled_from(["adaptive", "manual", "ratio", "budget"]))
    kw = {
        "adaptive": {},
        "manual": {"threshold": draw(st.floats(0.0, 3.0))},
        "ratio": {"keep_ratio": draw(st.floats(0.01, 1.0))},
        "budget": {"budget": draw(st.floats(0.01, 1.0))},
    }[mode]
    min_keep = draw(st.integers(0, f))
    return x.to(dtype), cu, mode, kw, min_keep


def _check_invariants(x, cu, out, mode, kw, min_keep):
    tokens, indices, counts, ratios, cu_tokens = (t.cpu() for t in out[:5])
    n, f, d = x.shape
    assert int(counts.sum()) == indices.numel() == tokens.shape[0]
    assert bool(((ratios >= 0) & (ratios <= 1)).all())
    assert bool(((counts >= min_keep) & (counts <= f)).all())
    assert cu_tokens.tolist()[0] == 0 and cu_tokens.tolist()[-1] == indices.numel()
    for b in range(len(cu) - 1):
        seg = indices[cu_tokens[b] : cu_tokens[b + 1]]
        assert bool((seg[1:] > seg[:-1]).all())
        assert bool(((seg >= cu[b] * f) & (seg < cu[b + 1] * f)).all())
        if mode == "budget":
            assert seg.numel() == expected_budget(kw["budget"], cu[b + 1] - cu[b], f, min_keep)
    assert torch.equal(tokens, x.cpu().reshape(n * f, d)[indices])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_cpu_invariants_and_batch_equals_per_video(case):
    x, cu, mode, kw, min_keep = case
    res = visual_prune(x, cu, mode=mode, min_keep=min_keep, **kw)
    _check_invariants(x, cu, res, mode, kw, min_keep)
    # a batch equals the per-video calls concatenated
    f = x.shape[1]
    parts = [
        visual_prune(x[a:b], mode=mode, min_keep=min_keep, **kw)
        for a, b in zip(cu[:-1], cu[1:], strict=False)
    ]
    assert torch.equal(res.tokens, torch.cat([p.tokens for p in parts]))
    assert torch.equal(res.counts, torch.cat([p.counts for p in parts]))
    assert torch.equal(res.ratios, torch.cat([p.ratios for p in parts]))
    assert torch.equal(
        res.indices, torch.cat([p.indices + a * f for p, a in zip(parts, cu[:-1], strict=False)])
    )


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(max_videos=3, max_frames=3, max_f=9, max_d=8))
def test_triton_invariants_and_batch_equals_per_video(case):
    x, cu, mode, kw, min_keep = case
    with use_backend("triton"):
        out = visual_prune(x, torch.tensor(cu), mode=mode, min_keep=min_keep, **kw)
        _check_invariants(x, cu, out, mode, kw, min_keep)
        a, b = cu[-2], cu[-1]  # the last video alone gives its slice of the batch
        alone = visual_prune(x[a:b], mode=mode, min_keep=min_keep, **kw)
    s = int(out.cu_tokens[-2])
    assert torch.equal(out.tokens[s:], alone.tokens)
    assert torch.equal(out.counts[a:], alone.counts)
    assert torch.equal(out.ratios[a:], alone.ratios)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(1e-6, 1.0),
    st.integers(1, 64),
    st.integers(1, 5000),
    st.integers(0, 4),
)
def test_budget_count_is_the_vocab_formula(budget, n, f, min_keep):
    """SPEC item 7: the independent statement of the budget total is vocab's formula."""
    min_keep = min(min_keep, f)
    assert budget_token_count(budget, n, f, min_keep) == expected_budget(budget, n, f, min_keep)
