"""The Visual SharpV Triton kernels against the plain-PyTorch reference and a float64
evaluation of the SPEC's formulas (numerically hard inputs).

On CI these run under ``TRITON_INTERPRET=1`` on CPU tensors (see conftest.py); with
``SHARPV_TEST_COMPILED=1`` on a GPU machine the same tests run the compiled kernels.
Outputs are NaN-poisoned before every kernel runs (conftest), so an element a kernel
fails to write fails the comparison.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sharpv_kernels.visual.checks import MAGNITUDE_MESSAGE, NONFINITE_MESSAGE
from sharpv_kernels.visual.launch import (
    LaunchPlan,
    VisualInputError,
    visual_prune_triton,
    visual_scores_triton,
)
from sharpv_kernels.visual.naive import visual_scores_reference

from .visual_cases import (
    DTYPES,
    MODE_KW,
    SCORE_ATOL,
    SHAPE_IDS,
    SHAPES,
    check_result,
    expected_budget,
    make_features,
)

#: every block small, so that 130 channels take several slices and programs, 7 tokens several
#: row tiles and the frame/video loops several chunks: the launch shapes compiled runs use
SMALL_PLAN = LaunchPlan(
    norms_rows=2,
    norms_cols=32,
    norms_warps=4,
    scores_rows=4,
    scores_cols=16,
    scores_warps=2,
    gather_rows=2,
    gather_cols=16,
    gather_cols_per_prog=32,
    gather_warps=4,
    block_n=2,
    block_b=2,
    select_rows=2,
    rank_cols=4,
    stages=2,
)


def _run(x, cu, mode, kw, **extra):
    cu_t = torch.tensor(cu, dtype=torch.int32, device=x.device)
    return visual_prune_triton(x, cu_t, mode=mode, **kw, **extra)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_adaptive_matches_reference(shape, dtype, device):
    n, f, d, cu = shape
    x = make_features(n, f, d, dtype, device, seed=n * 31 + f)
    out = _run(x, cu, "adaptive", {})
    check_result(x, cu, out, "adaptive", {}, atol=SCORE_ATOL[dtype])


@pytest.mark.parametrize("metric", ["dissim", "cosine"])
@pytest.mark.parametrize("mode", list(MODE_KW))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", [SHAPES[3], SHAPES[4]], ids=[SHAPE_IDS[3], SHAPE_IDS[4]])
def test_modes_and_metrics(shape, dtype, mode, metric, device):
    n, f, d, cu = shape
    x = make_features(n, f, d, dtype, device, seed=7)
    kw = MODE_KW[mode]
    if metric == "cosine" and mode == "manual":
        kw = {"threshold": 1.0}
    out = _run(x, cu, mode, kw, metric=metric, w=0.5)
    check_result(x, cu, out, mode, kw, metric=metric, w=0.5, atol=SCORE_ATOL[dtype])


@pytest.mark.parametrize("mode", list(MODE_KW))
@pytest.mark.parametrize("kind", ["static", "slow", "zeros", "cut", "constant"])
def test_degenerate_data(kind, mode, device):
    n, f, d, cu = 6, 7, 16, [0, 4, 6]
    x = make_features(n, f, d, torch.float16, device, seed=3, kind=kind)
    out = _run(x, cu, mode, MODE_KW[mode], min_keep=2)
    check_result(x, cu, out, mode, MODE_KW[mode], min_keep=2)


def test_static_video_keeps_min_keep_after_first_frame(device):
    x = make_features(5, 7, 8, torch.float32, device, kind="static")
    out = _run(x, [0, 5], "adaptive", {}, min_keep=1)
    assert out[2].tolist()[1:] == [1, 1, 1, 1]
    assert out[3].tolist()[1:] == [0.0, 0.0, 0.0, 0.0]


def test_scene_cut_raises_the_cut_frames_ratio(device):
    x = make_features(6, 16, 32, torch.float32, device, kind="cut")
    r = _run(x, [0, 6], "adaptive", {})[3].cpu()
    cut = 6 - 6 // 2
    assert float(r[cut]) > 0.2 and float(r[cut - 1]) == 0.0 and float(r[cut + 1]) == 0.0


@pytest.mark.parametrize("min_keep", [0, 3])
def test_budget_keeps_exactly_the_promised_count(min_keep, device):
    n, f, d, cu = 9, 7, 8, [0, 1, 3, 9]
    x = make_features(n, f, d, torch.float32, device, seed=11, kind="slow")
    for budget in (0.05, 0.5, 1.0):
        counts = _run(x, cu, "budget", {"budget": budget}, min_keep=min_keep)[2].cpu()
        for a, b in zip(cu[:-1], cu[1:], strict=True):
            assert int(counts[a:b].sum()) == expected_budget(budget, b - a, f, min_keep)
        assert int(counts.min()) >= min_keep and int(counts.max()) <= f


@pytest.mark.parametrize("metric", ["dissim", "cosine"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_scores_match_reference(shape, metric, device):
    n, f, d, cu = shape
    x = make_features(n, f, d, torch.bfloat16, device, seed=5, kind="zeros" if n > 2 else "random")
    cu_t = torch.tensor(cu, dtype=torch.int32, device=device)
    got = visual_scores_triton(x, cu_t, w=2.0, metric=metric)
    want = visual_scores_reference(x.cpu(), torch.tensor(cu), w=2.0, metric=metric)
    for g, r in zip(got, want, strict=True):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g.cpu(), r, atol=5e-5, rtol=0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_features_raise(bad, device):
    x = make_features(3, 7, 8, torch.float32, device)
    x[1, 2, 3] = bad
    with pytest.raises(VisualInputError, match="NaN or Inf"):
        _run(x, [0, 3], "adaptive", {})


@pytest.mark.parametrize("mode", ["adaptive", "budget"])
@pytest.mark.parametrize("cu", [[0, 2], [1, 3], [0, 2, 2, 3], [0, 3, 2, 3]])
def test_malformed_cu_frames_found_on_device(cu, mode, device):
    """Frames outside every video get no offset: the gather must not write out of bounds."""
    x = make_features(3, 7, 8, torch.float32, device)
    with pytest.raises(VisualInputError, match="cu_frames"):
        _run(x, cu, mode, MODE_KW[mode])


def test_non_contiguous_frames(device):
    x = make_features(4, 7, 16, torch.float32, device)
    view = x[:, :, :10]  # strided rows, contiguous channels
    out = _run(view, [0, 4], "ratio", {"keep_ratio": 0.5})
    check_result(view, [0, 4], out, "ratio", {"keep_ratio": 0.5})


@pytest.mark.parametrize("mode", list(MODE_KW))
def test_multi_program_launch(mode, device):
    """Several channel slices and gather programs per frame, row tiles, chunked frame and
    video loops: the launch shapes compiled runs use, forced onto small inputs by a plan."""
    n, f, d, cu = 9, 7, 130, [0, 1, 4, 6, 9]
    x = make_features(n, f, d, torch.bfloat16, device, seed=13, kind="slow")
    out = _run(x, cu, mode, MODE_KW[mode], plan=SMALL_PLAN)
    check_result(x, cu, out, mode, MODE_KW[mode])
    cu_t = torch.tensor(cu, dtype=torch.int32, device=device)
    scores = visual_scores_triton(x, cu_t, w=1.0, metric="dissim", plan=SMALL_PLAN)
    want = scores64(x, cu, w=1.0, metric="dissim")
    for g, r in zip(scores, want, strict=True):
        torch.testing.assert_close(g.double().cpu(), r, atol=1e-5, rtol=0)


@pytest.mark.parametrize("budget", [0.1, 0.33, 0.6])
def test_budget_split_over_frame_chunks(budget, device):
    """The budget bisection and the largest-remainder ranks walk the video in chunks of two
    frames, with the frames of the video spread over several chunks."""
    n, f, d, cu = 9, 7, 16, [0, 2, 9]
    x = make_features(n, f, d, torch.float32, device, seed=21)
    x[3:5] = x[2:3]  # two static frames: r_t = 0, ties in the fractions
    kw = {"budget": budget}
    out = _run(x, cu, "budget", kw, plan=SMALL_PLAN)
    check_result(x, cu, out, "budget", kw)
    counts = out[2].cpu()
    for a, b in zip(cu[:-1], cu[1:], strict=True):
        assert int(counts[a:b].sum()) == expected_budget(budget, b - a, f)


# ---------------------------------------------------------------------------------------------
# numerically hard inputs, against float64 (SPEC Visual item 1: within 1e-5 for every input)


def scores64(x, cu, *, w, metric):
    """S, T, I, r of the SPEC's formulas evaluated in float64 on the CPU."""
    x = x.double().cpu()
    n, f, _ = x.shape

    def unit(v):
        nv = v.norm(dim=-1, keepdim=True)
        return torch.where(nv > 1e-12, v / nv.clamp_min(1e-300), 0.0), nv[..., 0] > 1e-12

    def score(a, b):
        (ua, za), (ub, zb) = unit(a), unit(b)
        if metric == "dissim":
            return (ua - ub).norm(dim=-1)
        return torch.where(za & zb, 1.0 - (ua * ub).sum(-1), 1.0)

    S = score(x, x.mean(dim=1, keepdim=True).expand_as(x))
    T = S.clone()
    starts = set(cu[:-1])
    for t in range(n):
        if t not in starts:
            T[t] = score(x[t], x[t - 1])
    r = (T.norm(dim=1) / (2 * f**0.5)).clamp(max=1.0)
    return S, T, T + w * S, r


