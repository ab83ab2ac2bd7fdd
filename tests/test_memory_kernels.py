"""Memory SharpV ops against the plain-PyTorch references, on both backends.

Each test runs the public functions (``torch.ops.sharpv.*``) with ``SHARPV_BACKEND=triton``
(Triton interpreter on CPU tensors, compiled kernels on CUDA with
``SHARPV_TEST_COMPILED=1``) and ``SHARPV_BACKEND=torch`` (the plain PyTorch path).
"""

from __future__ import annotations

import pytest
import torch

from sharpv_kernels import kv_compact_, layer_similarity
from sharpv_kernels.ops.kv_compact import kv_compact_reference
from sharpv_kernels.ops.layer_similarity import layer_similarity_reference

from .backends import MEMORY_BACKENDS, use_backend

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
PATHS = MEMORY_BACKENDS

# (span_start, span_len) per sample for a sequence of 24 rows: start, middle, end (empty
# suffix), empty span
SPANS = {
    "start": ([0], [9]),
    "middle": ([6], [10]),
    "end": ([14], [10]),
    "mixed": ([0, 7, 20, 3], [5, 9, 4, 0]),
}


def _spans(name: str, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    s, n = SPANS[name]
    return (
        torch.tensor(s, dtype=torch.int32, device=device),
        torch.tensor(n, dtype=torch.int64, device=device),
    )


# ---------------------------------------------------------------------------------------------
# layer_similarity


def _sim(path, hidden, ref, s, n, out, layer):
    with use_backend(path):
        layer_similarity(hidden, ref, s, n, out, layer)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spans", list(SPANS))
def test_layer_similarity_matches_reference(device, path, dtype, spans):
    torch.manual_seed(0)
    s, n = _spans(spans, device)
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


# ---------------------------------------------------------------------------------------------
# kv_compact_


def _cache(device, dtype, lengths, caps, heads=2, dim=8, seq_major=False):
    """Per-layer (B, H, T_l, D) keys/values; slots past each length hold NaN."""
    bsz = lengths.shape[1]
    keys, values = [], []
    for layer, cap in enumerate(caps):
        kv = []
        for _ in range(2):
            if seq_major:  # (T, B, H, D) storage seen as (B, H, T, D), like CompactingCache
                t = torch.randn(cap, bsz, heads, dim, device=device).to(dtype).permute(1, 2, 0, 3)
            else:
                t = torch.randn(bsz, heads, cap, dim, device=device).to(dtype)
            for b in range(bsz):
                t[b, :, int(lengths[layer, b]) :] = float("nan")
            kv.append(t)
        keys.append(kv[0])
        values.append(kv[1])
    return keys, values


def _compact(path, keys, values, lengths, s, n, sim, thr):
    with use_backend(path):
        kv_compact_(keys, values, lengths, s, n, sim, thr)


def _assert_same(got, want):
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spans", list(SPANS))
def test_kv_compact_matches_reference(device, path, dtype, spans):
    torch.manual_seed(2)
    s, n = _spans(spans, device)
    bsz = s.shape[0]
    caps = [24, 32, 28]
    # every sample's entries end at 24 or earlier; the "end" spans end exactly at their length
    lengths = torch.tensor([[24, 24, 24, 24][:bsz], [24, 22, 24, 20][:bsz], [24, 24, 24, 24][:bsz]])
    lengths = lengths.to(device=device, dtype=torch.int32)
    if spans in ("end", "mixed"):
        lengths[:, 0 if spans == "end" else 2] = 24  # span [.., 24): nothing follows it
    sim = torch.tensor([[1.0, 0.1, 0.3, 0.05][:bsz], [0.1, 0.19, 0.0, 0.1][:bsz],
                        [0.5, -0.2, 0.1, 0.9][:bsz]], device=device)  # fmt: skip
    keys, values = _cache(device, dtype, lengths, caps, seq_major=spans == "mixed")
    want_k, want_v, want_len = kv_compact_reference(keys, values, lengths, s, n, sim, 0.2)
    _compact(path, keys, values, lengths, s, n, sim, 0.2)
    assert torch.equal(lengths, want_len)
    _assert_same(keys, want_k)
    _assert_same(values, want_v)


@pytest.mark.parametrize("path", PATHS)
def test_kv_compact_overlapping_long_suffix(device, path):
    """A suffix much longer than the span (and than one tile) moves correctly in place."""
    torch.manual_seed(3)
    lengths = torch.tensor([[70], [70]], dtype=torch.int64, device=device)
    s = torch.tensor([2], dtype=torch.int64, device=device)
    n = torch.tensor([3], dtype=torch.int64, device=device)
    sim = torch.tensor([[0.0], [0.5]], device=device)
    keys, values = _cache(device, torch.float32, lengths, [72, 80], heads=1, dim=4)
    want_k, want_v, want_len = kv_compact_reference(keys, values, lengths, s, n, sim, 0.2)
    _compact(path, keys, values, lengths, s, n, sim, 0.2)
    assert lengths.tolist() == [[67], [70]] == want_len.tolist()
    _assert_same(keys + values, want_k + want_v)


@pytest.mark.parametrize("path", PATHS)
def test_kv_compact_nan_similarity_and_thresholds(device, path):
    lengths = torch.tensor([[10, 10]], dtype=torch.int32, device=device)
    s = torch.tensor([1, 2], dtype=torch.int32, device=device)
    n = torch.tensor([4, 4], dtype=torch.int32, device=device)
    keys, values = _cache(device, torch.float16, lengths, [10])
    before = [k.clone() for k in keys + values]
    sim = torch.tensor([[float("nan"), 0.5]], device=device)
    _compact(path, keys, values, lengths, s, n, sim, 0.5)  # NaN never compacts; 0.5 < 0.5 no
    assert lengths.tolist() == [[10, 10]]
    _assert_same(keys + values, before)
    _compact(path, keys, values, lengths, s, n, sim, float("inf"))
    assert lengths.tolist() == [[10, 6]]


def test_kv_compact_errors_leave_cache_intact(device):
    lengths = torch.tensor([[10, 8], [10, 8]], dtype=torch.int32, device=device)
    s = torch.tensor([2, 6], dtype=torch.int32, device=device)
    n = torch.tensor([3, 3], dtype=torch.int32, device=device)  # sample 1: 6 + 3 > 8
    sim = torch.zeros(2, 2, device=device)
    keys, values = _cache(device, torch.float32, lengths, [12, 12])
    before = [t.clone() for t in keys + values]
    len_before = lengths.clone()

    def intact():
        assert torch.equal(lengths, len_before)
        _assert_same(keys + values, before)

    with pytest.raises(ValueError, match="span_start"):
        kv_compact_(keys, values, lengths, s, n, sim, 0.2)
    intact()
    with pytest.raises(ValueError, match="lengths"):
        kv_compact_(keys, values, lengths + 5, s, n - 3, sim, 0.2)
    intact()
    with pytest.raises(ValueError, match="values"):
        kv_compact_(keys, values[:1], lengths, s, n, sim, 0.2)
    with pytest.raises(TypeError, match=r"values\[1\]"):
        kv_compact_(keys, [values[0], values[1].half()], lengths, s, n, sim, 0.2)
    with pytest.raises(ValueError, match="similarity"):
        kv_compact_(keys, values, lengths, s, n, sim[:1], 0.2)
    with pytest.raises(TypeError, match="lengths"):
        kv_compact_(keys, values, lengths.float(), s, n, sim, 0.2)
    with pytest.raises(ValueError, match="threshold"):
        kv_compact_(keys, values, lengths, s, n, sim, float("nan"))
    with pytest.raises(TypeError, match="keys"):
        kv_compact_(keys[0], values, lengths, s, n, sim, 0.2)
    intact()
    # the valid sample alone works
    n_ok = torch.tensor([3, 0], dtype=torch.int32, device=device)
    kv_compact_(keys, values, lengths, s, n_ok, sim, 0.2)
    assert lengths.tolist() == [[7, 8], [7, 8]]


# ---------------------------------------------------------------------------------------------
# torch.library


def _small_args(device):
    torch.manual_seed(4)
    h = torch.randn(2, 6, 8, device=device)
    s = torch.tensor([1, 0], dtype=torch.int32, device=device)
    n = torch.tensor([3, 6], dtype=torch.int32, device=device)
    lengths = torch.tensor([[6, 6], [6, 6]], dtype=torch.int32, device=device)
    keys = [torch.randn(2, 1, 8, 4, device=device) for _ in range(2)]
    values = [torch.randn(2, 1, 8, 4, device=device) for _ in range(2)]
    sim = torch.tensor([[1.0, 0.1], [0.1, 0.3]], device=device)
    return h, s, n, lengths, keys, values, sim


def test_opcheck():
    h, s, n, lengths, keys, values, sim = _small_args("cpu")
    out = torch.zeros(2, 2)
    torch.library.opcheck(torch.ops.sharpv.layer_similarity, (h, h * 2 + 1, s, n, out, 1))
    torch.library.opcheck(torch.ops.sharpv.kv_compact_, (keys, values, lengths, s, n, sim, 0.2))


def test_torch_compile_fullgraph(monkeypatch):
    # Inductor allocates its own tensors with torch.empty (some requiring grad), which the
    # NaN poisoning of conftest.py would break: undo it for this test only.
    monkeypatch.undo()
    h, s, n, lengths, keys, values, sim = _small_args("cpu")
    ref = h.flip(1)

    def f(h, ref, s, n, keys, values, lengths):
        out = torch.zeros(2, h.shape[0], device=h.device)
        out[0] = 1.0
        layer_similarity(h, ref, s, n, out, 1)
        kv_compact_(keys, values, lengths, s, n, out, 0.2)
        return out

    keys2 = [k.clone() for k in keys]
    values2 = [v.clone() for v in values]
    lengths2 = lengths.clone()
    want = f(h, ref, s, n, keys, values, lengths)
    compiled = torch.compile(f, fullgraph=True)
    got = compiled(h, ref, s, n, keys2, values2, lengths2)
    torch.testing.assert_close(got, want)
    assert torch.equal(lengths2, lengths)
    _assert_same(keys2 + values2, keys + values)
