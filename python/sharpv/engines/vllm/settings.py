"""The ``sharpv`` block: parsing, validation, per-request options, the prompt's token count.

vLLM passes ``--hf-overrides '{"sharpv": {...}}'`` into the checkpoint's Hugging Face config,
so the server's block reaches the model as ``hf_config.sharpv`` (a dict). A request may carry
its own block as ``mm_processor_kwargs={"sharpv": {...}}``; its keys override the server's
for that request (:func:`request_settings`). Both go through one validation function,
:func:`validate_block`, which hands the block to the method registry
(:func:`sharpv.methods.engine_options`): a bad block fails with the message the Python API,
the command line and lmms-eval give for the same options. This module has no vLLM import.

A block names a registered method (``"method"``, default ``"sharpv"``) and its options. Any
method whose token count is fixed before the features exist is accepted (SPEC "Inside
engines", item 1; a user's method too, registered through the ``sharpv.methods`` entry points
or a module named in ``SHARPV_METHOD_MODULES``, so that vLLM's worker processes see it). For
``sharpv`` the block's defaults are the engine's: ``mode="budget"`` and ``memory=false``.
Memory SharpV needs per-layer KV removal, which vLLM's paged cache cannot do (one block table
serves every layer of a group).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sharpv.methods import EngineMethod, MethodOptionError, engine_options, get, names

__all__ = [
    "ENGINE_DEFAULTS",
    "MEMORY_UNSUPPORTED",
    "METHOD_KEY",
    "OPTIONS_WIDTH",
    "REQUEST_KEY",
    "VllmSharpVSettings",
    "request_settings",
    "settings_from_hf_config",
    "split_request_block",
    "validate_block",
]

#: the key of a request's block in ``mm_processor_kwargs``
REQUEST_KEY = "sharpv"
#: the key of a block that names its method (the rest are the method's options)
METHOD_KEY = "method"
#: what a block means when it leaves these options out, per method: an engine sizes the
#: prompt before the features exist and cannot drop KV entries per layer
ENGINE_DEFAULTS: dict[str, dict[str, Any]] = {"sharpv": {"mode": "budget", "memory": False}}
#: columns of :meth:`VllmSharpVSettings.as_row`: the method, then one per option
OPTIONS_WIDTH = 16

#: Why Memory SharpV is refused (part of the error text).
MEMORY_UNSUPPORTED = (
    "Memory SharpV is not available in vLLM: its paged KV cache shares one block table "
    "across the layers of a KV-cache group, so dropping the video entries of single layers "
    "frees no memory; set memory=false"
)


def _validate(method: str, options: Mapping[str, Any]) -> EngineMethod:
    """:func:`sharpv.methods.engine_options`, with why Memory SharpV is refused added."""
    try:
        return engine_options(method, options)
    except MethodOptionError as e:
        if "inside the LLM" in str(e) and options.get("memory"):
            raise MethodOptionError(f"{e}. {MEMORY_UNSUPPORTED}") from None
        raise


@functools.lru_cache(maxsize=256)
def _engine(method: str, options: tuple[tuple[str, Any], ...]) -> EngineMethod:
    """:func:`_validate` of options already resolved (hashable), cached per settings."""
    return _validate(method, dict(options))


@dataclass(frozen=True)
class VllmSharpVSettings:
    """One video's pruning method and its options, validated for an engine.

    Attributes:
        method: a registered method whose token count is fixed before the features exist.
        options: the options given (engine defaults included), ``(name, value)`` pairs sorted
            by name, values as the registry resolved them.

    Examples:
        >>> s = VllmSharpVSettings.from_block({"budget": 0.25})
        >>> s.video_tokens(n_frames=8, tokens_per_frame=4), s["mode"]
        (8, 'budget')
    """

    method: str
    options: tuple[tuple[str, Any], ...]

    @classmethod
    def from_block(cls, block: Mapping[str, Any]) -> VllmSharpVSettings:
        """Validate a block (``{"method": ..., option: value, ...}``).

        Raises:
            MethodOptionError: the registry's error for these options (a ``ValueError``).
        """
        given = dict(block)
        method = given.pop(METHOD_KEY, "sharpv")
        if not isinstance(method, str):
            raise MethodOptionError(f"sharpv.method must be a method name, got {method!r}")
        given = {**ENGINE_DEFAULTS.get(method, {}), **given}
        resolved = _validate(method, given).options  # raw values may be unhashable
        return cls(method, tuple(sorted((k, resolved[k]) for k in given)))

    @property
    def engine(self) -> EngineMethod:
        """The method, its resolved options and its token count (cached)."""
        return _engine(self.method, self.options)

    def __getitem__(self, name: str) -> Any:
        """A resolved option (given or default), e.g. ``settings["budget"]``."""
        return self.engine.options[name]

    def video_tokens(self, n_frames: int, tokens_per_frame: int) -> int:
        """Frame tokens one video keeps, from the method's count (extras not included).

        The count needs no features, so vLLM can size the prompt before the vision tower.
        """
        min_keep = self.engine.options.get("min_keep", 0)
        if min_keep > tokens_per_frame:
            raise ValueError(
                f"sharpv.min_keep={min_keep} exceeds the {tokens_per_frame} tokens of a "
                "frame of this video"
            )
        return int(self.engine.token_count(n_frames, tokens_per_frame))

    def prune(self, frames: torch.Tensor, cu_frames: Sequence[int] | None = None) -> torch.Tensor:
        """Flat indices (``frame * f + token``, ascending) of the tokens the videos keep.

        Args:
            frames: ``(n, f, d)`` frame tokens as they enter the LLM, of one video or (with
                ``cu_frames``) of several packed one after the other.
            cu_frames: frame offsets of the videos (default: one video).
        Returns:
            ``(N,)`` int64 indices, ``N`` the sum of :meth:`video_tokens` over the videos:
            exactly what the method's pruning function keeps.
        """
        engine = self.engine
        cu = [0, int(frames.shape[0])] if cu_frames is None else list(cu_frames)
        res = engine.method.pruner(engine.options)(frames, cu)
        return res.indices.to(torch.int64)

    def as_row(self) -> torch.Tensor:
        """``(OPTIONS_WIDTH,)`` float64: the method's index among the registered names, then
        each option of its schema (NaN when not given); exact round trip (:meth:`from_row`).

        Raises:
            MethodOptionError: the method has more options than a row holds, or a free-text
                option (one without ``choices``).
        """
        method = get(self.method)
        row = [math.nan] * OPTIONS_WIDTH
        row[0] = float(sorted(names()).index(self.method))
        schema = list(method.schema)
        if len(schema) >= OPTIONS_WIDTH:
            raise MethodOptionError(
                f"method {self.method} has {len(schema)} options; vLLM carries at most "
                f"{OPTIONS_WIDTH - 1} per video"
            )
        given = dict(self.options)
        for i, opt in enumerate(schema, start=1):
            if opt.name not in given or given[opt.name] is None:
                continue
            value = given[opt.name]
            if opt.type is str:
                if opt.choices is None:
                    raise MethodOptionError(
                        f"option {opt.name} of method {self.method} is free text, which vLLM "
                        "cannot carry per video"
                    )
                value = opt.choices.index(value)
            row[i] = float(value)
        return torch.tensor(row, dtype=torch.float64)

    @classmethod
    def from_row(cls, row: Sequence[float]) -> VllmSharpVSettings:
        """Inverse of :meth:`as_row` (``row`` a list of floats)."""
        method = get(sorted(names())[int(row[0])])
        given: dict[str, Any] = {}
        for opt, value in zip(method.schema, row[1:], strict=False):
            if math.isnan(value):
                continue
            if opt.type is str:
                given[opt.name] = opt.choices[int(value)]
            else:
                given[opt.name] = opt.type(value)
        return cls(method.name, tuple(sorted(given.items())))


def validate_block(block: Any) -> VllmSharpVSettings:
    """Validate one ``sharpv`` block (the server's, or a request's merged over it).

    The one home of the block's rules: the start-up check, the processors and the models all
    call it, so a request's error is worded as the server's would be, and as the Python API
    words it for the same options.

    Raises:
        ValueError: no block (``None``), or the registry's :class:`MethodOptionError`
            (unknown, unused, conflicting or out-of-range options, a method whose count
            depends on the content, Memory SharpV).
        TypeError: a block that is not a mapping.

    Examples:
        >>> validate_block({"budget": 0.3, "w": 0.5})["w"]
        0.5
    """
    if block is None:
        raise ValueError(
            "the SharpV architectures need a 'sharpv' block in the model config, e.g. "
            '--hf-overrides \'{"architectures": [...], "sharpv": {"budget": 0.3}}\''
        )
    if not isinstance(block, Mapping):
        raise TypeError(f"sharpv must be a JSON object, got {type(block).__name__}")
    return VllmSharpVSettings.from_block(block)


def settings_from_hf_config(hf_config: Any) -> VllmSharpVSettings:
    """Read and validate ``hf_config.sharpv`` (the block ``--hf-overrides`` sets).

    Args:
        hf_config: the checkpoint's Hugging Face config after vLLM's overrides.
    Raises:
        ValueError, TypeError: as :func:`validate_block`.

    Examples:
        >>> from types import SimpleNamespace
        >>> settings_from_hf_config(SimpleNamespace(sharpv={"budget": 0.3})).budget
        0.3
    """
    return validate_block(getattr(hf_config, "sharpv", None))


def split_request_block(mm_kwargs: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``(the request's sharpv block or None, the other processor kwargs)``: the block is
    taken out so that the Hugging Face processor never sees it."""
    rest = dict(mm_kwargs)
    return rest.pop(REQUEST_KEY, None), rest


def request_settings(hf_config: Any, request_block: Any) -> VllmSharpVSettings:
    """Settings of one request: its ``sharpv`` block's keys over the server's block.

    Args:
        hf_config: the model's Hugging Face config (its ``sharpv`` block is the default).
        request_block: ``mm_processor_kwargs["sharpv"]`` of the request, or None.
    Raises:
        ValueError, TypeError: as :func:`validate_block`, for the merged block.

    Examples:
        >>> from types import SimpleNamespace
        >>> cfg = SimpleNamespace(sharpv={"budget": 0.3, "w": 0.5})
        >>> s = request_settings(cfg, {"budget": 0.1})
        >>> s.budget, s.w
        (0.1, 0.5)
    """
    server = getattr(hf_config, "sharpv", None)
    if request_block is None:
        return validate_block(server)
    if not isinstance(request_block, Mapping):
        raise TypeError(f"sharpv must be a JSON object, got {type(request_block).__name__}")
    base = dict(server) if isinstance(server, Mapping) else {}
    return validate_block({**base, **request_block})
