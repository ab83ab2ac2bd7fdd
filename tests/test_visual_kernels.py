"""The Visual SharpV Triton kernels against the plain-PyTorch reference.

On CI these run under ``TRITON_INTERPRET=1`` on CPU tensors (see conftest.py); with
``SHARPV_TEST_COMPILED=1`` on a GPU machine the same tests run the compiled kernels.
Outputs are NaN-poisoned before every kernel runs (conftest), so an element a kernel
fails to write fails the comparison.
"""

from __future__ import annotations

import pytest
import torch

from sharpv_kernels.visual.launch import (
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


@pytest.mark.parametrize("cu", [[0, 2], [1, 3], [0, 2, 2, 3], [0, 3, 2, 3]])
def test_malformed_cu_frames_found_on_device(cu, device):
    x = make_features(3, 7, 8, torch.float32, device)
    with pytest.raises(VisualInputError, match="cu_frames"):
        _run(x, cu, "adaptive", {})


def test_non_contiguous_frames(device):
    x = make_features(4, 7, 16, torch.float32, device)
    view = x[:, :, :10]  # strided rows, contiguous channels
    out = _run(view, [0, 4], "ratio", {"keep_ratio": 0.5})
    check_result(view, [0, 4], out, "ratio", {"keep_ratio": 0.5})


@pytest.mark.parametrize("mode", list(MODE_KW))
def test_multi_program_launch(mode, device, monkeypatch):
    """Several channel splits and channel blocks per frame, and frame/video loops of several
    chunks: the launch shapes compiled runs use, forced onto the interpreter's small inputs."""
    from sharpv_kernels.visual import launch

    monkeypatch.setitem(launch.INTERPRET_LAUNCH, "n_split", 3)
    monkeypatch.setitem(launch.INTERPRET_LAUNCH, "n_dprog", 2)
    monkeypatch.setitem(launch.INTERPRET_LAUNCH, "max_block_n", 2)
    monkeypatch.setitem(launch.INTERPRET_LAUNCH, "max_block_b", 2)
    n, f, d, cu = 9, 7, 130, [0, 1, 4, 6, 9]
    x = make_features(n, f, d, torch.bfloat16, device, seed=13, kind="slow")
    out = _run(x, cu, mode, MODE_KW[mode])
    check_result(x, cu, out, mode, MODE_KW[mode])
    scores = visual_scores_triton(x, torch.tensor(cu, dtype=torch.int32, device=device), w=1.0,
                                  metric="dissim")  # fmt: skip
    want = visual_scores_reference(x.cpu(), torch.tensor(cu), w=1.0, metric="dissim")
    for g, r in zip(scores, want, strict=True):
        torch.testing.assert_close(g.cpu(), r, atol=5e-5, rtol=0)


@pytest.mark.parametrize("budget", [0.1, 0.33, 0.6])
def test_budget_split_over_frame_chunks(budget, device, monkeypatch):
    """The budget bisection and the largest-remainder ranks walk the video in chunks of two
    frames, with the frames of the video spread over several chunks."""
    from sharpv_kernels.visual import launch

    monkeypatch.setitem(launch.INTERPRET_LAUNCH, "max_block_n", 2)
    n, f, d, cu = 9, 7, 16, [0, 2, 9]
    x = make_features(n, f, d, torch.float32, device, seed=21)
    x[3:5] = x[2:3]  # two static frames: r_t = 0, ties in the fractions
    kw = {"budget": budget}
    out = _run(x, cu, "budget", kw)
    check_result(x, cu, out, "budget", kw)
    counts = out[2].cpu()
    for a, b in zip(cu[:-1], cu[1:], strict=True):
        assert int(counts[a:b].sum()) == expected_budget(budget, b - a, f)
