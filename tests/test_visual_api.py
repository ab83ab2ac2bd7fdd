"""The public ``visual_prune`` API, its vectorized CPU path and the ``torch.ops.sharpv`` ops."""

from __future__ import annotations

import pytest
import torch

import sharpv_kernels
from sharpv_kernels import VisualPruneResult, visual_prune, visual_scores
from sharpv_kernels.ops.visual_prune.naive import visual_prune_reference, visual_scores_reference

from .visual_cases import DTYPES, MODE_KW, SHAPE_IDS, SHAPES, check_result, make_features


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


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph(backend):
    torch._dynamo.reset()

    def pooled_kept(x: torch.Tensor, cu: torch.Tensor):
        tokens, indices, counts, ratios, cu_tokens, _ = torch.ops.sharpv.visual_prune(
            *_op_args(x, cu)
        )
        return tokens.float().sum(0), indices.max(), counts, ratios, cu_tokens

    x = make_features(5, 7, 8, torch.float32, "cpu", seed=9)
    cu = torch.tensor([0, 2, 5], dtype=torch.int32)
    compiled = torch.compile(pooled_kept, fullgraph=True, backend=backend)
    for got, want in zip(compiled(x, cu), pooled_kept(x, cu), strict=True):
        torch.testing.assert_close(got, want)


def test_package_exports():
    assert sharpv_kernels.visual_prune is visual_prune
    assert hasattr(torch.ops.sharpv, "visual_prune") and hasattr(torch.ops.sharpv, "visual_scores")
