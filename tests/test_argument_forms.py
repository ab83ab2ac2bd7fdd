"""Every argument form the operators accept, and the errors for the ones they do not, on both
backends (SPEC, Visual SharpV items 9 and 11; Memory SharpV items 3 and 6)."""

from __future__ import annotations

import pytest
import torch

from sharpv_kernels import (
    kv_compact_,
    layer_similarity,
    ratio_keep_count,
    visual_prune,
    visual_scores,
)
from sharpv_kernels.ops.kv_compact import kv_compact_reference
from sharpv_kernels.ops.layer_similarity import layer_similarity_reference
from sharpv_kernels.ops.visual_prune.checks import MAGNITUDE_MESSAGE, NONFINITE_MESSAGE

from .backends import backend  # noqa: F401  (fixture)
from .visual_cases import make_features

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


# ------------------------------------------------------------------ Memory SharpV: strides


def _spans_strided():
    s = torch.tensor([[1, 7], [0, 7], [4, 7]], dtype=torch.int64)[:, 0]  # [1, 0, 4], stride 2
    n = torch.tensor([5, -1, 0, -1, 3], dtype=torch.int32)[::2]  # [5, 0, 3]
    return s, n


def test_layer_similarity_strided_arguments(backend):  # noqa: F811
    g = torch.Generator().manual_seed(5)
    h = torch.randn(3, 9, 2, 12, generator=g)[:, :, 0]  # rows and channels strided
    ref = torch.randn(12, 9, 3, generator=g).permute(2, 1, 0)  # channel stride != 1
    s, n = _spans_strided()
    out = torch.full((3, 4), -7.0).t()  # (4, 3) with stride (1, 4)
    layer_similarity(h, ref, s, n, out, 2)
    want = layer_similarity_reference(h, ref, s.contiguous(), n.contiguous())
    torch.testing.assert_close(out[2], want, atol=2e-6, rtol=0)
    assert bool((out[[0, 1, 3]] == -7.0).all())


@pytest.mark.parametrize("scale", [1e20, 1e30, 1e-10])
def test_layer_similarity_extreme_magnitudes(backend, scale):  # noqa: F811
    """Finite hidden states around 1e20 (squares beyond float32) give finite, accurate
    similarities (SPEC, Memory SharpV item 3)."""
    g = torch.Generator().manual_seed(6)
    h = torch.randn(2, 6, 16, generator=g)
    ref = h + 0.5 * torch.randn(2, 6, 16, generator=g)
    s = torch.tensor([0, 2])
    n = torch.tensor([6, 3])
    out = torch.zeros(1, 2)
    layer_similarity(h * scale, ref * scale, s, n, out, 0)
    hd, rd = h.double(), ref.double()
    cos = (hd * rd).sum(-1) / (hd.norm(dim=-1) * rd.norm(dim=-1))
    want = torch.stack([cos[0].mean(), cos[1, 2:5].mean()])
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out[0].double(), want, atol=1e-5, rtol=0)


def _cache(lengths_cap=10, n_layers=2, bsz=3):
    g = torch.Generator().manual_seed(7)
    keys = [torch.randn(bsz, 2, lengths_cap, 4, generator=g) for _ in range(n_layers)]
    values = [torch.randn(bsz, 2, lengths_cap, 4, generator=g) for _ in range(n_layers)]
    return keys, values


def test_kv_compact_strided_arguments(backend):  # noqa: F811
    keys, values = _cache()
    s, n = _spans_strided()
    lengths = torch.tensor([[10, 9], [8, 10], [10, 10]], dtype=torch.int64).t()  # (2, 3)
    sim = torch.tensor([[0.1, 0.5], [0.0, 0.1], [0.3, 0.05]]).t()  # (2, 3), stride (1, 2)
    want_k, want_v, want_len = kv_compact_reference(
        keys, values, lengths.contiguous(), s.contiguous(), n.contiguous(), sim, 0.2
    )
    kv_compact_(keys, values, lengths, s, n, sim, 0.2)
    assert torch.equal(lengths, want_len)
    for got, want in zip(keys + values, want_k + want_v, strict=True):
        assert torch.equal(got, want)


# --------------------------------------- Memory SharpV: an op that raises changes nothing


def _snapshot(*tensors):
    return [t.clone() for t in tensors]


def _unchanged(before, *tensors) -> None:
    for b, t in zip(before, tensors, strict=True):
        assert torch.equal(b, t)


@pytest.mark.parametrize("alias", ["lengths-stride0", "lengths-rows-alias", "keys-twice",
                                   "keys-values-same", "keys-overlap"])  # fmt: skip
def test_kv_compact_aliased_writes_raise_before_writing(backend, alias):  # noqa: F811
    keys, values = _cache()
    s = torch.tensor([1, 0, 4])
    n = torch.tensor([5, 2, 3])
    sim = torch.zeros(2, 3)
    lengths = torch.full((2, 3), 10, dtype=torch.int64)
    name = "lengths"
    if alias == "lengths-stride0":
        lengths = torch.full((3,), 10, dtype=torch.int64).expand(2, 3)
    elif alias == "lengths-rows-alias":
        lengths = torch.full((4,), 10, dtype=torch.int64).as_strided((2, 3), (1, 1))
    elif alias == "keys-twice":
        keys = [keys[0], keys[0]]
        name = "keys"
    elif alias == "keys-values-same":
        values = [values[0], keys[1]]
        name = "keys"
    else:
        buf = torch.randn(3, 2, 14, 4)
        keys = [buf[:, :, :10], buf[:, :, 4:]]
        name = "keys"
    before = _snapshot(*keys, *values, lengths)
    with pytest.raises(ValueError, match=name):
        kv_compact_(keys, values, lengths, s, n, sim, 0.2)
    _unchanged(before, *keys, *values, lengths)


@pytest.mark.parametrize("case", ["span-past-length", "length-past-capacity", "negative-span"])
def test_kv_compact_bad_values_raise_before_writing(backend, case):  # noqa: F811
    keys, values = _cache()
    s = torch.tensor([1, 0, 4])[::1]
    n = torch.tensor([5, 2, 3])
    lengths = torch.full((3, 2), 10, dtype=torch.int32).t()  # strided
    sim = torch.zeros(2, 3)
    if case == "span-past-length":
        lengths[1, 2] = 6  # 4 + 3 > 6, in a layer that compacts
    elif case == "length-past-capacity":
        lengths[0, 1] = 11
    else:
        s = torch.tensor([1, -1, 4])
    before = _snapshot(*keys, *values, lengths)
    with pytest.raises(ValueError, match="span|lengths"):
        kv_compact_(keys, values, lengths, s, n, sim, 0.2)
    _unchanged(before, *keys, *values, lengths)


def test_layer_similarity_aliased_out_raises_before_writing(backend):  # noqa: F811
    h = torch.randn(2, 6, 8)
    s, n = torch.tensor([0, 1]), torch.tensor([3, 4])
    out = torch.zeros(3, 1).expand(3, 2)  # the row's two entries share memory
    before = out.clone()
    with pytest.raises(ValueError, match="out"):
        layer_similarity(h, h, s, n, out, 1)
    assert torch.equal(out, before)
