"""``visual_prune`` and its score pass ``visual_scores`` (SPEC, Visual SharpV): the public
API, the same cases on every backend (``torch``, ``triton``, ``native``; see
``backends.py``) against the plain-PyTorch reference, hard inputs against a float64
evaluation (item 1: every score within 1e-5, identical tokens exactly 0), property tests
(hypothesis), every argument form (items 9 and 11) and the ``torch.ops.sharpv`` ops.

The Triton kernels' own tests (launch plans, select/gather) are in ``test_visual_kernels.py``.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sharpv_kernels
from sharpv_kernels import (
    VisualPruneResult,
    budget_token_count,
    ratio_keep_count,
    visual_prune,
    visual_scores,
)
from sharpv_kernels.ops.visual_prune.checks import MAGNITUDE_MESSAGE, NONFINITE_MESSAGE
from sharpv_kernels.ops.visual_prune.naive import visual_prune_reference, visual_scores_reference

from .backends import (
    backend,  # noqa: F401  (fixture)
    use_backend,
)
from .visual_cases import (
    DTYPES,
    MODE_KW,
    SHAPE_IDS,
    SHAPES,
    check_result,
    expected_budget,
    make_features,
)

# ---------------------------------------------------------------- the public API and the ops


def _as_tuple(res: VisualPruneResult):
    return tuple(res[:5]) + (res.scores,)


def test_signature_is_the_documented_one():
    import inspect

    sig = inspect.signature(visual_prune)
    assert str(sig).startswith(
        "(features: 'torch.Tensor', cu_frames: 'torch.Tensor | Sequence[int] | None' = None, *, "
        "mode: 'str' = 'adaptive', w: 'float' = 1.0, threshold: 'float' = 1.6, "
        "keep_ratio: 'float | None' = None, budget: 'float | None' = None, "
        "min_keep: 'int' = 1, metric: 'str' = 'dissim', return_scores: 'bool' = False)"
    )
    assert VisualPruneResult._fields == (
        "tokens", "indices", "counts", "ratios", "cu_tokens", "scores"
    )  # fmt: skip


@pytest.mark.parametrize("metric", ["dissim", "cosine"])
@pytest.mark.parametrize("mode", list(MODE_KW))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_cpu_path_matches_reference(shape, dtype, mode, metric):
    n, f, d, cu = shape
    x = make_features(n, f, d, dtype, "cpu", seed=n + d)
    kw = dict(MODE_KW[mode])
    if mode == "manual" and metric == "cosine":
        kw["threshold"] = 1.0
    res = visual_prune(x, cu, mode=mode, metric=metric, return_scores=True, **kw)
    check_result(x, cu, _as_tuple(res), mode, kw, metric=metric)


@pytest.mark.parametrize("mode", list(MODE_KW))
@pytest.mark.parametrize("kind", ["static", "slow", "zeros", "cut", "constant"])
def test_cpu_path_degenerate(kind, mode):
    x = make_features(8, 7, 16, torch.bfloat16, "cpu", seed=1, kind=kind)
    cu = [0, 3, 8]
    res = visual_prune(x, cu, mode=mode, min_keep=2, return_scores=True, **MODE_KW[mode])
    check_result(x, cu, _as_tuple(res), mode, MODE_KW[mode], min_keep=2)


def test_cpu_path_without_scores_and_default_cu():
    x = make_features(4, 7, 8, torch.float32, "cpu")
    res = visual_prune(x)
    assert res.scores is None
    assert res.cu_tokens.tolist() == [0, res.tokens.shape[0]]
    ref = visual_prune_reference(x)
    assert torch.equal(res.indices, ref.indices)


@pytest.mark.parametrize("metric", ["dissim", "cosine"])
def test_visual_scores_cpu(metric):
    x = make_features(5, 7, 9, torch.float16, "cpu", kind="zeros")
    got = visual_scores(x, torch.tensor([0, 2, 5]), w=0.3, metric=metric)
    want = visual_scores_reference(x, torch.tensor([0, 2, 5]), w=0.3, metric=metric)
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g, r, atol=5e-5, rtol=0)


@pytest.mark.parametrize("shape", SHAPES[2:5], ids=SHAPE_IDS[2:5])
def test_reference_against_float64(shape):
    """The float32 reference against a float64 recomputation of the same SPEC."""
    n, f, d, cu = shape
    x = make_features(n, f, d, torch.float32, "cpu", seed=2)
    cu_t = torch.tensor(cu)
    got = visual_scores_reference(x, cu_t)
    want = visual_scores_reference(x.double(), cu_t)
    assert want[0].dtype == torch.float64
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g.double(), r, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- bad input


def _x(*shape, dtype=torch.float32):
    return torch.randn(*shape).to(dtype)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"features": [[1.0]]}, TypeError, "features"),
        ({"features": _x(3, 4)}, ValueError, "features must have 3 dimensions"),
        ({"features": torch.ones(2, 3, 4, dtype=torch.int32)}, TypeError, "features"),
        ({"features": _x(0, 3, 4)}, ValueError, "empty"),
        ({"features": _x(2, 0, 4)}, ValueError, "empty"),
        ({"features": _x(2, 3, 0)}, ValueError, "empty"),
        ({"cu_frames": [0, 1]}, ValueError, "cu_frames"),
        ({"cu_frames": [1, 2]}, ValueError, "cu_frames"),
        ({"cu_frames": [0, 1, 1, 2]}, ValueError, "cu_frames"),
        ({"cu_frames": [0]}, ValueError, "cu_frames"),
        ({"cu_frames": torch.tensor([0.0, 2.0])}, TypeError, "cu_frames"),
        ({"cu_frames": torch.tensor([[0, 2]])}, ValueError, "cu_frames"),
        ({"cu_frames": "0,2"}, TypeError, "cu_frames"),
        ({"cu_frames": torch.tensor([0, 2], device="meta")}, ValueError, "cu_frames is on meta"),
        ({"cu_frames": [0, 1, 2, 3]}, ValueError, "cu_frames"),
        ({"mode": "fast"}, ValueError, "mode"),
        ({"metric": "l1"}, ValueError, "metric"),
        ({"w": float("nan")}, ValueError, "w"),
        ({"w": "1"}, TypeError, "w"),
        ({"threshold": float("inf")}, ValueError, "threshold"),
        ({"min_keep": -1}, ValueError, "min_keep"),
        ({"min_keep": 4}, ValueError, "min_keep"),
        ({"min_keep": 1.0}, TypeError, "min_keep"),
        ({"mode": "ratio"}, ValueError, "keep_ratio"),
        ({"mode": "ratio", "keep_ratio": 0.0}, ValueError, "keep_ratio"),
        ({"mode": "ratio", "keep_ratio": 1.5}, ValueError, "keep_ratio"),
        ({"mode": "budget"}, ValueError, "budget"),
        ({"mode": "budget", "budget": -0.1}, ValueError, "budget"),
        ({"mode": "adaptive", "budget": 0.5}, ValueError, "budget"),
        ({"mode": "manual", "keep_ratio": 0.5}, ValueError, "keep_ratio"),
    ],
)
def test_bad_input_names_the_argument(kwargs, exc, match):
    args = {"features": _x(2, 3, 4)}
    args.update(kwargs)
    features = args.pop("features")
    with pytest.raises(exc, match=match):
        visual_prune(features, **args)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_nonfinite_features_are_an_error(bad, dtype):
    x = _x(3, 4, 5, dtype=dtype)
    x[2, 1, 0] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        visual_prune(x)
    with pytest.raises(ValueError, match="NaN or Inf"):
        visual_scores(x)


def test_float64_is_rejected_on_cuda_only():
    x = _x(2, 3, 4, dtype=torch.float64)
    assert visual_prune(x).tokens.dtype == torch.float64


# ----------------------------------------------------------------------------- torch.library


def _op_args(x, cu, return_scores=False):
    return (x, cu, "adaptive", 1.0, 1.6, None, None, 1, "dissim", return_scores)


@pytest.mark.parametrize("return_scores", [False, True])
def test_opcheck_visual_prune(return_scores):
    x = make_features(4, 7, 8, torch.float32, "cpu", seed=4)
    cu = torch.tensor([0, 1, 4], dtype=torch.int32)
    torch.library.opcheck(torch.ops.sharpv.visual_prune.default, _op_args(x, cu, return_scores))


def test_opcheck_visual_scores():
    x = make_features(4, 7, 8, torch.bfloat16, "cpu", seed=4)
    cu = torch.tensor([0, 4], dtype=torch.int32)
    torch.library.opcheck(torch.ops.sharpv.visual_scores.default, (x, cu, 1.0, "dissim"))


@pytest.mark.parametrize("compiler", ["aot_eager", "inductor"])
def test_compile_fullgraph(compiler):
    torch._dynamo.reset()

    def pooled_kept(x: torch.Tensor, cu: torch.Tensor):
        tokens, indices, counts, ratios, cu_tokens, _ = torch.ops.sharpv.visual_prune(
            *_op_args(x, cu)
        )
        return tokens.float().sum(0), indices.max(), counts, ratios, cu_tokens

    x = make_features(5, 7, 8, torch.float32, "cpu", seed=9)
    cu = torch.tensor([0, 2, 5], dtype=torch.int32)
    compiled = torch.compile(pooled_kept, fullgraph=True, backend=compiler)
    for got, want in zip(compiled(x, cu), pooled_kept(x, cu), strict=True):
        torch.testing.assert_close(got, want)


def test_package_exports():
    assert sharpv_kernels.visual_prune is visual_prune
    assert hasattr(torch.ops.sharpv, "visual_prune") and hasattr(torch.ops.sharpv, "visual_scores")


# ---------------------------------------------------------------- hard inputs

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


# ---------------------------------------------------------------- properties (hypothesis)


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


# ------------------------------------------------------------------ Visual SharpV: cu_frames

CU = [0, 2, 3, 6]


def _same(a, b, atol: float = 0.0) -> None:
    """Outputs equal; float32 scores and ratios within ``atol`` (another memory layout may
    sum in another order)."""
    for x, y in zip(a, b, strict=True):
        if x is None or y is None:
            assert x is y
        elif atol and x.dtype == torch.float32 and x.dim() and x.shape == y.shape:
            torch.testing.assert_close(x, y, atol=atol, rtol=0)
        else:
            assert torch.equal(x, y), (x, y)


def _cu_forms() -> dict[str, object]:
    wide = torch.tensor([[0, 9], [2, 9], [3, 9], [6, 9]])
    return {
        "list": CU,
        "tuple": tuple(CU),
        "int32": torch.tensor(CU, dtype=torch.int32),
        "int64": torch.tensor(CU, dtype=torch.int64),
        "strided": torch.tensor([0, -1, 2, -1, 3, -1, 6])[::2],
        "column": wide[:, 0],  # stride 2
        "reversed": torch.tensor(CU[::-1]).flip(0),
    }


def test_cu_frames_forms_agree(backend):  # noqa: F811
    x = make_features(6, 5, 8, torch.float32, "cpu", seed=3)
    want = visual_prune(x, CU, return_scores=True)
    for form, cu in _cu_forms().items():
        assert cu is not None, form
        _same(visual_prune(x, cu, return_scores=True), want)


@pytest.mark.parametrize(
    "cu",
    [
        [0, 2**32 + 2, 6],
        torch.tensor([0, 2**32 + 2, 6]),
        torch.tensor([0, 2**31, 6]),
        torch.tensor([0, -(2**32) + 2, 6]),
        [0, 2**70, 6],
    ],
    ids=["list", "int64", "int32max+1", "negative", "huge-list"],
)
def test_cu_frames_beyond_int32_is_a_value_error(backend, cu):  # noqa: F811
    x = make_features(6, 5, 8, torch.float32, "cpu")
    with pytest.raises(ValueError, match="cu_frames"):
        visual_prune(x, cu)
    with pytest.raises(ValueError, match="cu_frames"):
        visual_scores(x, cu)
    if isinstance(cu, torch.Tensor):  # the raw op too
        with pytest.raises(ValueError, match="cu_frames"):
            torch.ops.sharpv.visual_prune(
                x, cu, "adaptive", 1.0, 1.6, None, None, 1, "dissim", False
            )


def _feature_views(x: torch.Tensor) -> dict[str, torch.Tensor]:
    n, f, d = x.shape
    return {
        "contiguous": x,
        "channels-strided": x.transpose(1, 2).contiguous().transpose(1, 2),
        "frames-strided": torch.stack([x, x], dim=1)[:, 0],
        "tokens-major": x.transpose(0, 1).contiguous().transpose(0, 1),
        "every-other-channel": torch.stack([x, -x], dim=-1)[..., 0],
    }


@pytest.mark.parametrize("view", list(_feature_views(torch.zeros(1, 1, 1))))
@pytest.mark.parametrize("dtype", [torch.bfloat16], ids=str)
def test_feature_strides_agree(backend, view, dtype):  # noqa: F811
    x = make_features(6, 5, 8, dtype, "cpu", seed=4)
    v = _feature_views(x)[view]
    assert torch.equal(v, x)
    want = visual_prune(x, CU, return_scores=True)
    got = visual_prune(v, CU, return_scores=True)
    _same(got[1:], want[1:], atol=1e-6)
    assert torch.equal(got.tokens, x.reshape(-1, 8)[got.indices])


def test_expanded_features(backend):  # noqa: F811
    """Stride-0 frames (one frame repeated): a static video, T = 0 everywhere but frame 0."""
    x = make_features(1, 5, 8, torch.float32, "cpu").expand(4, 5, 8)
    S, T, I, r = visual_scores(x)
    assert torch.equal(T[1:], torch.zeros_like(T[1:])) and r[1:].tolist() == [0.0] * 3
    res = visual_prune(x, min_keep=2)
    assert torch.equal(res.tokens, x.reshape(20, 8)[res.indices])


@pytest.mark.parametrize(
    ("keep_ratio", "f"), [(0.1, 30), (0.3, 10), (0.35, 7), (0.14, 50)], ids=str
)
def test_ratio_count_is_the_vocab_formula(backend, keep_ratio, f):  # noqa: F811
    """SPEC item 7: ``k_t = clamp(ceil(keep_ratio f - 1e-9), min_keep, f)`` (0.1 x 30 keeps 3)."""
    x = make_features(2, f, 4, torch.float32, "cpu")
    res = visual_prune(x, mode="ratio", keep_ratio=keep_ratio)
    assert res.counts.tolist() == [ratio_keep_count(keep_ratio, f)] * 2
    assert ratio_keep_count(0.1, 30) == 3


# ------------------------------------------------------------ Visual SharpV: error messages


@pytest.mark.parametrize("w", [2e38, -2e38, 1e300])
def test_w_that_overflows_the_scores_names_w(backend, w):  # noqa: F811
    x = make_features(2, 3, 4, torch.float32, "cpu")
    with pytest.raises(ValueError, match="^w = "):
        visual_prune(x, w=w)
    with pytest.raises(ValueError, match="^w = "):
        visual_scores(x, w=w)
    visual_prune(x, w=1e38)  # |I| <= 2 + 2e38 is still finite


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_finite_features_whose_norms_overflow(backend, dtype):  # noqa: F811
    x = make_features(3, 4, 5, torch.float32, "cpu")
    x[1, 2] = 3e19  # finite, but its squared norm is beyond float32
    x = x.to(dtype)
    assert bool(torch.isfinite(x).all())
    for fn in (visual_prune, visual_scores):
        with pytest.raises(ValueError) as err:
            fn(x)
        assert str(err.value) == MAGNITUDE_MESSAGE


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_features(backend, bad):  # noqa: F811
    x = make_features(3, 4, 5, torch.float16, "cpu")
    x[2, 0, 1] = bad
    for fn in (visual_prune, visual_scores):
        with pytest.raises(ValueError, match="NaN or Inf") as err:
            fn(x)
        assert NONFINITE_MESSAGE in str(err.value)
