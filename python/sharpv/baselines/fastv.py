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

Built on :class:`sharpv.hooks.GenerationHooks` (hook registration and removal, prefill
detection); this module holds only FastV's decisions. No host synchronisation in a decode step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from ..hooks import PREFILL, GenerationHooks, first_tensor

__all__ = ["FastV", "FastVState", "fastv", "fastv_keep_count"]


def fastv_keep_count(n_visual: int, keep_ratio: float) -> int:
    """Visual tokens FastV keeps for layers ``>= K``: ``round(keep_ratio * n)``, at least 1
    when ``n > 0``.

    Examples:
        >>> fastv_keep_count(16, 0.3), fastv_keep_count(1, 0.1), fastv_keep_count(0, 0.5)
        (5, 1, 0)
    """
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


def _gather_seq(x: torch.Tensor, index: torch.Tensor, dim: int) -> torch.Tensor:
    """Gather ``x`` along ``dim`` with a per-sample ``(B, S')`` index (x's batch dim may be 1)."""
    B = index.shape[0]
    if x.shape[0] != B:
        x = x.expand(B, *x.shape[1:])
    idx = index.view(B, *([1] * (dim - 1)), index.shape[1], *([1] * (x.dim() - dim - 1)))
    expand = list(x.shape)
    expand[dim] = index.shape[1]
    return torch.gather(x, dim, idx.expand(*expand))


