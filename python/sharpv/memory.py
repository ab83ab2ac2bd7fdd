"""Memory SharpV for transformers models: similarity during prefill, KV compaction after it.

Usage (the public contract)::

    with sharpv.memory_sharpv(model, visual_mask, threshold=0.2) as state:
        out = model.generate(inputs_embeds=..., attention_mask=..., max_new_tokens=16)
    state.similarities  # (layers, batch) float32
    state.dropped       # (layers, batch) bool
    state.memory_ratio  # (batch,) visual KV entries kept / before

Inside the block, hooks (all removed on exit, leaving the model exactly as it was):

* on the text model: the first forward of a generation (empty or no cache) is the prefill; it
  gets a :class:`~sharpv.cache.CompactingCache` instead of the default cache, and when it ends
  the cache is compacted in place (``torch.ops.sharpv.kv_compact_``, one launch, then one
  host synchronisation for the new lengths);
* on every decoder layer: during the prefill, ``torch.ops.sharpv.layer_similarity`` writes
  ``sim_l`` (SPEC Memory SharpV item 2) into a device buffer (no host synchronisation);
* on every attention module: after compaction, the attention mask of a layer whose samples
  lost their visual entries is replaced by one built from the per-sample lengths (eager:
  additive, sdpa: boolean, flash-attention: 2-D key padding), so every backend stays exact.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from .cache import CompactingCache

__all__ = ["memory_sharpv", "MemorySharpVState", "visual_spans", "find_text_model"]

_SUPPORTED_ATTN = ("eager", "sdpa", "flash_attention_2", "flash_attention_3")


@dataclass
class MemorySharpVState:
    """What Memory SharpV measured and decided for the last generation in the block.

    Attributes:
        threshold: the drop threshold ``M``.
        span_start, span_len: ``(B,)`` int64, each sample's visual span (positions).
        similarities: ``(L, B)`` float32, ``sim_l`` per layer and sample (row 0 is 1).
        dropped: ``(L, B)`` bool, the (layer, sample) pairs whose visual entries were removed.
        memory_ratio: ``(B,)`` float32, visual KV entries kept over all layers / before (MR).
        cache: the :class:`CompactingCache` of the last generation.
    """

    threshold: float
    span_start: torch.Tensor
    span_len: torch.Tensor
    similarities: torch.Tensor | None = None
    dropped: torch.Tensor | None = None
    memory_ratio: torch.Tensor | None = None
    cache: CompactingCache | None = None
    chunk_size: int = 256
    # internal
    _phase: str = field(default="idle", repr=False)
    _sim: torch.Tensor | None = field(default=None, repr=False)
    _reference: torch.Tensor | None = field(default=None, repr=False)
    _padding: torch.Tensor | None = field(default=None, repr=False)
    _spans_dev: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)


def visual_spans(visual_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(start, length)`` int64 CPU tensors of each row's single run of True in a
    ``(B, S)`` bool mask; ``(0, 0)`` for a row without True. Raises ``ValueError`` when a row
    has two runs."""
    if not isinstance(visual_mask, torch.Tensor):
        raise TypeError(f"visual_mask must be a torch.Tensor, got {type(visual_mask).__name__}")
    if visual_mask.dim() != 2 or visual_mask.dtype != torch.bool:
        raise ValueError(
            f"visual_mask must be a (batch, sequence) bool tensor, got {visual_mask.dtype} "
            f"of shape {tuple(visual_mask.shape)}"
        )
    m = visual_mask.cpu()
    count = m.sum(1)
    pos = torch.arange(m.shape[1])
    start = torch.where(m, pos, m.shape[1]).min(1).values
    start = torch.where(count > 0, start, 0)
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < (start + count)[:, None])
    if not torch.equal(inside, m):
        raise ValueError("visual_mask must mark one contiguous span of positions per sample")
    return start.long(), count.long()


