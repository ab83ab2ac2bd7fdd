"""CompactingCache: chunked growth, logical lengths, in-place compaction and its masks."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from sharpv.cache import CompactingCache  # noqa: E402
from sharpv_kernels.ops.kv_compact import kv_compact_reference  # noqa: E402

B, H, D, L = 3, 2, 4, 3


def _kv(q: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, H, q, D, generator=g), torch.randn(B, H, q, D, generator=g)


def _fill(cache: CompactingCache, q: int, seed: int = 0):
    """One forward's worth of updates; returns the per-layer (keys, values) appended."""
    new = []
    for layer in range(L):
        k, v = _kv(q, seed * 100 + layer)
        cache.update(k, v, layer)
        new.append((k, v))
    return new


def test_grows_in_chunks_and_matches_concatenation():
    cache = CompactingCache(L, chunk_size=4)
    full = [None] * L
    caps = []
    for step, q in enumerate([6, 1, 1, 1, 1, 1, 3]):
        for layer, (k, _) in enumerate(_fill(cache, q, step)):
            full[layer] = k if full[layer] is None else torch.cat([full[layer], k], 2)
        got_k = cache.layers[0].keys
        torch.testing.assert_close(got_k, full[0], atol=0, rtol=0)
        assert cache.layers[0].capacity % 4 == 0
        assert cache.layers[0].capacity - cache.get_seq_length() < 4
        caps.append(cache.layers[0].capacity)
    assert cache.get_seq_length() == 14 == cache.get_seq_length(2)
    assert caps == [8, 8, 8, 12, 12, 12, 16]  # lengths 6, 7, 8, 9, 10, 11, 14
    assert cache.get_mask_sizes(1, 0) == (15, 0)
    assert cache.get_mask_sizes(torch.arange(14, 16), 0) == (16, 0)
    assert cache.nbytes() == cache.needed_bytes() + 2 * L * 2 * B * H * D * 4


def _compacted_cache(threshold=0.5, chunk=4):
    cache = CompactingCache(L, chunk_size=chunk)
    _fill(cache, 14, 0)
    before_k = [layer.keys.clone() for layer in cache.layers]
    before_v = [layer.values.clone() for layer in cache.layers]
    span_start = torch.tensor([2, 0, 9])
    span_len = torch.tensor([5, 8, 5])  # sample 2: nothing follows its span
    sim = torch.tensor([[1.0, 1.0, 1.0], [0.1, 0.9, 0.1], [0.1, 0.1, 0.7]])
    dropped = cache.compact_(sim, threshold, span_start, span_len)
    return cache, before_k, before_v, span_start, span_len, sim, dropped


def test_compact_matches_reference_then_appends_per_sample():
    cache, before_k, before_v, s, n, sim, dropped = _compacted_cache()
    lengths = torch.full((L, B), 14)
    sim_ = sim.clone()
    sim_[0] = float("inf")  # layer 0 is never compacted
    want_k, want_v, want_len = kv_compact_reference(before_k, before_v, lengths, s, n, sim_, 0.5)
    assert torch.equal(torch.tensor(cache.lengths_host), want_len)
    assert dropped.tolist() == [[False] * 3, [True, False, True], [True, True, False]]
    assert cache.get_seq_length() == 14  # logical length
    for layer in range(L):
        for b in range(B):
            m = int(want_len[layer, b])
            got_k, got_v = cache.layers[layer].kbuf[:m, b], cache.layers[layer].vbuf[:m, b]
            assert torch.equal(got_k, want_k[layer][b, :, :m].transpose(0, 1))
            assert torch.equal(got_v, want_v[layer][b, :, :m].transpose(0, 1))
    # the next token goes right after each sample's own last entry
    new = _fill(cache, 1, 7)
    assert cache.get_seq_length() == 15
    for layer in range(L):
        keys = cache.layers[layer].keys
        assert keys.shape[2] == int(want_len[layer].max()) + 1
        for b in range(B):
            m = int(want_len[layer, b])
            torch.testing.assert_close(keys[b, :, m], new[layer][0][b, :, 0], atol=0, rtol=0)
    # memory: every layer within one chunk of what its longest sample needs
    for layer in range(L):
        need = int(want_len[layer].max()) + 1
        assert 0 <= cache.layers[layer].capacity - need < 4


