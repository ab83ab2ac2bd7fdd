"""Pruning methods: one registry, one option schema, every front end.

A method is a :class:`Method`: a name, a stage (before the LLM, inside it, or both), its
declared :class:`Option` s, and the code of each stage (``prune`` before the LLM, ``hooks``
inside it). Every method, the built-in ones included, is added with :func:`register`; a
third-party package adds its own through the entry-point group ``sharpv.methods``. Every
front end (``SharpVConfig``/``apply_sharpv``, the ``sharpv`` command line, the lmms-eval
model, the vLLM plugin through :func:`engine_options`) parses its own syntax into a method
name and options and calls :func:`validate` before any model is loaded.

Built-in methods, one file each: ``sharpv`` (Visual + Memory SharpV, ``mode`` option),
``memory_sharpv``, ``dense``, ``uniform``, ``random_per_frame`` / ``random_video``
(``random_tokens.py``), ``evs``, ``dycoke_ttm``, ``fastv``. See ``docs/methods.md``.

This package imports no torch: the command line validates options with it at once.

Examples:
    >>> from sharpv import methods
    >>> methods.validate("uniform", {"keep_ratio": "0.25"})["keep_ratio"]
    0.25
    >>> methods.get("fastv").stage
    'intra-llm'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from ._registry import ENTRY_POINT_GROUP, get, names, register, unregister, validate
from ._schema import (
    BOTH,
    INTRA_LLM,
    PRE_LLM,
    REQUIRED,
    STAGES,
    Method,
    MethodOptionError,
    Option,
    ResolvedOptions,
    show,
)

# the built-in methods register themselves, in this order, with register()
from . import sharpv as _sharpv  # noqa: E402, F401  isort: skip
from . import memory_sharpv as _memory_sharpv  # noqa: E402, F401  isort: skip
from . import dense as _dense  # noqa: E402, F401  isort: skip
from . import uniform as _uniform  # noqa: E402, F401  isort: skip
from . import random_tokens as _random_tokens  # noqa: E402, F401  isort: skip
from . import evs as _evs  # noqa: E402, F401  isort: skip
from . import dycoke_ttm as _dycoke_ttm  # noqa: E402, F401  isort: skip
from . import fastv as _fastv  # noqa: E402, F401  isort: skip

__all__ = [
    "Method",
    "Option",
    "ResolvedOptions",
    "MethodOptionError",
    "REQUIRED",
    "STAGES",
    "PRE_LLM",
    "INTRA_LLM",
    "BOTH",
    "ENTRY_POINT_GROUP",
    "register",
    "unregister",
    "get",
    "names",
    "validate",
    "engine_options",
    "EngineMethod",
    "describe",
]


class EngineMethod(NamedTuple):
    """What an engine that sizes prompts before the vision tower runs needs of a method."""

    method: Method
    options: ResolvedOptions
    #: ``token_count(n_frames, f) -> int``: frame tokens one video keeps
    token_count: Callable[[int, int], int]


def engine_options(name: str, options: Mapping[str, Any] | None = None) -> EngineMethod:
    """Validate ``options`` of method ``name`` for an engine (vLLM, SGLang).

    The method must prune before the LLM only, with a token count fixed before the
    features exist (SPEC "Inside engines"); any registered method that does is accepted.

    Raises:
        MethodOptionError: the errors of :func:`validate` (same text as every other front
            end), or a method whose count depends on the content or that acts inside the LLM.

    Examples:
        >>> em = engine_options("sharpv", {"mode": "budget", "budget": 0.3, "memory": False})
        >>> em.token_count(32, 196)
        1882
    """
    method = get(name)
    resolved = method.validate(options)
    if method.hooks_factory(resolved) is not None:
        what = "memory=false" if resolved.get("memory") else "a method that prunes before the LLM"
        raise MethodOptionError(
            f"method {name} acts inside the LLM with these options, which an engine with a "
            f"paged KV cache cannot do; use {what}"
        )
    count = method.fixed_token_count(resolved)
    if count is None:
        raise MethodOptionError(
            f"method {name} keeps a number of tokens that depends on the content with these "
            "options; an engine sizes the prompt before the features exist (for sharpv: "
            "mode=budget)"
        )
    return EngineMethod(method, resolved, count)


def describe(method: Method) -> str:
    """Several lines: the method, its stage and every option (``sharpv methods``)."""
    lines = [f"{method.name} ({method.stage}): {method.description}".rstrip(": ")]
    for opt in method.schema:
        default = "required" if opt.default is REQUIRED else f"default {show(opt.default)}"
        when = f"; only with {opt.condition()}" if opt.used_with else ""
        about = f" - {opt.help}" if opt.help else ""
        lines.append(f"    {opt.name}: {opt.describe()} ({default}{when}){about}")
    for a, b in method.excludes:
        lines.append(f"    {a} and {b} exclude each other")
    if not method.schema:
        lines.append("    (no options)")
    return "\n".join(lines)
