"""Token-pruning baselines of the SharpV paper and of serving engines.

Pre-LLM methods (same inputs and :class:`sharpv_kernels.VisualPruneResult` output as
:func:`sharpv_kernels.visual_prune`):

========================  ===================================================================
``uniform``               the same keep ratio in every frame (SharpV's ``ratio`` mode)
``random_per_frame``      the paper's V-Random-dagger: SharpV's per-frame counts, random tokens
``random_video``          the paper's V-Random-star: SharpV's total, random tokens video-wide
``evs``                   Efficient Video Sampling: global top-K of temporal dissimilarity
``dycoke_ttm``            DyCoke's stage-1 temporal token merging (windows of 4 frames)
========================  ===================================================================

Intra-LLM: :func:`fastv` (FastV, attention-score pruning after layer ``K``), a context
manager around ``generate``.

These are the functions; the methods (names, option schemas, stages) that run them are
registered in :mod:`sharpv.methods`. :func:`make_pruner` and :func:`get_pruner` return a
method's pre-LLM stage, ``fn(features, cu_frames) -> VisualPruneResult``.

Examples:
    >>> import torch
    >>> from sharpv import SharpVConfig
    >>> from sharpv.baselines import make_pruner
    >>> prune = make_pruner(SharpVConfig(method="uniform", method_options={"keep_ratio": 0.5}))
    >>> prune(torch.randn(3, 8, 4), [0, 3]).counts.tolist()
    [4, 4, 4]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .fastv import FastV, FastVState, fastv, fastv_keep_count
from .pre_llm import (
    dycoke_keep_per_frame,
    dycoke_ttm,
    evs,
    evs_retained_tokens,
    random_per_frame,
    random_video,
    result_from_mask,
    uniform,
)

if TYPE_CHECKING:
    from ..config import SharpVConfig

__all__ = [
    "get_pruner",
    "make_pruner",
    "uniform",
    "random_per_frame",
    "random_video",
    "evs",
    "dycoke_ttm",
    "fastv",
    "FastV",
    "FastVState",
    "fastv_keep_count",
    "evs_retained_tokens",
    "dycoke_keep_per_frame",
    "result_from_mask",
]


def get_pruner(method: str, **options: Any) -> Callable[..., Any]:
    """``fn(features, cu_frames)`` -> ``VisualPruneResult``: the pre-LLM stage of a
    registered method, its ``options`` validated by :func:`sharpv.methods.validate`.

    Raises:
        sharpv.methods.MethodOptionError: an unknown method or a bad option.
        ValueError: a method with no pre-LLM stage for these options (``fastv``).

    Examples:
        >>> import torch
        >>> prune = get_pruner("evs", rate=0.5)
        >>> prune(torch.randn(4, 6, 8), [0, 4]).counts.sum().item()
        12
    """
    from .. import methods

    return _pre_llm(methods.get(method), methods.validate(method, options))


def make_pruner(config: SharpVConfig) -> Callable[..., Any]:
    """``fn(features, cu_frames) -> VisualPruneResult`` of a configuration's method.

    Raises:
        ValueError: the method has no pre-LLM stage for these options (``fastv``).

    Examples:
        >>> import torch
        >>> from sharpv import SharpVConfig
        >>> prune = make_pruner(SharpVConfig(mode="ratio", keep_ratio=0.25))
        >>> prune(torch.randn(2, 8, 4), [0, 2]).counts.tolist()
        [2, 2]
    """
    from .. import methods

    return _pre_llm(methods.get(config.method), config.options)


def _pre_llm(method: Any, options: Any) -> Callable[..., Any]:
    prune = method.pruner(options)
    if prune is None:
        raise ValueError(
            f"method {method.name} does not prune before the LLM ({method.stage}); "
            "apply it with sharpv.apply_sharpv"
        )
    return prune