class FastV(GenerationHooks):
    """The hooks of FastV (see :func:`fastv`, which builds them)."""

    name = "fastv"

    def __init__(
        self,
        model: torch.nn.Module,
        visual_mask: torch.Tensor,
        *,
        layer: int = 3,
        keep_ratio: float = 0.3,
    ) -> None:
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise TypeError(f"layer must be an int, got {type(layer).__name__}")
        if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float)):
            raise TypeError(f"keep_ratio must be a real number, got {type(keep_ratio).__name__}")
        if not 0.0 < keep_ratio <= 1.0:
            raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
        super().__init__(model, visual_mask)
        n_layers = self.num_layers
        if not 1 <= layer <= n_layers - 1:
            raise ValueError(
                f"layer must be in [1, {n_layers - 1}] for a {n_layers}-layer model, got {layer}"
            )
        if bool((self.span_len != self.span_len[0]).any()):
            raise ValueError("fastv needs the same number of visual tokens in every sample")
        self.layer = layer
        self.n_visual = int(self.span_len[0])
        self.n_keep = fastv_keep_count(self.n_visual, float(keep_ratio))
        self.state = FastVState(layer, float(keep_ratio), n_layers, self.span_start, self.span_len)
        self._score_attn = self.layers[layer - 1].self_attn
        self._eager_config = copy.copy(self._score_attn.config)
        self._eager_config._attn_implementation = "eager"
        self._saved_config: list[Any] = []
        self._index: torch.Tensor | None = None  # (B, S') positions layers >= K keep
        self._gathered: dict[str, Any] | None = None  # their rotary embeddings, ids, mask

    def layer_hooks(self) -> range:
        return range(self.layer, self.num_layers)

    def attention_hooks(self) -> range:
        return range(self.layer, self.num_layers)

    def result(self) -> FastVState:
        return self.state

    def install(self) -> None:
        self.hook(self._score_attn, pre=self._score_pre, post=self._score_post)

    def uninstall(self) -> None:
        while self._saved_config:
            self._score_attn.config = self._saved_config.pop()
        self._index = None
        self._gathered = None

    def start_prefill(self, args: tuple, kwargs: dict) -> None:
        am = kwargs.get("attention_mask")
        if isinstance(am, torch.Tensor) and am.dim() == 2 and not bool(am.bool().all()):
            raise ValueError("fastv does not support padded batches")
        self._index = None
        self._gathered = None

    def end_prefill(self) -> None:
        self._gathered = None

    # layer K - 1: eager attention during prefill, whose weights rank the visual tokens
    def _score_pre(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
        if self.phase != PREFILL:
            return None
        hidden = first_tensor(args, kwargs, "hidden_states")
        S = hidden.shape[1]
        mask = torch.full((S, S), torch.finfo(hidden.dtype).min, dtype=hidden.dtype,
                          device=hidden.device).triu_(1)  # fmt: skip
        kwargs["attention_mask"] = mask[None, None]
        self._saved_config.append(module.config)
        module.config = self._eager_config
        return args, kwargs

    def _score_post(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        if self.phase != PREFILL:
            return None
        module.config = self._saved_config.pop()
        weights = output[1]  # (B, H, S, S)
        dev = weights.device
        bsz, seq, n_vis, n_keep = self.batch, self.seq, self.n_visual, self.n_keep
        last = weights[:, :, -1, :].float().mean(1)  # (B, S)
        s0 = self.span_start.to(dev)
        vis_pos = s0[:, None] + torch.arange(n_vis, device=dev)[None, :]
        scores = torch.gather(last, 1, vis_pos)
        order = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :n_keep]
        kept = torch.sort(order, dim=1).values
        pos = torch.arange(seq, device=dev)[None, :].expand(bsz, seq)
        text_pos = pos[(pos < s0[:, None]) | (pos >= (s0 + n_vis)[:, None])].view(bsz, -1)
        index = torch.sort(torch.cat([text_pos, s0[:, None] + kept], dim=1), dim=1).values
        state = self.state
        state.scores, state.kept, self._index = scores, kept, index
        K, L = self.layer, self.num_layers
        mr = (K * n_vis + (L - K) * n_keep) / (L * n_vis) if n_vis else 1.0
        state.memory_ratio = torch.full((bsz,), mr, dtype=torch.float32)
        return (output[0], None)

    def prefill_layer(self, idx: int, module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
        index = self._index
        if index is None:
            return None
        if self._gathered is None:
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
            self._gathered = g
        if idx == self.layer:
            if args:
                args = (_gather_seq(args[0], index, 1),) + tuple(args[1:])
            else:
                kwargs["hidden_states"] = _gather_seq(kwargs["hidden_states"], index, 1)
        kwargs.update(self._gathered)
        return args, kwargs

    def decode_attention(self, idx: int, module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
        am = kwargs.get("attention_mask")
        cache = self.attention_cache(kwargs)
        if not isinstance(am, torch.Tensor) or am.dim() != 4 or cache is None:
            return None
        hidden = first_tensor(args, kwargs, "hidden_states")
        kv_len = cache.get_seq_length(idx) + hidden.shape[1]
        if am.shape[-1] > kv_len:
            kwargs["attention_mask"] = am[..., -kv_len:]
            return args, kwargs
        return None


def fastv(
    model: torch.nn.Module,
    visual_mask: torch.Tensor,
    *,
    layer: int = 3,
    keep_ratio: float = 0.3,
) -> FastV:
    """Run FastV on every generation inside the block.

    Args:
        model: a transformers decoder LM (Qwen2, Llama, ...) or a LLaVA-style model wrapping one.
        visual_mask: ``(B, S)`` bool, True at the visual positions of the prompt (one
            contiguous span per sample, the same length in every sample).
        layer: ``K`` in ``[1, L - 1]``: layers ``>= K`` see the kept visual tokens only.
        keep_ratio: fraction of the visual tokens kept, in ``(0, 1]`` (0.3 in the SharpV
            paper's comparison).

    Returns:
        A context manager whose ``with ... as state`` binds a :class:`FastVState`, filled at
        the end of each prefill.

    Raises:
        TypeError, ValueError: a bad argument, when called (before any hook is installed).

    Examples:
        >>> with fastv(model, visual_mask, layer=2, keep_ratio=0.5) as st:  # doctest: +SKIP
        ...     out = model.generate(inputs_embeds=embeds, max_new_tokens=8)
        >>> st.kept.shape  # (batch, kept visual tokens)  # doctest: +SKIP
        torch.Size([1, 8])
    """
    return FastV(model, visual_mask, layer=layer, keep_ratio=keep_ratio)
