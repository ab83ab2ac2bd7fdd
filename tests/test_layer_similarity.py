"""``layer_similarity`` (SPEC, Memory SharpV items 2, 3 and 6): the same cases on every
backend against the plain-PyTorch reference, every argument form it accepts, and the errors
for the others.

Backend-parametrised tests run the public function (``torch.ops.sharpv.layer_similarity``)
with ``SHARPV_BACKEND=triton`` (Triton interpreter on CPU tensors, compiled kernels on CUDA
with ``SHARPV_TEST_COMPILED=1``), ``torch`` (the plain PyTorch path) and, where the
``backend`` fixture is used, ``native`` (which runs the PyTorch path: no native kernel).
"""

from __future__ import annotations

import pytest
import torch

from sharpv_kernels import layer_similarity
from sharpv_kernels.ops.layer_similarity import layer_similarity_reference

from .backends import (
    backend,  # noqa: F401  (fixture)
    use_backend,
)
from .memory_cases import PATHS, every_case, make_spans, small_args, strided_spans


def _sim(path, hidden, ref, s, n, out, layer):
    with use_backend(path):
        layer_similarity(hidden, ref, s, n, out, layer)


@every_case
def test_layer_similarity_matches_reference(device, path, dtype, spans):
    torch.manual_seed(0)
    s, n = make_spans(spans, device)
    bsz, seq, d = s.shape[0], 24, 72
    hidden = torch.randn(bsz, seq, d, device=device).to(dtype)
    ref = (0.7 * hidden.float() + 0.5 * torch.randn(bsz, seq, d, device=device)).to(dtype)
    ref[0, 1] = 0  # a zero reference row: cosine 0
    out = torch.full((3, bsz), -5.0, device=device)
    _sim(path, hidden, ref, s, n, out, 1)
    want = layer_similarity_reference(hidden, ref, s, n)
    torch.testing.assert_close(out[1], want, atol=2e-5, rtol=1e-5)
    assert torch.all(out[[0, 2]] == -5.0), "rows other than `layer` must stay untouched"
    assert torch.all(out[1][n == 0] == 1.0)


@pytest.mark.parametrize("path", PATHS)
def test_layer_similarity_identity_and_strides(device, path):
    torch.manual_seed(1)
    base = torch.randn(2, 40, 33, device=device)
    hidden = base[:, ::2]  # strided rows
    s = torch.tensor([0, 3], dtype=torch.int64, device=device)
    n = torch.tensor([20, 17], dtype=torch.int32, device=device)
    out = torch.zeros(1, 2, device=device)
    _sim(path, hidden, hidden, s, n, out, 0)
    torch.testing.assert_close(out[0], torch.ones(2, device=device), atol=1e-6, rtol=0)
    _sim(path, hidden, -hidden, s, n, out, 0)
    torch.testing.assert_close(out[0], -torch.ones(2, device=device), atol=1e-6, rtol=0)


def test_layer_similarity_bad_args(device):
    h = torch.randn(2, 8, 4, device=device)
    s = torch.zeros(2, dtype=torch.int32, device=device)
    n = torch.full((2,), 4, dtype=torch.int32, device=device)
    out = torch.zeros(3, 2, device=device)
    with pytest.raises(ValueError, match="reference"):
        layer_similarity(h, h[:, :4], s, n, out, 0)
    with pytest.raises(TypeError, match="hidden"):
        layer_similarity(h.long(), h, s, n, out, 0)
    with pytest.raises(TypeError, match="span_start"):
        layer_similarity(h, h, s.float(), n, out, 0)
    with pytest.raises(ValueError, match="span_len"):
        layer_similarity(h, h, s, n[:1], out, 0)
    with pytest.raises(TypeError, match="out"):
        layer_similarity(h, h, s, n, out.double(), 0)
    with pytest.raises(ValueError, match="layer"):
        layer_similarity(h, h, s, n, out, 3)
    with pytest.raises(ValueError, match="span_start"):  # mismatched devices
        layer_similarity(h, h, s.to("meta"), n, out, 0)
    with pytest.raises(ValueError, match="out"):
        layer_similarity(h, h, s, n, out.to("meta"), 0)
    if device == "cpu":
        with pytest.raises(ValueError, match="span"):
            layer_similarity(h, h, s, n + 5, out, 0)


# ---------------------------------------------------------------- argument forms


def test_layer_similarity_strided_arguments(backend):  # noqa: F811
    g = torch.Generator().manual_seed(5)
    h = torch.randn(3, 9, 2, 12, generator=g)[:, :, 0]  # rows and channels strided
    ref = torch.randn(12, 9, 3, generator=g).permute(2, 1, 0)  # channel stride != 1
    s, n = strided_spans()
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


def test_layer_similarity_aliased_out_raises_before_writing(backend):  # noqa: F811
    h = torch.randn(2, 6, 8)
    s, n = torch.tensor([0, 1]), torch.tensor([3, 4])
    out = torch.zeros(3, 1).expand(3, 2)  # the row's two entries share memory
    before = out.clone()
    with pytest.raises(ValueError, match="out"):
        layer_similarity(h, h, s, n, out, 1)
    assert torch.equal(out, before)


# ---------------------------------------------------------------- torch.library


def test_opcheck():
    h, s, n, *_ = small_args("cpu")
    out = torch.zeros(2, 2)
    torch.library.opcheck(torch.ops.sharpv.layer_similarity, (h, h * 2 + 1, s, n, out, 1))