def find_text_model(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack (the module with ``.layers``) of a causal LM or LLaVA-style model."""
    candidates = []
    inner = getattr(model, "model", None)
    if inner is not None:
        candidates.append(getattr(inner, "language_model", None))
    candidates += [getattr(model, "language_model", None), inner, model]
    for cand in candidates:
        if cand is None:
            continue
        if isinstance(getattr(cand, "layers", None), torch.nn.ModuleList):
            return cand
        sub = getattr(cand, "model", None)  # language_model may itself be a *ForCausalLM
        if sub is not None and isinstance(getattr(sub, "layers", None), torch.nn.ModuleList):
            return sub
    raise ValueError(
        "model must be a transformers decoder-only LM (with .model.layers) or a LLaVA-style "
        "model exposing it as .model.language_model or .language_model"
    )


def _attn_kind(impl: str) -> str:
    if impl == "eager":
        return "eager"
    if impl == "sdpa":
        return "sdpa"
    if "flash" in impl:
        return "flash"
    raise ValueError(f"Memory SharpV supports {_SUPPORTED_ATTN} attention, got {impl!r}")


def _first_tensor(args: tuple, kwargs: dict, *names: str) -> torch.Tensor | None:
    for name in names:
        t = kwargs.get(name)
        if isinstance(t, torch.Tensor):
            return t
    return args[0] if args and isinstance(args[0], torch.Tensor) else None


def _key_padding(mask: Any, bsz: int, seq: int) -> torch.Tensor | None:
    """(B, S) bool "is a real token" for the prompt from the mask the text model receives."""
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
    return None if bool(pad.all()) else pad.expand(bsz, seq)


@contextlib.contextmanager
def memory_sharpv(
    model: torch.nn.Module,
    visual_mask: torch.Tensor,
    threshold: float = 0.2,
    *,
    chunk_size: int = 256,
) -> Iterator[MemorySharpVState]:
    """Run Memory SharpV on every generation inside the block.

    Args:
        model: a transformers decoder-only LM (Qwen2, Llama, ...) or a LLaVA-style model
            wrapping one; attention ``eager``, ``sdpa`` or ``flash_attention_2``.
        visual_mask: ``(batch, sequence)`` bool, True at the visual positions of the prompt
            (one contiguous span per sample; a sample may have none).
        threshold: ``M``: layer ``l >= 1`` is dropped for a sample when ``sim_l < M``.
        chunk_size: growth step, in tokens, of the cache buffers.

    Yields:
        A :class:`MemorySharpVState`, filled at the end of each prefill.

    The prompt must be processed in one forward (the usual ``generate``), with the same batch
    and sequence length as ``visual_mask``. Beam search and assisted decoding are not supported.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a float, got {type(threshold).__name__}")
    if threshold != threshold:
        raise ValueError("threshold must not be NaN")
    start, length = visual_spans(visual_mask)
    text = find_text_model(model)
    layers = list(text.layers)
    n_layers = len(layers)
    attn_modules = []
    for idx, layer in enumerate(layers):
        attn = getattr(layer, "self_attn", None)
        if attn is None:
            raise ValueError(f"decoder layer {idx} has no self_attn module")
        _attn_kind(attn.config._attn_implementation)
        attn_modules.append(attn)
    bsz, seq = visual_mask.shape
    state = MemorySharpVState(
        threshold=float(threshold), span_start=start, span_len=length, chunk_size=chunk_size
    )
    handles = []

    def text_pre(module, args, kwargs):
        cache = kwargs.get("past_key_values")
        if cache is not None and cache.get_seq_length() > 0:
            return None
        if kwargs.get("use_cache") is False:
            return None
        x = _first_tensor(args, kwargs, "inputs_embeds", "input_ids")
        if x is None or tuple(x.shape[:2]) != (bsz, seq):
            got = None if x is None else tuple(x.shape[:2])
            raise ValueError(
                f"the prefill has (batch, sequence) {got} but visual_mask has {(bsz, seq)}"
            )
        if not isinstance(cache, CompactingCache):
            cache = CompactingCache(n_layers, chunk_size=chunk_size)
            kwargs["past_key_values"] = cache
        dev = x.device
        state.cache = cache
        state._phase = "prefill"
        state._sim = torch.ones((n_layers, bsz), dtype=torch.float32, device=dev)
        state._reference = None
        state._spans_dev = (start.to(dev), length.to(dev))
        state._padding = _key_padding(kwargs.get("attention_mask"), bsz, seq)
        return args, kwargs

    def text_post(module, args, kwargs, output):
        if state._phase != "prefill":
            return None
        cache = state.cache
        sim = state._sim
        s_dev, n_dev = state._spans_dev
        state._reference = None
        compacted = cache.compact_(sim, state.threshold, s_dev, n_dev, first_layer=1)
        state.similarities = sim
        state.dropped = compacted & (n_dev > 0)[None, :]
        kept = (~state.dropped).sum(0).to(torch.float32) / n_layers
        state.memory_ratio = torch.where(n_dev > 0, kept, torch.ones_like(kept))
        state._phase = "decode"
        return None

    def make_layer_pre(idx):
        def layer_pre(module, args, kwargs):
            if state._phase != "prefill":
                return None
            hidden = _first_tensor(args, kwargs, "hidden_states")
            if idx == 0:
                state._reference = hidden  # V: the embeddings entering layer 0 (no copy)
            else:
                s_dev, n_dev = state._spans_dev
                torch.ops.sharpv.layer_similarity(
                    hidden, state._reference, s_dev, n_dev, state._sim, idx
                )
            return None

        return layer_pre

    def make_attn_pre(idx):
        def attn_pre(module, args, kwargs):
            cache = state.cache
            if state._phase != "decode" or cache is None or cache.is_uniform(idx):
                return None
            if kwargs.get("past_key_values", cache) is not cache:
                return None
            hidden = _first_tensor(args, kwargs, "hidden_states")
            kind = _attn_kind(module.config._attn_implementation)
            kwargs["attention_mask"] = cache.attention_mask(
                idx, hidden.shape[1], state._padding, kind, dtype=hidden.dtype
            )
            return args, kwargs

        return attn_pre

    try:
        handles.append(text.register_forward_pre_hook(text_pre, with_kwargs=True))
        handles.append(text.register_forward_hook(text_post, with_kwargs=True))
        for idx, (layer, attn) in enumerate(zip(layers, attn_modules, strict=True)):
            handles.append(layer.register_forward_pre_hook(make_layer_pre(idx), with_kwargs=True))
            handles.append(attn.register_forward_pre_hook(make_attn_pre(idx), with_kwargs=True))
        yield state
    finally:
        for h in handles:
            h.remove()
        state._reference = None
        state._spans_dev = None
