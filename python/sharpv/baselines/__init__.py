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

:func:`make_pruner` turns a :class:`sharpv.SharpVConfig` into ``fn(features, cu_frames) ->
VisualPruneResult`` (used by :mod:`sharpv.integration` and the benchmarks); :func:`get_pruner`
does the same from a method name and its options. The method names come from
:mod:`sharpv_kernels.vocab`.

Examples:
    >>> import torch
    >>> from sharpv import SharpVConfig
    >>> from sharpv.baselines import make_pruner
    >>> prune = make_pruner(SharpVConfig(method="uniform", method_options={"keep_ratio": 0.5}))
    >>> prune(torch.randn(3, 8, 4), [0, 3]).counts.tolist()
    [4, 4, 4]
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sharpv_kernels.vocab import METHODS, PRE_LLM_BASELINES

from .fastv import FastV, FastVState, fastv, fastv_keep_count
from .pre_llm import (
    UNIFORM_KEEP_RATIO,
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
    "PRE_LLM_METHODS",
    "METHODS",
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

_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "uniform": uniform,
    "random_per_frame": random_per_frame,
    "random_video": random_video,
    "evs": evs,
    "dycoke_ttm": dycoke_ttm,
}
#: name -> function of the pre-LLM baselines, in the order of
#: ``sharpv_kernels.vocab.PRE_LLM_BASELINES`` (a name without a function fails at import).
PRE_LLM_METHODS: dict[str, Callable[..., Any]] = {
    name: _FUNCTIONS[name] for name in PRE_LLM_BASELINES
}
#: the methods that take SharpV's own options (``SharpVConfig.visual_kwargs``): SharpV, and
#: the random baselines, which reuse SharpV's counts
_TAKES_SHARPV_OPTIONS = ("sharpv", "random_per_frame", "random_video")


def get_pruner(method: str, **options: Any) -> Callable[..., Any]:
    """``fn(features, cu_frames)`` -> ``VisualPruneResult`` for a pre-LLM method.

    Args:
        method: ``"sharpv"`` (options as :func:`sharpv_kernels.visual_prune`) or a name of
            :data:`PRE_LLM_METHODS` (options as that function).
        options: keyword arguments bound to the function.

    Raises:
        ValueError: ``fastv`` (it prunes inside the LLM, see :func:`fastv`) or an unknown name.

    Examples:
        >>> import torch
        >>> prune = get_pruner("evs", rate=0.5)
        >>> prune(torch.randn(4, 6, 8), [0, 4]).counts.sum().item()
        12
    """
    if method == "sharpv":
        from sharpv_kernels import visual_prune

        return functools.partial(visual_prune, **options)
    if method in PRE_LLM_METHODS:
        return functools.partial(PRE_LLM_METHODS[method], **options)
    if method == "fastv":
        raise ValueError("fastv prunes inside the LLM; use sharpv.baselines.fastv(model, ...)")
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def make_pruner(config: SharpVConfig) -> Callable[..., Any]:
    """``fn(features, cu_frames) -> VisualPruneResult`` of a configuration's pre-LLM method.

    SharpV's options (``config.visual_kwargs()``) go to ``sharpv`` and to the random
    baselines, which take SharpV's counts; ``uniform`` takes ``keep_ratio`` (default 0.3),
    ``min_keep``, ``w`` and ``metric`` from the configuration; ``config.method_options`` go to
    the baseline and win over both.

    Args:
        config: a :class:`sharpv.SharpVConfig`.

    Raises:
        ValueError: ``config.method == "fastv"`` (it prunes inside the LLM).

    Examples:
        >>> import torch
        >>> from sharpv import SharpVConfig
        >>> prune = make_pruner(SharpVConfig(mode="ratio", keep_ratio=0.25))
        >>> prune(torch.randn(2, 8, 4), [0, 2]).counts.tolist()
        [2, 2]
    """
    opts = dict(config.method_options or {})
    if config.method in _TAKES_SHARPV_OPTIONS:
        opts = {**config.visual_kwargs(), **opts}
    elif config.method == "uniform":
        keep_ratio = config.keep_ratio if config.keep_ratio is not None else UNIFORM_KEEP_RATIO
        opts.setdefault("keep_ratio", keep_ratio)
        opts.setdefault("min_keep", config.min_keep)
        opts.setdefault("w", float(config.w))
        opts.setdefault("metric", config.metric)
    return get_pruner(config.method, **opts)
