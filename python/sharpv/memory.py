"""Memory SharpV for transformers models: similarity during prefill, KV compaction after it.

Usage (the public contract)::

    with sharpv.memory_sharpv(model, visual_mask, threshold=0.2) as state:
        out = model.generate(inputs_embeds=..., attention_mask=..., max_new_tokens=16)
    state.similarities  # (layers, batch) float32
    state.dropped       # (layers, batch) bool
    state.memory_ratio  # (batch,) visual KV entries kept / before

Built on :class:`sharpv.hooks.GenerationHooks`, which owns the hooks (all removed on exit,
leaving the model exactly as it was); this module holds only Memory SharpV's decisions:

* prefill start: the prefill gets a :class:`~sharpv.cache.CompactingCache` instead of the
  default cache;
* every decoder layer's input during the prefill: ``torch.ops.sharpv.layer_similarity`` writes
  ``sim_l`` (SPEC Memory SharpV item 2) into a device buffer (no host synchronisation);
* prefill end: the cache is compacted in place (``torch.ops.sharpv.kv_compact_``, one launch
  for all layers);
* every attention module's input while decoding: the mask of a layer whose samples lost their
  visual entries is replaced by one built from the per-sample lengths (eager: additive, sdpa:
  boolean, flash-attention: 2-D key padding), so every backend stays exact.

Host synchronisations (device-to-host reads) of one ``generate`` on a GPU: one when the
block is entered (:func:`sharpv.hooks.visual_spans` reads ``visual_mask``; none if it is on the
CPU), three at the end of the prefill (``kv_compact_`` reads the lengths and spans, then the
similarities, to check them before it writes anything; ``CompactingCache.compact_`` then
copies the new ``(layers, batch)`` lengths to the host to size the buffers and the masks), and
none in any decode step (``generate``'s own stopping checks are outside this module). The
spans go to the device once per block, with non-blocking copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sharpv_kernels.vocab import DEFAULT_MEMORY_THRESHOLD

from .cache import DEFAULT_CHUNK_SIZE, CompactingCache, check_chunk_size
from .hooks import (
    GenerationHooks,
    find_text_model,
    first_tensor,
    get_cache,
    host_mismatch,
    visual_spans,
)

# visual_spans and find_text_model live in sharpv.hooks; re-exported for existing imports
__all__ = ["memory_sharpv", "MemorySharpV", "MemorySharpVState", "visual_spans", "find_text_model"]

_SUPPORTED_ATTN = ("eager", "sdpa", "flash_attention_2", "flash_attention_3")


@dataclass
class MemorySharpVState:
    """What Memory SharpV measured and decided for the last generation in the block.

    Attributes:
        threshold: the drop threshold ``M``.
        span_start, span_len: ``(B,)`` int64 CPU tensors, each sample's visual span.
        similarities: ``(L, B)`` float32 on the model's device, ``sim_l`` per layer and sample
            (row 0 is 1).
        dropped: ``(L, B)`` bool, the (layer, sample) pairs whose visual entries were removed.
        memory_ratio: ``(B,)`` float32, visual KV entries kept over all layers / before (MR).
        cache: the :class:`CompactingCache` of the last generation.
        chunk_size: growth step, in tokens, of the cache buffers.
    """

    threshold: float
    span_start: torch.Tensor
    span_len: torch.Tensor
    similarities: torch.Tensor | None = None
    dropped: torch.Tensor | None = None
    memory_ratio: torch.Tensor | None = None
    cache: CompactingCache | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE


def _attn_kind(impl: str) -> str:
    """``"eager"``, ``"sdpa"`` or ``"flash"``: the mask format of an attention backend."""
    if impl in ("eager", "sdpa"):
        return impl
    if "flash" in impl:
        return "flash"
    raise ValueError(f"Memory SharpV supports {_SUPPORTED_ATTN} attention, got {impl!r}")


def _key_padding(mask: Any, bsz: int, seq: int) -> torch.Tensor | None:
    """``(B, S)`` bool "is a real token" for the prompt, from the mask the text model receives.

    Never reads the mask's values on the host: an all-True result is returned as it is (the
    masks built from it are the same as with no padding).
    """
    if isinstance(mask, dict):
        mask = mask.get("full_attention")
    if not isinstance(mask, torch.Tensor):
        return None
    if mask.dim() == 2:
        pad = mask[:, -seq:].bool()
    elif mask.dim() == 4:  # prepared mask: the last query row sees every real key
        last = mask[:, 0, -1, -seq:]
        pad = last if last.dtype == torch.bool else last == 0
    else:
        return None
    return pad.expand(bsz, seq)


class MemorySharpV(GenerationHooks):
    """The hooks of Memory SharpV (see :func:`memory_sharpv`, which builds them)."""

    name = "memory_sharpv"
    needs_cache = True

    def __init__(
        self,
        model: torch.nn.Module,
        visual_mask: torch.Tensor,
        threshold: float = DEFAULT_MEMORY_THRESHOLD,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise TypeError(f"threshold must be a float, got {type(threshold).__name__}")
        if threshold != threshold:
            raise ValueError("threshold must not be NaN")
        check_chunk_size(chunk_size)
        super().__init__(model, visual_mask)
        for idx, layer in enumerate(self.layers):
            attn = getattr(layer, "self_attn", None)
            if attn is None:
                raise ValueError(f"decoder layer {idx} has no self_attn module")
            _attn_kind(attn.config._attn_implementation)
        self.state = MemorySharpVState(
            threshold=float(threshold),
            span_start=self.span_start,
            span_len=self.span_len,
            chunk_size=chunk_size,
        )
        self._sim: torch.Tensor | None = None  # (L, B) float32, filled during prefill
        self._reference: torch.Tensor | None = None  # V: the input of layer 0
        self._padding: torch.Tensor | None = None
        self._spans: tuple[torch.Tensor, torch.Tensor] | None = None  # on the model's device

    def layer_hooks(self) -> range:
        return range(self.num_layers)

    def attention_hooks(self) -> range:
        return range(self.num_layers)

    def result(self) -> MemorySharpVState:
        return self.state

    def start_prefill(self, args: tuple, kwargs: dict) -> None:
        cache = get_cache(kwargs, self.cache_kwarg)
        if not isinstance(cache, CompactingCache):
            cache = CompactingCache(self.num_layers, chunk_size=self.state.chunk_size)
            kwargs[self.cache_kwarg] = cache
        dev = first_tensor(args, kwargs, "inputs_embeds", "input_ids").device
        self.state.cache = cache
        self._sim = torch.ones((self.num_layers, self.batch), dtype=torch.float32, device=dev)
        self._reference = None
        if self._spans is None or self._spans[0].device != dev:
            # non-blocking: the CPU sources stay alive and unchanged in self.span_start/len
            self._spans = (
                self.span_start.to(dev, non_blocking=True),
                self.span_len.to(dev, non_blocking=True),
            )
        self._padding = _key_padding(kwargs.get("attention_mask"), self.batch, self.seq)

    def prefill_layer(self, idx: int, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = first_tensor(args, kwargs, "hidden_states")
        if idx == 0:
            self._reference = hidden  # V: the embeddings entering layer 0 (no copy)
        else:
            start, length = self._spans
            torch.ops.sharpv.layer_similarity(
                hidden, self._reference, start, length, self._sim, idx
            )

    def end_prefill(self) -> None:
        state, sim = self.state, self._sim
        start, length = self._spans
        self._reference = None
        if not all(layer.is_initialized for layer in state.cache.layers):
            raise host_mismatch(
                "Memory SharpV's cache was not filled by the prefill (the model wrote its keys "
                "and values to another cache)"
            )
        compacted = state.cache.compact_(sim, state.threshold, start, length, first_layer=1)
        state.similarities = sim
        state.dropped = compacted & (length > 0)[None, :]
        kept = (~state.dropped).sum(0).to(torch.float32) / self.num_layers
        state.memory_ratio = torch.where(length > 0, kept, torch.ones_like(kept))

    def decode_attention(self, idx: int, module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
        cache = self.state.cache
        seen = self.attention_cache(kwargs)
        if cache is None or seen is None:
            return None  # no generation of ours, or a forward without a cache
        if seen is not cache:
            raise host_mismatch(
                f"decoder layer {idx} decodes with a KV cache other than the one Memory SharpV "
                "installed at the prefill"
            )
        if cache.is_uniform(idx):
            return None
        hidden = first_tensor(args, kwargs, "hidden_states")
        kind = _attn_kind(module.config._attn_implementation)
        kwargs["attention_mask"] = cache.attention_mask(
            idx, hidden.shape[1], self._padding, kind, dtype=hidden.dtype
        )
        return args, kwargs

    def uninstall(self) -> None:
        self._reference = None
        self._spans = None
        self._padding = None


def memory_sharpv(
    model: torch.nn.Module,
    visual_mask: torch.Tensor,
    threshold: float = DEFAULT_MEMORY_THRESHOLD,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> MemorySharpV:
    """Run Memory SharpV on every generation inside the block.

    Args:
        model: a transformers decoder-only LM (Qwen2, Llama, ...) or a LLaVA-style model
            wrapping one; attention ``eager``, ``sdpa`` or ``flash_attention_2``.
        visual_mask: ``(batch, sequence)`` bool, True at the visual positions of the prompt
            (one contiguous span per sample; a sample may have none).
        threshold: ``M``: layer ``l >= 1`` is dropped for a sample when ``sim_l < M``.
        chunk_size: growth step, in tokens, of the cache buffers.

    Returns:
        A context manager whose ``with ... as state`` binds a :class:`MemorySharpVState`,
        filled at the end of each prefill.

    Raises:
        TypeError, ValueError: a bad argument, when called (before any hook is installed);
            ``ValueError`` at the prefill when its ``(batch, sequence)`` is not the mask's.

    The prompt must be processed in one forward (the usual ``generate``), with the same batch
    and sequence length as ``visual_mask``. Beam search and assisted decoding are not supported.
    Host synchronisations: one reading ``visual_mask`` (none if it is on the CPU), three at
    the end of each prefill, none in a decode step (see the module docstring).

    Examples:
        >>> with sharpv.memory_sharpv(model, visual_mask, threshold=0.2) as state:  # doctest: +SKIP
        ...     out = model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=8)
        >>> state.dropped.shape  # doctest: +SKIP
        torch.Size([24, 1])
    """
    return MemorySharpV(model, visual_mask, threshold, chunk_size=chunk_size)
