"""Visual SharpV scores on numerically hard inputs, on both backends, against a float64
evaluation of the same formulas (SPEC, Visual SharpV item 1: every score within 1e-5,
identical tokens exactly 0)."""

from __future__ import annotations

import pytest
import torch

from sharpv_kernels import visual_prune, visual_scores
from sharpv_kernels.ops.visual_prune.naive import visual_scores_reference

from .backends import backend  # noqa: F401  (fixture)
from .visual_cases import DTYPES

#: SPEC, Visual SharpV item 1
SPEC_ATOL = 1e-5


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rescaled(f: int = 9, d: int = 33) -> torch.Tensor:
    """Frames a, 64 a, a / 8 and a / 1024: exact power-of-two rescalings of one frame, in
    every dtype (entries of magnitude 0.5 .. 1.5, so no rescaled value is subnormal)."""
    g = _gen(1)
    a = (0.5 + torch.rand(1, f, d, generator=g)) * torch.randn(1, f, d, generator=g).sign()
    return torch.cat([a, 64 * a, a / 8, a / 1024])


def _norm_spread(f: int = 12, d: int = 40) -> torch.Tensor:
    """Token norms spread over 1e-3 .. 1e3 (a factor 1e6) inside every frame and across frames."""
    x = torch.randn(4, f, d, generator=_gen(2))
    x = x * torch.logspace(-3, 3, f)[None, :, None]
    return x * torch.logspace(-1, 1, 4)[:, None, None]


def _parallel_drift(f: int = 10, d: int = 48) -> torch.Tensor:
    """Each frame is the previous one, slightly turned (1e-3) and rescaled by 3.7 or 1 / 5."""
    frames = [torch.randn(f, d, generator=_gen(3))]
    for scale in (3.7, 0.2, 3.7):
        turn = 1e-3 * torch.randn(f, d, generator=_gen(len(frames) + 10))
        frames.append(scale * (frames[-1] + turn * frames[-1].abs().mean()))
    return torch.stack(frames)


def _outliers(f: int = 16, d: int = 24) -> torch.Tensor:
    """A few tokens 1e4 times larger than the rest: they dominate the frame mean."""
    x = torch.randn(3, f, d, generator=_gen(4))
    x[:, 3] *= 1e4
    x[1, 7] *= -3e3
    return x


def _identical(f: int = 7, d: int = 20) -> torch.Tensor:
    """Three identical frames, each with duplicated and zero tokens."""
    a = torch.randn(1, f, d, generator=_gen(5))
    a[0, 2] = a[0, 1]
    a[0, 4] = 0.0
    return a.expand(3, f, d).clone()


CASES = {
    "rescaled": _rescaled,
    "norm_spread": _norm_spread,
    "parallel_drift": _parallel_drift,
    "outliers": _outliers,
    "identical": _identical,
}


@pytest.mark.parametrize("metric", ["dissim", "cosine"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", list(CASES))
def test_scores_match_float64(backend, case, dtype, metric):  # noqa: F811
    x = CASES[case]().to(dtype)
    cu = [0, 2, x.shape[0]]
    got = visual_scores(x, cu, w=0.7, metric=metric)
    want = visual_scores_reference(x.double(), torch.tensor(cu), w=0.7, metric=metric)
    for name, g, r in zip("STIr", got, want, strict=True):
        assert g.dtype == torch.float32
        err = float((g.double() - r).abs().max())
        assert err <= SPEC_ATOL, (name, err)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rescaled_frames_have_zero_temporal_score(backend, dtype):  # noqa: F811
    x = _rescaled().to(dtype)
    S, T, I, r = visual_scores(x)
    assert torch.equal(T[1:], torch.zeros_like(T[1:]))
    assert r[1:].tolist() == [0.0] * (x.shape[0] - 1)
    # adaptive mode then keeps min_keep tokens in every rescaled frame, chosen by S alone
    res = visual_prune(x, min_keep=2, return_scores=True)
    assert res.counts[1:].tolist() == [2] * (x.shape[0] - 1)


@pytest.mark.parametrize("metric", ["dissim", "cosine"])
def test_identical_tokens_score_exactly_zero(backend, metric):  # noqa: F811
    x = _identical()
    S, T, I, r = visual_scores(x, [0, 1, 3], metric=metric)
    moving = torch.arange(T.shape[1]) != 4
    assert torch.equal(T[2, moving], torch.zeros_like(T[2, moving]))  # frame 2 repeats 1
    assert float(r[2]) == (0.0 if metric == "dissim" else float(T[2].norm() / (2 * 7**0.5)))
    # the zero token (SPEC 1: its unit vector is 0): against another zero token dissim is
    # 0 and cosine 1; against the non-zero mean, 1 (within rounding of ||unit(mean)||)
    assert float(T[2, 4]) == (0.0 if metric == "dissim" else 1.0)
    assert abs(float(S[0, 4]) - 1.0) <= 1e-6
