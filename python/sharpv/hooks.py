"""One base for every method that acts inside the LLM during ``generate`` (Memory SharpV, FastV).

:class:`GenerationHooks` is a context manager that owns the machinery those methods share:
it finds the decoder stack of the model, reads the visual span of every sample, registers
forward hooks, tells the prefill (the first forward of a generation, with no cache or an
empty one) from the decode steps, and removes every hook on exit, leaving the model exactly
as it was. A method subclasses it and overrides only its decisions:

========================================  ==================================================
``start_prefill(args, kwargs)``           a prefill begins (may replace the cache, check the
                                          mask)
``prefill_layer(idx, module, args, kw)``  the input of a hooked decoder layer, during prefill
``end_prefill()``                         the prefill's decoder stack returned
``decode_attention(idx, module, ...)``    the input of a hooked attention module, while
                                          decoding
``install()`` / ``uninstall()``           extra hooks (:meth:`GenerationHooks.hook`) and
                                          their clean-up
========================================  ==================================================

The layer and attention callbacks follow the forward-pre-hook contract of
``torch.nn.Module.register_forward_pre_hook(..., with_kwargs=True)``: return ``None`` to
leave the call alone or a new ``(args, kwargs)`` pair.

Examples:
    >>> import torch
    >>> from sharpv.hooks import visual_spans
    >>> mask = torch.tensor([[False, True, True, False], [False, False, False, False]])
    >>> start, length = visual_spans(mask)
    >>> start.tolist(), length.tolist()
    ([1, 0], [2, 0])
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = [
    "GenerationHooks",
    "HostMismatchError",
    "CACHE_KWARGS",
    "cache_kwarg",
    "get_cache",
    "visual_spans",
    "find_text_model",
    "first_tensor",
    "IDLE",
    "PREFILL",
    "DECODE",
]

#: the phases of a generation seen by the hooks
IDLE, PREFILL, DECODE = "idle", "prefill", "decode"

#: The keywords under which transformers passes the KV cache to a module's ``forward``, newest
#: first: ``cache`` from 5.24 (``past_key_values`` is its deprecated alias there), before that
#: ``past_key_values`` (``past_key_value`` in the attention modules of some older releases).
CACHE_KWARGS = ("cache", "past_key_values", "past_key_value")


class HostMismatchError(RuntimeError):
    """The running host library (transformers) does not behave as the hooks expect: going on
    would give a result that silently lacks the pruning, so the generation stops instead."""


def host_mismatch(detail: str) -> HostMismatchError:
    """A :class:`HostMismatchError` for ``detail``, naming the installed transformers and the
    tested range (:data:`sharpv._hosts.TESTED`)."""
    from sharpv._hosts import describe

    return HostMismatchError(f"{detail}; {describe('transformers')}")


def cache_kwarg(module: torch.nn.Module) -> str:
    """The keyword under which ``module.forward`` takes the KV cache in the running transformers.

    Read from the signature (``deprecate_kwarg`` keeps the wrapped function's), newest name
    first, so the same code serves transformers 4.57 through 5.x.

    Raises:
        HostMismatchError: the forward takes none of :data:`CACHE_KWARGS`.

    Examples:
        >>> import torch
        >>> class Layer(torch.nn.Module):
        ...     def forward(self, hidden_states, cache=None):
        ...         return hidden_states
        >>> cache_kwarg(Layer())
        'cache'
    """
    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):  # a builtin or otherwise unreadable forward
        params = {}
    for name in CACHE_KWARGS:
        if name in params:
            return name
    raise host_mismatch(
        f"{type(module).__name__}.forward takes no KV-cache argument (none of "
        f"{', '.join(CACHE_KWARGS)})"
    )


def get_cache(kwargs: dict, name: str) -> Any:
    """The cache passed as ``kwargs[name]`` (``None`` if absent).

    Raises:
        HostMismatchError: a cache also arrives under another of :data:`CACHE_KWARGS`: the
            module was called with a keyword the running transformers does not read.
    """
    cache = kwargs.get(name)
    for other in CACHE_KWARGS:
        if other != name and kwargs.get(other) is not None:
            raise host_mismatch(
                f"a KV cache was passed as {other!r}, but this transformers release reads {name!r}"
            )
    return cache


def visual_spans(visual_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's single run of True in a ``(B, S)`` bool mask.

    Args:
        visual_mask: ``(B, S)`` bool, on any device (read once on the host).

    Returns:
        ``(start, length)``, two ``(B,)`` int64 CPU tensors; ``(0, 0)`` for a row with no True.

    Raises:
        TypeError: ``visual_mask`` is not a tensor.
        ValueError: not a 2-D bool tensor, or a row holds two separate runs.

    Examples:
        >>> import torch
        >>> visual_spans(torch.tensor([[0, 1, 1, 1, 0]], dtype=torch.bool))
        (tensor([1]), tensor([3]))
    """
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
    start = torch.where(m, pos, m.shape[1]).min(1).values if m.shape[1] else count
    start = torch.where(count > 0, start, 0)
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < (start + count)[:, None])
    if not torch.equal(inside, m):
        raise ValueError("visual_mask must mark one contiguous span of positions per sample")
    return start.long(), count.long()


