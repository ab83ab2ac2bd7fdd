"""``kv_compact_`` (SPEC, Memory SharpV items 4 and 6): the same cases on every backend
against the plain-PyTorch reference, every argument form it accepts, the errors for the
others (an op that raises changes nothing), and ``torch.compile`` with ``layer_similarity``.

Backend-parametrised tests run the public function (``torch.ops.sharpv.kv_compact_``) with
``SHARPV_BACKEND=triton`` (Triton interpreter on CPU tensors, compiled kernels on CUDA with
``SHARPV_TEST_COMPILED=1``), ``torch`` (the plain PyTorch path) and, where the ``backend``
fixture is used, ``native`` (which runs the PyTorch path: no native kernel).
"""

from __future__ import annotations

import pytest
import torch

from sharpv_kernels import kv_compact_, layer_similarity
from sharpv_kernels.ops.kv_compact import kv_compact_reference

from .backends import (
    backend,  # noqa: F401  (fixture)
    use_backend,
)
from .memory_cases import (
    PATHS,
    every_case,
    make_spans,
    small_args,
    snapshot,
    strided_spans,
    unchanged,
)


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


@every_case
def test_kv_compact_matches_reference(device, path, dtype, spans):
    torch.manual_seed(2)
    s, n = make_spans(spans, device)
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


# ---------------------------------------------------------------- argument forms


def _random_cache(lengths_cap=10, n_layers=2, bsz=3):
    g = torch.Generator().manual_seed(7)
    keys = [torch.randn(bsz, 2, lengths_cap, 4, generator=g) for _ in range(n_layers)]
    values = [torch.randn(bsz, 2, lengths_cap, 4, generator=g) for _ in range(n_layers)]
    return keys, values


def test_kv_compact_strided_arguments(backend):  # noqa: F811
    keys, values = _random_cache()
    s, n = strided_spans()
    lengths = torch.tensor([[10, 9], [8, 10], [10, 10]], dtype=torch.int64).t()  # (2, 3)
    sim = torch.tensor([[0.1, 0.5], [0.0, 0.1], [0.3, 0.05]]).t()  # (2, 3), stride (1, 2)
    want_k, want_v, want_len = kv_compact_reference(
        keys, values, lengths.contiguous(), s.contiguous(), n.contiguous(), sim, 0.2
    )
    kv_compact_(keys, values, lengths, s, n, sim, 0.2)
    assert torch.equal(lengths, want_len)
    for got, want in zip(keys + values, want_k + want_v, strict=True):
        assert torch.equal(got, want)


# ---------------------------------------- an op that raises changes nothing


@pytest.mark.parametrize("alias", ["lengths-stride0", "lengths-rows-alias", "keys-twice",
                                   "keys-values-same", "keys-overlap"])  # fmt: skip
def test_kv_compact_aliased_writes_raise_before_writing(backend, alias):  # noqa: F811
    keys, values = _random_cache()
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
    before = snapshot(*keys, *values, lengths)
    with pytest.raises(ValueError, match=name):
        kv_compact_(keys, values, lengths, s, n, sim, 0.2)
    unchanged(before, *keys, *values, lengths)


@pytest.mark.parametrize("case", ["span-past-length", "length-past-capacity", "negative-span"])
def test_kv_compact_bad_values_raise_before_writing(backend, case):  # noqa: F811
    keys, values = _random_cache()
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
    before = snapshot(*keys, *values, lengths)
    with pytest.raises(ValueError, match="span|lengths"):
        kv_compact_(keys, values, lengths, s, n, sim, 0.2)
    unchanged(before, *keys, *values, lengths)


# ---------------------------------------------------------------- torch.library


def test_opcheck():
    _, s, n, lengths, keys, values, sim = small_args("cpu")
    torch.library.opcheck(torch.ops.sharpv.kv_compact_, (keys, values, lengths, s, n, sim, 0.2))


def test_torch_compile_fullgraph(monkeypatch):
    # Inductor allocates its own tensors with torch.empty (some requiring grad), which the
    # NaN poisoning of conftest.py would break: undo it for this test only.
    monkeypatch.undo()
    h, s, n, lengths, keys, values, sim = small_args("cpu")
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