def _check64(x, cu, *, w=1.0, metric="dissim", plan=None, atol=1e-5):
    cu_t = torch.tensor(cu, dtype=torch.int32, device=x.device)
    got = visual_scores_triton(x, cu_t, w=w, metric=metric, plan=plan)
    want = scores64(x, cu, w=w, metric=metric)
    for name, g, r in zip("STIr", got, want, strict=True):
        err = float((g.double().cpu() - r).abs().max())
        assert err <= atol, f"{name}: max error {err:.3g} > {atol}"
    return got


@pytest.mark.parametrize("metric", ["dissim", "cosine"])
def test_exact_rescalings_give_zero(metric, device):
    """Frames a, 64 a, a / 8: T = 0 and r = 0 exactly after the first frame."""
    a = make_features(1, 7, 48, torch.float32, device, seed=30)
    x = torch.cat([a, 64 * a, a / 8])
    S, T, _, r = _check64(x, [0, 3], metric=metric)
    assert T[1:].eq(0).all() and r[1:].eq(0).all()
    assert torch.equal(S[0], S[1]) and torch.equal(S[1], S[2])


@pytest.mark.parametrize("spread", [3, 6])
@pytest.mark.parametrize("metric", ["dissim", "cosine"])
def test_token_norms_spread_over_decades(spread, metric, device):
    """Token norms from 10^-spread to 10^spread, frames drifting slowly: the cancellation of
    ``(|a-b|^2 - (|a|-|b|)^2) / (|a||b|)`` made these errors reach 3e-2."""
    g = torch.Generator().manual_seed(31)
    n, f, d = 4, 16, 64
    base = torch.randn(1, f, d, generator=g)
    drift = base + 1e-3 * torch.randn(n, f, d, generator=g).cumsum(0)
    scale = torch.logspace(-spread, spread, f)[None, :, None]
    frame_scale = torch.tensor([1.0, 7.0, 0.01, 300.0])[:, None, None]  # norms change too
    x = (drift * scale * frame_scale).to(device)
    _check64(x, [0, n], metric=metric)
    _check64(x, [0, n], metric=metric, plan=SMALL_PLAN)


