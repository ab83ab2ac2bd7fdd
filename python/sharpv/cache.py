"""A transformers ``Cache`` whose layers can be compacted in place (Memory SharpV).

Every layer keeps its keys and values in one preallocated, zero-initialised buffer of shape
``(capacity, batch, kv_heads, head_dim)`` (sequence-major), grown by ``chunk_size`` tokens at a
time instead of concatenating at every step. Attention reads a ``(batch, kv_heads, length,
head_dim)`` view of it. Each (layer, sample) holds its own number of entries, so
:meth:`CompactingCache.compact_` can remove a sample's visual span from some layers only, with
``torch.ops.sharpv.kv_compact_`` (all layers in one launch), and then give the freed memory back.

The cache reports the *logical* (uncompacted) length from ``get_seq_length`` and
``get_mask_sizes``, so that the positions of new tokens continue at their original values; the
physical layout is described by :meth:`CompactingCache.attention_mask`, which builds the mask
each attention backend needs for a layer whose samples hold different lengths.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache

import sharpv_kernels  # noqa: F401  (registers torch.ops.sharpv.*)

__all__ = ["CompactingCache", "DEFAULT_CHUNK_SIZE", "check_chunk_size"]

#: growth step, in tokens, of the cache buffers
DEFAULT_CHUNK_SIZE = 256


def check_chunk_size(chunk_size: object) -> int:
    """``chunk_size`` if it is a positive int, else ``ValueError`` naming it.

    Examples:
        >>> check_chunk_size(64)
        64
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    return chunk_size