def _logical_positions(cache, layer, kv):
    """Brute force: logical position of each physical entry (B, kv)."""
    out = torch.empty(B, kv, dtype=torch.long)
    for b in range(B):
        s, n = (int(x) for x in (cache.span_start[b], cache.span_len[b]))
        drop = cache.dropped_host[layer][b]
        for j in range(kv):
            out[b, j] = j + n if (drop and j >= s) else j
    return out


@pytest.mark.parametrize("q", [1, 3])
def test_attention_masks(q):
    cache, *_ = _compacted_cache()
    pad = torch.ones(B, 14, dtype=torch.bool)
    pad[1, :1] = False  # sample 1 starts with one padding position
    for layer in range(L):
        kv = max(cache.lengths_host[layer]) + q
        logical = _logical_positions(cache, layer, kv)
        n_after = [cache.lengths_host[layer][b] + q for b in range(B)]
        want = torch.zeros(B, q, kv, dtype=torch.bool)
        for b in range(B):
            for i in range(q):
                for j in range(n_after[b]):
                    p = int(logical[b, j])
                    want[b, i, j] = p <= 14 + i and (p >= 14 or bool(pad[b, p]))
        sdpa = cache.attention_mask(layer, q, pad, "sdpa")
        assert torch.equal(sdpa[:, 0], want)
        eager = cache.attention_mask(layer, q, pad, "eager", dtype=torch.float16)
        assert eager.dtype == torch.float16
        assert torch.equal(eager[:, 0] == 0, want)
        flash = cache.attention_mask(layer, q, pad, "flash")
        assert torch.equal(flash.bool(), want[:, -1])
    with pytest.raises(ValueError, match="kind"):
        cache.attention_mask(1, 2, None, "flex")


def test_failed_compaction_leaves_cache_intact():
    cache = CompactingCache(L, chunk_size=4)
    _fill(cache, 10, 0)
    before = [(layer.kbuf.clone(), layer.vbuf.clone()) for layer in cache.layers]
    sim = torch.zeros(L, B)
    with pytest.raises(ValueError, match="span_start"):
        cache.compact_(sim, 0.5, torch.tensor([0, 4, 6]), torch.tensor([3, 3, 5]))
    assert not cache.compacted
    assert cache.lengths_host == [[10] * B] * L
    for layer, (k, v) in zip(cache.layers, before, strict=True):
        assert torch.equal(layer.kbuf, k) and torch.equal(layer.vbuf, v)
    with pytest.raises(ValueError, match="similarity"):
        cache.compact_(sim[:1], 0.5, torch.tensor([0, 4, 5]), torch.tensor([3, 3, 5]))
    cache.compact_(sim, 0.5, torch.tensor([0, 4, 5]), torch.tensor([3, 3, 5]))
    assert cache.lengths_host == [[10] * B] + [[7, 7, 5]] * (L - 1)
    with pytest.raises(RuntimeError, match="already"):
        cache.compact_(sim, 0.5, torch.tensor([0, 4, 5]), torch.tensor([3, 3, 5]))


def test_constructor_checks():
    with pytest.raises(ValueError, match="num_layers"):
        CompactingCache(0)
    with pytest.raises(ValueError, match="chunk_size"):
        CompactingCache(2, chunk_size=0)
    with pytest.raises(ValueError, match="config"):
        CompactingCache()
    from transformers import Qwen2Config

    assert len(CompactingCache(config=Qwen2Config(num_hidden_layers=5)).layers) == 5