def test_near_parallel_drift_with_norm_change(device):
    g = torch.Generator().manual_seed(32)
    v = torch.randn(1, 9, 40, generator=g)
    eps = torch.logspace(-7, -1, 6)[:, None, None]
    x = (v + eps * torch.randn(6, 9, 40, generator=g)) * torch.logspace(0, 5, 6)[:, None, None]
    _check64(x.to(device), [0, 6])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_high_norm_outlier_tokens(dtype, device):
    x = make_features(3, 9, 32, torch.float32, device, seed=33)
    x[:, 4] *= 1e4  # attention-sink-like outliers dominate the frame mean
    x[1, 0] *= 1e-4
    _check64(x.to(dtype), [0, 3])


def test_identical_frames_and_zero_tokens_exactly_zero(device):
    x = make_features(4, 7, 24, torch.float16, device, seed=34)
    x[1] = x[0]
    x[:, 3] = 0.0  # a zero token everywhere: Dissim 0 against itself, cosine 1
    S, T, _, r = _check64(x, [0, 4])
    assert T[1].eq(0).all()
    _, Tc, _, _ = _check64(x, [0, 4], metric="cosine")
    assert Tc[1, 3] == 1.0 and Tc[1, :3].eq(0).all()


@pytest.mark.parametrize("kind", ["int64", "strided", "strided-int64"])
def test_cu_frames_int64_and_strided(kind, device):
    """A strided view is read with its strides (it was read as if contiguous)."""
    cu = [0, 2, 3, 6]
    dtype = torch.int64 if "int64" in kind else torch.int32
    if "strided" in kind:
        full = torch.tensor([0, 99, 2, 99, 3, 99, 6, 99], dtype=dtype, device=device)
        cu_t = full[::2]
    else:
        cu_t = torch.tensor(cu, dtype=dtype, device=device)
    x = make_features(6, 7, 16, torch.float32, device, seed=35)
    out = visual_prune_triton(x, cu_t, mode="ratio", keep_ratio=0.5)
    check_result(x, cu, out, "ratio", {"keep_ratio": 0.5})