def _round_up(n: int, chunk: int) -> int:
    return max(chunk, -(-n // chunk) * chunk)


class _Layer:
    """One layer's buffers. ``keys``/``values`` are the views attention last read."""

    is_sliding = False
    is_compileable = False
    is_croppable = False
    supports_early_init = False

    def __init__(self) -> None:
        self.kbuf: torch.Tensor | None = None  # (capacity, B, H, D)
        self.vbuf: torch.Tensor | None = None
        self.keys: torch.Tensor | None = None  # (B, H, kv_len, D) views
        self.values: torch.Tensor | None = None
        self.is_initialized = False

    @property
    def capacity(self) -> int:
        return 0 if self.kbuf is None else self.kbuf.shape[0]


class CompactingCache(Cache):
    """Key/value cache with per-layer, per-sample lengths, chunked growth and in-place compaction.

    Args:
        num_layers: number of decoder layers (or pass ``config``).
        config: a transformers config; ``num_hidden_layers`` of its text config is used.
        chunk_size: growth step in tokens (capacity is always a multiple of it).

    After :meth:`compact_`, layer ``l`` of sample ``b`` holds ``lengths_host[l][b]`` entries;
    entry ``j`` has the logical (original) position ``j`` before the sample's visual span and
    ``j + span_len[b]`` after it when the layer was compacted for that sample.

    Examples:
        >>> import torch
        >>> cache = CompactingCache(2, chunk_size=4)
        >>> for layer in range(2):  # a 6-token prompt, batch 1, 1 head of size 2
        ...     _ = cache.update(torch.randn(1, 1, 6, 2), torch.randn(1, 1, 6, 2), layer)
        >>> sim = torch.tensor([[1.0], [0.1]])  # layer 1 falls under the threshold
        >>> cache.compact_(sim, 0.2, torch.tensor([1]), torch.tensor([3])).tolist()
        [[False], [True]]
        >>> cache.lengths_host, cache.get_seq_length()
        ([[6], [3]], 6)
    """

    def __init__(
        self,
        num_layers: int | None = None,
        *,
        config: Any = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if num_layers is None:
            if config is None:
                raise ValueError("pass num_layers or config")
            text = config.get_text_config() if hasattr(config, "get_text_config") else config
            num_layers = int(text.num_hidden_layers)
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
        check_chunk_size(chunk_size)
        # Cache.__init__ differs between transformers releases: set its attributes directly.
        self.layers = [_Layer() for _ in range(num_layers)]
        self.layer_class_to_replicate = None
        self.offloading = False
        self.chunk_size = chunk_size
        self._logical = [0] * num_layers  # logical length of each layer (host)
        self._len: list[list[int]] | None = None  # physical lengths [layer][sample] (host)
        self._kv_len = [0] * num_layers  # max over samples of the physical length
        self._uniform = [True] * num_layers  # every sample holds the logical length
        self.lengths: torch.Tensor | None = None  # (L, B) int32 on device, non-uniform layers
        self.span_start: torch.Tensor | None = None
        self.span_len: torch.Tensor | None = None
        self.dropped: torch.Tensor | None = None  # (L, B) bool on device, after compact_
        self.dropped_host: list[list[bool]] | None = None
        self.compacted = False
        self._mask_memo: dict[tuple, torch.Tensor] = {}

    # ------------------------------------------------------------------ transformers API

    def __repr__(self) -> str:
        return (
            f"CompactingCache(layers={len(self.layers)}, length={self._logical[0]}, "
            f"compacted={self.compacted}, bytes={self.nbytes()})"
        )

    def update(
        self,
        key_states: torch.Tensor,
        value_states: torch.Tensor,
        layer_idx: int,
        cache_kwargs: dict[str, Any] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``(B, H, q, D)`` keys/values after each sample's last entry of the layer.

        Returns ``(B, H, kv_len, D)`` views where ``kv_len`` is the longest sample of the
        layer; slots past a sample's own length hold stale finite values and must be masked
        (see :meth:`attention_mask`).
        """
        layer = self.layers[layer_idx]
        bsz, heads, q, dim = key_states.shape
        if not layer.is_initialized:
            if self._len is None:
                self._len = [[0] * bsz for _ in self.layers]
            cap = _round_up(q, self.chunk_size)
            layer.kbuf = key_states.new_zeros((cap, bsz, heads, dim))
            layer.vbuf = value_states.new_zeros((cap, bsz, heads, dim))
            layer.is_initialized = True
        kv = self._kv_len[layer_idx]
        new_kv = kv + q
        if new_kv > layer.capacity:
            self._resize(layer, _round_up(new_kv, self.chunk_size), kv)
        k_new = key_states.permute(2, 0, 1, 3)
        v_new = value_states.permute(2, 0, 1, 3)
        if self._uniform[layer_idx]:
            layer.kbuf[kv:new_kv] = k_new
            layer.vbuf[kv:new_kv] = v_new
        else:
            pos = self.lengths[layer_idx].long()
            rows = pos[None, :] + torch.arange(q, device=pos.device)[:, None]  # (q, B)
            cols = torch.arange(bsz, device=pos.device)[None, :].expand(q, bsz)
            layer.kbuf.index_put_((rows, cols), k_new)
            layer.vbuf.index_put_((rows, cols), v_new)
            self.lengths[layer_idx] += q
        for b in range(bsz):
            self._len[layer_idx][b] += q
        self._kv_len[layer_idx] = max(self._len[layer_idx])
        self._logical[layer_idx] += q
        new_kv = self._kv_len[layer_idx]
        layer.keys = layer.kbuf[:new_kv].permute(1, 2, 0, 3)
        layer.values = layer.vbuf[:new_kv].permute(1, 2, 0, 3)
        return layer.keys, layer.values

    def get_seq_length(self, layer_idx: int | None = 0) -> int:
        """Logical (uncompacted) number of tokens seen by the layer."""
        return self._logical[layer_idx or 0]

    def get_mask_sizes(self, query_length: Any, layer_idx: int = 0) -> tuple[int, int]:
        """``(kv_length, kv_offset)`` of the logical sequence (accepts a query length or, as in
        older transformers releases, a ``cache_position`` tensor)."""
        q = query_length.shape[0] if isinstance(query_length, torch.Tensor) else int(query_length)
        return self._logical[layer_idx] + q, 0

    def get_query_offset(self, layer_idx: int = 0) -> int:
        return self._logical[layer_idx]

    def get_max_length(self, layer_idx: int | None = None) -> int:
        return -1

    def get_max_cache_shape(self, layer_idx: int = 0) -> int:
        return -1

    @property
    def is_compileable(self) -> bool:
        return False

    @property
    def is_initialized(self) -> bool:
        return self.layers[0].is_initialized

    @property
    def batch_size(self) -> int:
        return -1 if self._len is None else len(self._len[0])

    def reset(self) -> None:
        n = len(self.layers)
        self.__init__(n, chunk_size=self.chunk_size)

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("CompactingCache does not support crop (assisted decoding)")

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        raise NotImplementedError("CompactingCache does not support beam search")

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("CompactingCache does not support batch expansion")

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        raise NotImplementedError("CompactingCache does not support batch selection")

    # ------------------------------------------------------------------ compaction

    def _resize(self, layer: _Layer, capacity: int, keep: int) -> None:
        for name in ("kbuf", "vbuf"):
            old = getattr(layer, name)
            new = old.new_zeros((capacity, *old.shape[1:]))
            new[:keep] = old[:keep]
            setattr(layer, name, new)

    def compact_(
        self,
        similarity: torch.Tensor,
        threshold: float,
        span_start: torch.Tensor,
        span_len: torch.Tensor,
        *,
        first_layer: int = 1,
        release: bool = True,
    ) -> torch.Tensor:
        """Remove each sample's visual span from every layer ``l >= first_layer`` where
        ``similarity[l, b] < threshold`` (Memory SharpV, SPEC item 4), in place.

        Args:
            similarity: ``(L, B)`` float32 on the cache's device.
            threshold: the drop threshold ``M``.
            span_start, span_len: ``(B,)`` integer tensors, each sample's visual span in the
                cache (logical positions).
            first_layer: layers below it are never compacted (layer 0 for Memory SharpV).
            release: give back every whole chunk no layer needs any more (reallocates those
                layers' buffers to their new capacity).

        Returns:
            ``(L, B)`` bool: the (layer, sample) pairs that were compacted.

        One ``kv_compact_`` launch for all layers (which itself reads the lengths and spans on
        the host once, to check them before it writes), then one device-to-host copy of the
        new lengths (needed to size the buffers and the attention masks). Nothing is copied
        from the host to the device: the result and :attr:`dropped` are computed there.
        """
        if self.compacted:
            raise RuntimeError("the cache was already compacted")
        if not all(layer.is_initialized for layer in self.layers):
            raise RuntimeError("compact_ needs every layer filled (run the prefill first)")
        n_layers = len(self.layers)
        dev = self.layers[0].kbuf.device
        bsz = self.batch_size
        logical = self._logical[0]
        if any(length != logical for length in self._logical):
            raise RuntimeError("every layer must hold the same number of tokens")
        lengths = torch.full((n_layers, bsz), logical, dtype=torch.int32, device=dev)
        span_start = span_start.to(device=dev, dtype=torch.int32)
        span_len = span_len.to(device=dev, dtype=torch.int32)
        similarity = similarity.to(device=dev, dtype=torch.float32)
        first = int(first_layer)
        keys = [layer.kbuf.permute(1, 2, 0, 3) for layer in self.layers[first:]]
        values = [layer.vbuf.permute(1, 2, 0, 3) for layer in self.layers[first:]]
        if keys:
            torch.ops.sharpv.kv_compact_(
                keys,
                values,
                lengths[first:],
                span_start,
                span_len,
                similarity[first:].contiguous(),
                float(threshold),
            )
        self._len = lengths.tolist()  # the one synchronisation of compact_ itself
        self._kv_len = [max(row) for row in self._len]
        self._uniform = [all(x == logical for x in row) for row in self._len]
        self.dropped_host = [[x != logical for x in row] for row in self._len]
        self.dropped = lengths != logical
        self.lengths = lengths
        self.span_start, self.span_len = span_start, span_len
        self.compacted = True
        if release:
            self.release_()
        return self.dropped.clone()

    def release_(self) -> None:
        """Shrink every layer's buffers to the whole chunks its entries need."""
        for idx, layer in enumerate(self.layers):
            if not layer.is_initialized:
                continue
            need = _round_up(self._kv_len[idx], self.chunk_size)
            if need < layer.capacity:
                self._resize(layer, need, self._kv_len[idx])
                layer.keys = layer.kbuf[: self._kv_len[idx]].permute(1, 2, 0, 3)
                layer.values = layer.vbuf[: self._kv_len[idx]].permute(1, 2, 0, 3)

    # ------------------------------------------------------------------ masks and accounting

    def is_uniform(self, layer_idx: int) -> bool:
        """True when every sample of the layer holds its full logical sequence (the mask
        transformers builds is then right as it is)."""
        return self._uniform[layer_idx]

    def attention_mask(
        self,
        layer_idx: int,
        query_length: int,
        key_padding: torch.Tensor | None,
        kind: str,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """The mask for the layer's next attention call, *before* its ``update``.

        Args:
            layer_idx: the layer.
            query_length: ``q``, number of new tokens this step.
            key_padding: ``(B, S0)`` bool, False at padding among the first ``S0`` logical
                positions (the prompt); later positions are real tokens. ``None``: no padding.
            kind: ``"eager"`` -> additive ``(B, 1, q, kv)`` of ``dtype`` (0 / dtype min);
                ``"sdpa"`` -> bool ``(B, 1, q, kv)``, True = attend; ``"flash"`` -> ``(B, kv)``
                int32 key-padding mask (queries are the last ``q`` tokens, causal).

        Keys are the physical entries ``0 <= j < kv`` of the layer after the update; physical
        entry ``j`` of sample ``b`` has logical position ``j`` (or ``j + span_len[b]`` after the
        span in a compacted layer). Masks shared by layers with the same drop pattern are
        built once per step.
        """
        q = int(query_length)
        logical0 = self._logical[layer_idx]
        kv = self._kv_len[layer_idx] + q
        drop_row = tuple(self.dropped_host[layer_idx]) if self.dropped_host else ()
        memo_key = (drop_row, logical0, q, kv, kind, dtype, id(key_padding))
        hit = self._mask_memo.get(memo_key)
        if hit is not None:
            return hit
        if len(self._mask_memo) > 64:
            self._mask_memo.clear()
        dev = self.layers[layer_idx].kbuf.device
        bsz = self.batch_size
        j = torch.arange(kv, device=dev)[None, :]  # (1, kv)
        if self.dropped is not None:
            drop = self.dropped[layer_idx][:, None]  # on device: no host copy per step
            s = self.span_start.long()[:, None]
            n = self.span_len.long()[:, None]
            logical = j + torch.where(drop & (j >= s), n, 0)  # (B, kv)
            n_phys = (logical0 + q) - torch.where(drop, n, 0)  # (B, 1) entries after update
        else:
            logical = j.expand(bsz, kv)
            n_phys = torch.full((bsz, 1), logical0 + q, device=dev)
        valid = j < n_phys
        if key_padding is not None:
            pad = key_padding.to(device=dev, dtype=torch.bool)
            s0 = pad.shape[1]
            idx = logical.clamp(max=s0 - 1)
            valid &= pad.gather(1, idx) | (logical >= s0)
        if kind == "flash":
            mask = valid.to(torch.int32)
        else:
            qpos = logical0 + torch.arange(q, device=dev)  # logical positions of the queries
            allowed = valid[:, None, None, :] & (
                logical[:, None, None, :] <= qpos[None, None, :, None]
            )
            if kind == "sdpa":
                mask = allowed
            elif kind == "eager":
                zero = torch.zeros((), dtype=dtype, device=dev)
                mask = torch.where(allowed, zero, torch.finfo(dtype).min)
            else:
                raise ValueError(f"kind must be 'eager', 'sdpa' or 'flash', got {kind!r}")
        self._mask_memo[memo_key] = mask
        return mask

    def nbytes(self) -> int:
        """Bytes held by the key/value buffers of all layers."""
        total = 0
        for layer in self.layers:
            if layer.is_initialized:
                total += layer.kbuf.nbytes + layer.vbuf.nbytes
        return total

    def needed_bytes(self) -> int:
        """Bytes the entries held need: per layer ``2 * B * H * D * max_b length * itemsize``."""
        total = 0
        for idx, layer in enumerate(self.layers):
            if layer.is_initialized:
                row = layer.kbuf[0].nbytes  # B * H * D * itemsize
                total += 2 * row * self._kv_len[idx]
        return total

    @property
    def lengths_host(self) -> list[list[int]]:
        """Physical entries per ``[layer][sample]``."""
        return [list(row) for row in (self._len or [])]