def find_text_model(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack (the module with ``.layers``) of a causal LM or LLaVA-style model.

    Looks at ``model.model.language_model``, ``model.language_model``, ``model.model`` and
    ``model`` itself, and one ``.model`` below each (a ``language_model`` may be a whole
    ``*ForCausalLM``).

    Raises:
        ValueError: no candidate has a ``layers`` ``ModuleList``.

    Examples:
        >>> from transformers import Qwen2Config, Qwen2ForCausalLM
        >>> cfg = Qwen2Config(vocab_size=32, hidden_size=16, intermediate_size=32,
        ...                   num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)
        >>> lm = Qwen2ForCausalLM(cfg)
        >>> find_text_model(lm) is lm.model
        True
    """
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
        sub = getattr(cand, "model", None)
        if sub is not None and isinstance(getattr(sub, "layers", None), torch.nn.ModuleList):
            return sub
    raise ValueError(
        "model must be a transformers decoder-only LM (with .model.layers) or a LLaVA-style "
        "model exposing it as .model.language_model or .language_model"
    )


def first_tensor(args: tuple, kwargs: dict, *names: str) -> torch.Tensor | None:
    """The first tensor among ``kwargs[name]`` for ``names`` in order, else ``args[0]``.

    Examples:
        >>> import torch
        >>> x = torch.zeros(1)
        >>> first_tensor((), {"hidden_states": x}, "hidden_states") is x
        True
    """
    for name in names:
        t = kwargs.get(name)
        if isinstance(t, torch.Tensor):
            return t
    return args[0] if args and isinstance(args[0], torch.Tensor) else None


class GenerationHooks:
    """Base context manager: the hooks of an in-LLM method on every generation in the block.

    Args:
        model: a transformers decoder-only LM or a LLaVA-style model wrapping one.
        visual_mask: ``(B, S)`` bool, True at the visual positions of the prompt (one
            contiguous span per sample; a sample may have none).

    Attributes:
        text: the decoder stack (:func:`find_text_model`).
        layers: its decoder layers, a list.
        span_start, span_len: ``(B,)`` int64 CPU tensors, each sample's visual span.
        batch, seq: the prompt shape the prefill must have.
        phase: ``"idle"``, ``"prefill"`` or ``"decode"``.
        cache_kwarg: the keyword of the KV cache in the decoder stack's forward
            (:func:`cache_kwarg`); :meth:`attention_cache` reads it in an attention hook.

    Subclasses set :attr:`layer_hooks` / :attr:`attention_hooks` (which layers get which
    hook), :attr:`needs_cache` (skip forwards called with ``use_cache=False``), and override
    the decisions listed in the module docstring. ``__enter__`` returns :meth:`result`.

    Examples:
        >>> class CountPrefills(GenerationHooks):
        ...     def __init__(self, model, visual_mask):
        ...         super().__init__(model, visual_mask)
        ...         self.count = 0
        ...     def end_prefill(self):
        ...         self.count += 1
        >>> # with CountPrefills(model, visual_mask) as hooks: model.generate(...)
    """

    #: method name used in error messages
    name = "this method"
    #: a forward with ``use_cache=False`` is no prefill (it does not start a generation)
    needs_cache = False

    def __init__(self, model: torch.nn.Module, visual_mask: torch.Tensor) -> None:
        self.span_start, self.span_len = visual_spans(visual_mask)
        self.text = find_text_model(model)
        self.layers: list[torch.nn.Module] = list(self.text.layers)
        self.batch, self.seq = (int(n) for n in visual_mask.shape)
        self.cache_kwarg = cache_kwarg(self.text)
        self._attention_kwarg = self.cache_kwarg
        self.phase = IDLE
        self._handles: list[Any] = []

    # ------------------------------------------------------------------ what subclasses set

    @property
    def num_layers(self) -> int:
        """Decoder layers of the LM."""
        return len(self.layers)

    def layer_hooks(self) -> Iterable[int]:
        """Decoder layers whose input goes to :meth:`prefill_layer` (default: none)."""
        return ()

    def attention_hooks(self) -> Iterable[int]:
        """Layers whose attention input goes to :meth:`decode_attention` (default: none)."""
        return ()

    def result(self) -> Any:
        """What ``with ... as x`` binds (default: the hooks object itself)."""
        return self

    def start_prefill(self, args: tuple, kwargs: dict) -> None:
        """A prefill begins; ``kwargs`` (the decoder stack's) may be changed in place."""

    def prefill_layer(self, idx: int, module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
        """Input of hooked decoder layer ``idx`` during prefill: ``None`` or ``(args, kwargs)``."""
        return None

    def end_prefill(self) -> None:
        """The decoder stack finished the prefill forward."""

    def decode_attention(self, idx: int, module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
        """Input of hooked attention module ``idx`` in a decode step: ``None`` or
        ``(args, kwargs)``."""
        return None

    def install(self) -> None:
        """Register extra hooks with :meth:`hook` (called by ``__enter__``)."""

    def uninstall(self) -> None:
        """Undo what the method changed besides its hooks (called by ``__exit__``)."""

    # ------------------------------------------------------------------ machinery

    def attention_cache(self, kwargs: dict) -> Any:
        """The KV cache an attention module was called with (``None`` if none), read under the
        keyword the running transformers uses (:func:`get_cache`)."""
        return get_cache(kwargs, self._attention_kwarg)

    def hook(
        self,
        module: torch.nn.Module,
        *,
        pre: Callable[..., Any] | None = None,
        post: Callable[..., Any] | None = None,
    ) -> None:
        """Register a ``with_kwargs`` forward pre-hook and/or hook, removed on exit."""
        if pre is not None:
            self._handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        if post is not None:
            self._handles.append(module.register_forward_hook(post, with_kwargs=True))

    def _text_pre(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
        cache = get_cache(kwargs, self.cache_kwarg)
        if cache is not None and cache.get_seq_length() > 0:
            return None  # a decode step
        if self.needs_cache and kwargs.get("use_cache") is False:
            return None
        x = first_tensor(args, kwargs, "inputs_embeds", "input_ids")
        if x is None or tuple(x.shape[:2]) != (self.batch, self.seq):
            got = None if x is None else tuple(x.shape[:2])
            raise ValueError(
                f"the prefill has (batch, sequence) {got} but visual_mask has "
                f"{(self.batch, self.seq)}"
            )
        self.start_prefill(args, kwargs)
        self.phase = PREFILL
        return args, kwargs

    def _text_post(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if self.phase == PREFILL:
            self.end_prefill()
            self.phase = DECODE

    def _layer_pre(self, idx: int) -> Callable[..., Any]:
        def pre(module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
            if self.phase != PREFILL:
                return None
            return self.prefill_layer(idx, module, args, kwargs)

        return pre

    def _attention_pre(self, idx: int) -> Callable[..., Any]:
        def pre(module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
            if self.phase != DECODE:
                return None
            return self.decode_attention(idx, module, args, kwargs)

        return pre

    def __enter__(self) -> Any:
        if self._handles:
            raise RuntimeError(f"{self.name} hooks are already installed (nested `with`?)")
        try:
            self.hook(self.text, pre=self._text_pre, post=self._text_post)
            for idx in self.layer_hooks():
                self.hook(self.layers[idx], pre=self._layer_pre(idx))
            for idx in self.attention_hooks():
                attn = self.layers[idx].self_attn
                self._attention_kwarg = cache_kwarg(attn)
                self.hook(attn, pre=self._attention_pre(idx))
            self.install()
        except BaseException:
            self._remove()
            raise
        return self.result()

    def __exit__(self, *exc: object) -> None:
        self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.phase = IDLE
        self.uninstall()