@pytest.mark.parametrize("where", ["one-entry", "norm-only", "with-nan"])
def test_magnitude_overflow_is_reported(where, device):
    """Finite features whose float32 squared norm overflows: MAGNITUDE_MESSAGE; NaN wins."""
    x = make_features(3, 7, 64, torch.float32, device, seed=36)
    if where == "one-entry":
        x[1, 2, 5] = 3e19
    else:  # every entry fine, only the sum over the channels overflows
        x[1, 2] = 3e18
    if where == "with-nan":
        x[2, 0, 0] = float("nan")
    plan = SMALL_PLAN if where == "norm-only" else None
    msg = NONFINITE_MESSAGE if where == "with-nan" else MAGNITUDE_MESSAGE
    with pytest.raises(VisualInputError, match=msg.split("(")[0][:40]):
        _run(x, [0, 3], "adaptive", {}, plan=plan)
    with pytest.raises(VisualInputError, match=msg.split("(")[0][:40]):
        visual_scores_triton(x, torch.tensor([0, 3], device=device), w=1.0, metric="dissim")


def test_huge_w_is_an_error_naming_w(device):
    x = make_features(2, 7, 8, torch.float32, device, seed=37)
    with pytest.raises(VisualInputError, match="w = "):
        _run(x, [0, 2], "adaptive", {}, w=3e38)


def test_ratio_mode_uses_the_spec_slack(device):
    """0.1 * 30 keeps 3 tokens per frame (SPEC item 7: ceil(keep_ratio * f - 1e-9))."""
    x = make_features(2, 30, 8, torch.float32, device, seed=38)
    counts = _run(x, [0, 2], "ratio", {"keep_ratio": 0.1})[2]
    assert counts.tolist() == [3, 3]


def test_launch_plan_rejects_bad_blocks():
    with pytest.raises(ValueError, match="power of two"):
        LaunchPlan(norms_rows=3, norms_cols=32, norms_warps=4, scores_rows=4, scores_cols=16,
                   scores_warps=2, gather_rows=2, gather_cols=16, gather_cols_per_prog=32,
                   gather_warps=4)  # fmt: skip


def test_launch_plan_rejects_no_frames_per_scores_program():
    with pytest.raises(ValueError, match="scores_frames"):
        dataclasses.replace(SMALL_PLAN, scores_frames=0)


@pytest.mark.parametrize("frames", [1, 2, 3, 4])
@pytest.mark.parametrize(("d", "cols"), [(130, 16), (64, 64)], ids=["ragged-d", "even-d"])
def test_scores_frames_split_over_programs(frames, d, cols, device):
    """Pass 2 with ``scores_frames`` frames per program: chunks that start and end inside
    videos, at video boundaries, odd and even chunk lengths (two frames per iteration and a
    lone last frame), re-reading the frame before each chunk; columns a multiple of the tile
    (unmasked loads) or not. Scores against float64, the pruned tokens against the reference."""
    n, f, cu = 9, 7, [0, 1, 4, 6, 9]
    x = make_features(n, f, d, torch.bfloat16, device, seed=40 + frames)
    x[5] = x[4] * 4  # a static pair across a chunk boundary: T = 0 exactly
    plan = dataclasses.replace(SMALL_PLAN, scores_cols=cols, scores_frames=frames)
    S, T, _, r = _check64(x, cu, metric="cosine", plan=plan)
    assert T[5].eq(0).all() and r[5] == 0
    out = _run(x, cu, "adaptive", {}, plan=plan)
    check_result(x, cu, out, "adaptive", {})
