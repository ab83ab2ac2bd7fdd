"""``SHARPV_BACKEND=auto|triton|torch|native``: read at every call, the same for both families."""

from __future__ import annotations

import pytest
import torch

from sharpv_kernels import kv_compact_, layer_similarity, visual_prune, visual_scores
from sharpv_kernels._utils import select_backend

from .backends import BACKENDS, use_backend
from .visual_cases import make_features


def _memory_args():
    g = torch.Generator().manual_seed(8)
    h = torch.randn(2, 6, 8, generator=g)
    s, n = torch.tensor([1, 0]), torch.tensor([3, 6])
    keys = [torch.randn(2, 1, 8, 4, generator=g) for _ in range(2)]
    values = [torch.randn(2, 1, 8, 4, generator=g) for _ in range(2)]
    lengths = torch.full((2, 2), 7, dtype=torch.int32)
    sim = torch.tensor([[1.0, 0.1], [0.1, 0.3]])
    return h, s, n, keys, values, lengths, sim


def test_auto_picks_native_or_torch_on_cpu_and_triton_on_cuda(monkeypatch):
    monkeypatch.delenv("SHARPV_BACKEND", raising=False)
    assert select_backend(torch.device("cpu")) == "torch"  # an op without a native kernel
    assert select_backend(torch.device("cpu"), lambda: None) == "native"
    assert select_backend(torch.device("cpu"), lambda: "no compiler") == "torch"
    assert select_backend(torch.device("cuda", 0)) == "triton"
    assert select_backend(torch.device("cuda", 0), lambda: None) == "triton"
    monkeypatch.setenv("SHARPV_BACKEND", "torch")
    assert select_backend(torch.device("cuda", 0)) == "torch"  # the eager GPU baseline
    monkeypatch.setenv("SHARPV_BACKEND", " Triton ")
    assert select_backend(torch.device("cpu")) == "triton"  # interpreted (conftest)


def test_native_backend_rules(monkeypatch):
    monkeypatch.setenv("SHARPV_BACKEND", "native")
    assert select_backend(torch.device("cpu")) == "torch"  # no native kernel: PyTorch path
    assert select_backend(torch.device("cpu"), lambda: None) == "native"
    with pytest.raises(RuntimeError, match="CPU tensors only"):
        select_backend(torch.device("cuda", 0), lambda: None)
    with pytest.raises(RuntimeError, match="unavailable: no compiler"):
        select_backend(torch.device("cpu"), lambda: "no compiler")


def test_unknown_backend_is_an_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("SHARPV_BACKEND", "cuda")
    x = make_features(2, 3, 4, torch.float32, "cpu")
    h, s, n, keys, values, lengths, sim = _memory_args()
    with pytest.raises(ValueError, match="SHARPV_BACKEND"):
        visual_prune(x)
    with pytest.raises(ValueError, match="SHARPV_BACKEND"):
        layer_similarity(h, h, s, n, torch.zeros(1, 2), 0)
    before = lengths.clone()
    with pytest.raises(ValueError, match="SHARPV_BACKEND"):
        kv_compact_(keys, values, lengths, s, n, sim, 0.2)
    assert torch.equal(lengths, before)


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.setenv("SHARPV_BACKEND", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x = make_features(2, 3, 4, torch.float32, "cpu")
    h, s, n, keys, values, lengths, sim = _memory_args()
    for call in (
        lambda: visual_prune(x),
        lambda: visual_scores(x),
        lambda: layer_similarity(h, h, s, n, torch.zeros(1, 2), 0),
        lambda: kv_compact_(keys, values, lengths, s, n, sim, 0.2),
    ):
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
            call()


def test_the_switch_is_read_at_every_call(monkeypatch):
    """float64 features run on the PyTorch path only: the same call succeeds or fails as the
    variable changes between calls."""
    x = make_features(2, 3, 4, torch.float64, "cpu")
    monkeypatch.setenv("SHARPV_BACKEND", "torch")
    assert visual_prune(x).tokens.dtype == torch.float64
    monkeypatch.setenv("SHARPV_BACKEND", "triton")
    with pytest.raises(TypeError, match="Triton"):
        visual_prune(x)
    monkeypatch.setenv("SHARPV_BACKEND", "auto")
    assert visual_prune(x).tokens.dtype == torch.float64
    monkeypatch.setenv("SHARPV_BACKEND", "native")  # float64: the native kernel hands over
    assert visual_prune(x).tokens.dtype == torch.float64


def test_backends_agree():
    x = make_features(5, 7, 16, torch.bfloat16, "cpu", seed=11)
    h, s, n, keys, values, lengths, sim = _memory_args()
    outs = {}
    for name in BACKENDS:
        with use_backend(name):
            res = visual_prune(x, [0, 2, 5], mode="budget", budget=0.4, return_scores=True)
            out = torch.zeros(2, 2)
            layer_similarity(h, h.flip(1), s, n, out, 1)
            k, v, lens = [t.clone() for t in keys], [t.clone() for t in values], lengths.clone()
            kv_compact_(k, v, lens, s, n, sim, 0.2)
        outs[name] = (res, out, k, v, lens)
    res_a, out_a, k_a, v_a, len_a = outs.pop("torch")
    for res_b, out_b, k_b, v_b, len_b in outs.values():
        torch.testing.assert_close(res_a.scores, res_b.scores, atol=1e-6, rtol=0)
        assert torch.equal(res_a.counts, res_b.counts)
        assert torch.equal(res_a.indices, res_b.indices)
        torch.testing.assert_close(out_a, out_b, atol=1e-6, rtol=0)
        assert torch.equal(len_a, len_b)
        for a, b in zip(k_a + v_a, k_b + v_b, strict=True):
            assert torch.equal(a, b)
