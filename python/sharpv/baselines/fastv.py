"""FastV (Chen et al., ECCV 2024): attention-score pruning of visual tokens inside the LLM.

During prefill, decoder layer ``K - 1`` runs with EAGER attention (whatever the model's
attention backend) so that its attention weights exist; the weights of the LAST prompt
token over the visual tokens, averaged over heads, rank the visual tokens. Layers ``>= K``
then see only the top ``keep_ratio`` fraction of the visual tokens (and every text token):
their hidden states are gathered, the rotary position embeddings are gathered at the
ORIGINAL positions (no re-numbering), and the attention mask likewise. Layers ``>= K``
therefore also cache only the kept visual entries, while layers ``< K`` cache all of them.
Decoding continues at the original positions (the first layers' caches still hold the full
prompt).

Limits (checked, ``ValueError``): every sample of the batch must have the same prompt length
without padding and the same number of visual tokens (one contiguous span each); the
prompt must be processed in one forward (the usual ``generate``); greedy/sampling decoding
only (no beam search). Works for decoder LMs whose layers take ``position_embeddings`` as a
``(cos, sin)`` pair (Qwen2, Llama and the LLaVA models built on them).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["FastVState", "fastv", "fastv_keep_count"]


def fastv_keep_count(n_visual: int, keep_ratio: float) -> int:
    """Visual tokens FastV keeps for layers ``>= K``: ``round(keep_ratio * n)``, at least 1
    when ``n > 0``."""
    if n_visual == 0:
        return 0
    return min(n_visual, max(1, int(round(keep_ratio * n_visual))))


@dataclass
class FastVState:
    """What :func:`fastv` did at the last prefill.

    Attributes:
        layer: ``K``, the first layer that sees only the kept visual tokens.
        keep_ratio: fraction of the visual tokens kept for layers ``>= K``.
        num_layers: decoder layers of the LM.
        span_start, span_len: ``(B,)`` int64 visual span of every sample.
        scores: ``(B, n_visual)`` float32 attention of the last prompt token over the visual
            tokens in layer ``K - 1`` (head mean), filled at prefill.
        kept: ``(B, n_keep)`` int64 kept visual tokens, relative to the span, increasing.
        memory_ratio: ``(B,)`` float32 visual KV entries kept over all layers / before:
            ``(K n + (L - K) n_keep) / (L n)``.
    """

    layer: int
    keep_ratio: float
    num_layers: int
    span_start: torch.Tensor
    span_len: torch.Tensor
    scores: torch.Tensor | None = None
    kept: torch.Tensor | None = None
    memory_ratio: torch.Tensor | None = None
    _phase: str = field(default="idle", repr=False)
    _index: torch.Tensor | None = field(default=None, repr=False)
    _gathered: dict[str, Any] | None = field(default=None, repr=False)


def _find_text_model(model: torch.nn.Module) -> torch.nn.Module:
    from ..memory import find_text_model

    return find_text_model(model)


def _gather_seq(x: torch.Tensor, index: torch.Tensor, dim: int) -> torch.Tensor:
    """Gather ``x`` along ``dim`` with a per-sample ``(B, S')`` index (x's batch dim may be 1)."""
    B = index.shape[0]
    if x.shape[0] != B:
        x = x.expand(B, *x.shape[1:])
    shape = [B] + [1] * (x.dim() - 1)
    shape[dim] = index.shape[1]
    idx = index.view(B, *([1] * (dim - 1)), index.shape[1], *([1] * (x.dim() - dim - 1)))
    expand = list(x.shape)
    expand[dim] = index.shape[1]
    return torch.gather(x, dim, idx.expand(*expand))


@contextlib.contextmanager
def fastv(
    model: torch.nn.Module,
    visual_mask: torch.Tensor,
    *,
    layer: int = 3,
    keep_ratio: float = 0.3,
) -> Iterator[FastVState]:
    """Run FastV on every generation inside the block.

    Args:
        model: a transformers decoder LM (Qwen2, Llama, ...) or a LLaVA-style model wrapping one.
        visual_mask: ``(B, S)`` bool, True at the visual positions of the prompt (one
            contiguous span per sample, the same length in every sample).
        layer: ``K`` in ``[1, L - 1]``: layers ``>= K`` see the kept visual tokens only.
        keep_ratio: fraction of the visual tokens kept, in ``(0, 1]`` (0.3 in the SharpV
            paper's comparison).

    Yields:
        A :class:`FastVState`, filled at the end of each prefill.
    """
    from ..memory import visual_spans

    if isinstance(layer, bool) or not isinstance(layer, int):
        raise TypeError(f"layer must be an int, got {type(layer).__name__}")
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float)):
        raise TypeError(f"keep_ratio must be a real number, got {type(keep_ratio).__name__}")
    if not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    text = _find_text_model(model)
    layers = list(text.layers)
    L = len(layers)
    if not 1 <= layer <= L - 1:
        raise ValueError(f"layer must be in [1, {L - 1}] for a {L}-layer model, got {layer}")
    start, length = visual_spans(visual_mask)
    if bool((length != length[0]).any()):
        raise ValueError("fastv needs the same number of visual tokens in every sample")
    bsz, seq = visual_mask.shape
    n_vis = int(length[0])
    n_keep = fastv_keep_count(n_vis, float(keep_ratio))
    state = FastVState(layer, float(keep_ratio), L, start, length)
    score_attn = layers[layer - 1].self_attn
    eager_config = copy.copy(score_attn.config)
    eager_config._attn_implementation = "eager"
    saved_config: list[Any] = []

    def text_pre(module, args, kwargs):
        cache = kwargs.get("past_key_values")
        if cache is not None and cache.get_seq_length() > 0:
            return None
        x = kwargs.get("inputs_embeds")
        if x is None:
            x = kwargs.get("input_ids", args[0] if args else None)
        if x is None or tuple(x.shape[:2]) != (bsz, seq):
            got = None if x is None else tuple(x.shape[:2])
            raise ValueError(f"the prefill has (batch, sequence) {got} but visual_mask has "
                             f"{(bsz, seq)}")  # fmt: skip
        am = kwargs.get("attention_mask")
        if isinstance(am, torch.Tensor) and am.dim() == 2 and not bool(am.bool().all()):
            raise ValueError("fastv does not support padded batches")
        state._phase = "prefill"
        state._index = None
        state._gathered = None
        return None

    def text_post(module, args, kwargs, output):
        if state._phase == "prefill":
            state._phase = "decode"
            state._gathered = None
        return None

    def score_pre(module, args, kwargs):
        if state._phase != "prefill":
            return None
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        S = hidden.shape[1]
        mask = torch.full((S, S), torch.finfo(hidden.dtype).min, dtype=hidden.dtype,
                          device=hidden.device).triu_(1)  # fmt: skip
        kwargs["attention_mask"] = mask[None, None]
        saved_config.append(module.config)
        module.config = eager_config
        return args, kwargs

    def score_post(module, args, kwargs, output):
        if state._phase != "prefill":
            return None
        module.config = saved_config.pop()
        weights = output[1]  # (B, H, S, S)
        dev = weights.device
        last = weights[:, :, -1, :].float().mean(1)  # (B, S)
        s0 = start.to(dev)
        vis_pos = s0[:, None] + torch.arange(n_vis, device=dev)[None, :]
        scores = torch.gather(last, 1, vis_pos)
        order = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :n_keep]
        kept = torch.sort(order, dim=1).values
        pos = torch.arange(seq, device=dev)[None, :].expand(bsz, seq)
        text_pos = pos[(pos < s0[:, None]) | (pos >= (s0 + n_vis)[:, None])].view(bsz, -1)
        index = torch.sort(torch.cat([text_pos, s0[:, None] + kept], dim=1), dim=1).values
        state.scores, state.kept, state._index = scores, kept, index
        mr = (layer * n_vis + (L - layer) * n_keep) / (L * n_vis) if n_vis else 1.0
        state.memory_ratio = torch.full((bsz,), mr, dtype=torch.float32)
        return (output[0], None)

    def make_layer_pre(idx):
        def layer_pre(module, args, kwargs):
            if state._phase != "prefill" or state._index is None:
                return None
            index = state._index
            if state._gathered is None:
                g: dict[str, Any] = {}
                cos, sin = kwargs["position_embeddings"]
                g["position_embeddings"] = (_gather_seq(cos, index, 1), _gather_seq(sin, index, 1))
                pid = kwargs.get("position_ids")
                if isinstance(pid, torch.Tensor) and pid.dim() == 2:
                    g["position_ids"] = _gather_seq(pid, index, 1)
                am = kwargs.get("attention_mask")
                if isinstance(am, torch.Tensor) and am.dim() == 4:
                    am = _gather_seq(am, index, 2)
                    g["attention_mask"] = _gather_seq(am, index, 3)
                state._gathered = g
            if idx == layer:
                if args:
                    args = (_gather_seq(args[0], index, 1),) + tuple(args[1:])
                else:
                    kwargs["hidden_states"] = _gather_seq(kwargs["hidden_states"], index, 1)
            kwargs.update(state._gathered)
            return args, kwargs

        return layer_pre

    def make_attn_pre(idx):
        def attn_pre(module, args, kwargs):
            if state._phase != "decode":
                return None
            am = kwargs.get("attention_mask")
            cache = kwargs.get("past_key_values")
            if not isinstance(am, torch.Tensor) or am.dim() != 4 or cache is None:
                return None
            hidden = kwargs.get("hidden_states", args[0] if args else None)
            kv_len = cache.get_seq_length(idx) + hidden.shape[1]
            if am.shape[-1] > kv_len:
                kwargs["attention_mask"] = am[..., -kv_len:]
                return args, kwargs
            return None

        return attn_pre

    handles = []
    try:
        handles.append(text.register_forward_pre_hook(text_pre, with_kwargs=True))
        handles.append(text.register_forward_hook(text_post, with_kwargs=True))
        handles.append(score_attn.register_forward_pre_hook(score_pre, with_kwargs=True))
        handles.append(score_attn.register_forward_hook(score_post, with_kwargs=True))
        for idx in range(layer, L):
            handles.append(
                layers[idx].register_forward_pre_hook(make_layer_pre(idx), with_kwargs=True)
            )
            handles.append(
                layers[idx].self_attn.register_forward_pre_hook(make_attn_pre(idx),
                                                                with_kwargs=True)
            )  # fmt: skip
        yield state
    finally:
        for h in handles:
            h.remove()
        while saved_config:
            score_attn.config = saved_config.pop()
        state._index = None
        state._gathered = None
