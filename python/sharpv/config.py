"""User-facing configuration of the drop-in integration (``sharpv.SharpVConfig``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from sharpv_kernels.vocab import (
    DEFAULT_MEMORY_THRESHOLD,
    DEFAULT_METRIC,
    DEFAULT_MIN_KEEP,
    DEFAULT_MODE,
    DEFAULT_THRESHOLD,
    DEFAULT_W,
    METHODS,
    METRICS,
    VISUAL_MODES,
)

# the vocabulary lives in sharpv_kernels.vocab; it stays importable from here for old callers
__all__ = ["SharpVConfig", "VISUAL_MODES", "METRICS", "METHODS"]


def _is_real(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_finite(name: str, value: object) -> None:
    if not _is_real(value):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")


def _check_fraction_or_none(name: str, value: object) -> None:
    if value is None:
        return
    if not _is_real(value):
        raise TypeError(f"{name} must be a real number or None, got {type(value).__name__}")
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value}")


@dataclass(frozen=True)
class SharpVConfig:
    """Settings of both SharpV stages, validated on construction.

    Args:
        visual: run Visual SharpV (pre-LLM pruning of the video tokens).
        memory: run Memory SharpV (KV-cache pruning of degraded layers after prefill).
        mode: ``"adaptive"`` (paper default), ``"manual"``, ``"ratio"`` or ``"budget"``.
        w: weight of the spatial score in ``I_t = T_t + w * S_t``.
        threshold: ``K`` of ``mode="manual"`` (keep tokens with ``I > K``).
        keep_ratio: fixed fraction kept per frame, in ``(0, 1]``; required by ``mode="ratio"``.
        budget: fraction of each video's tokens kept, in ``(0, 1]``; required by ``mode="budget"``.
        min_keep: fewest tokens kept in any frame, in ``[0, f]`` as the op takes it.
        metric: ``"dissim"`` (``||unit(a) - unit(b)||``) or ``"cosine"`` (``1 - cos``).
        memory_threshold: ``M``; a layer whose visual similarity falls below it loses its
            visual KV entries after prefill. In ``[-1, 1]``.
        method: ``"sharpv"`` (default) or a baseline of :mod:`sharpv.baselines`
            (``"uniform"``, ``"random_per_frame"``, ``"random_video"``, ``"evs"``,
            ``"dycoke_ttm"``, ``"fastv"``) used instead of Visual SharpV; ``mode`` etc. then
            only matter to the baselines that reuse SharpV's counts (the random ones).
            ``"fastv"`` prunes inside the LLM and needs ``memory=False``.
        method_options: keyword arguments of the baseline (e.g. ``{"rate": 0.7}`` for
            ``evs``, ``{"prune_ratio": 0.5}`` for ``dycoke_ttm``, ``{"seed": 1}``,
            ``{"layer": 3, "keep_ratio": 0.3}`` for ``fastv``).

    Raises:
        TypeError: an option of the wrong type.
        ValueError: an option out of range, or a mode without its required option.

    Examples:
        >>> cfg = SharpVConfig(mode="budget", budget=0.3)
        >>> cfg.visual_kwargs()["budget"], cfg.memory_threshold
        (0.3, 0.2)
        >>> SharpVConfig(method="evs", memory=False, method_options={"rate": 0.5}).method
        'evs'
    """

    visual: bool = True
    memory: bool = True
    mode: str = DEFAULT_MODE
    w: float = DEFAULT_W
    threshold: float = DEFAULT_THRESHOLD
    keep_ratio: float | None = None
    budget: float | None = None
    min_keep: int = DEFAULT_MIN_KEEP
    metric: str = DEFAULT_METRIC
    memory_threshold: float = DEFAULT_MEMORY_THRESHOLD
    method: str = "sharpv"
    method_options: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        for name in ("visual", "memory"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {type(getattr(self, name)).__name__}")
        _check_choice("mode", self.mode, VISUAL_MODES)
        _check_choice("metric", self.metric, METRICS)
        for name in ("w", "threshold", "memory_threshold"):
            _check_finite(name, getattr(self, name))
        if not -1.0 <= self.memory_threshold <= 1.0:
            raise ValueError(
                "memory_threshold must be in [-1, 1] (a cosine similarity), "
                f"got {self.memory_threshold}"
            )
        for name in ("keep_ratio", "budget"):
            _check_fraction_or_none(name, getattr(self, name))
        if self.mode == "ratio" and self.keep_ratio is None:
            raise ValueError('mode="ratio" needs keep_ratio in (0, 1]')
        if self.mode == "budget" and self.budget is None:
            raise ValueError('mode="budget" needs budget in (0, 1]')
        if isinstance(self.min_keep, bool) or not isinstance(self.min_keep, int):
            raise TypeError(f"min_keep must be an int, got {type(self.min_keep).__name__}")
        if self.min_keep < 0:
            raise ValueError(f"min_keep must be >= 0, got {self.min_keep}")
        self._check_method()

    def _check_method(self) -> None:
        _check_choice("method", self.method, METHODS)
        if self.method_options is not None and not isinstance(self.method_options, dict):
            raise TypeError(
                f"method_options must be a dict or None, got {type(self.method_options).__name__}"
            )
        if self.method == "sharpv" and self.method_options:
            raise ValueError("method_options are for the baselines; SharpV takes its own fields")
        if self.method == "fastv" and self.memory:
            raise ValueError('method="fastv" prunes inside the LLM; it needs memory=False')

    def visual_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`sharpv_kernels.visual_prune` for this configuration.

        ``keep_ratio`` and ``budget`` go only with their own mode (``visual_prune`` rejects
        them otherwise; ``keep_ratio`` may be set for the ``uniform`` baseline alone).

        Examples:
            >>> SharpVConfig(keep_ratio=0.5).visual_kwargs()["keep_ratio"] is None
            True
        """
        return {
            "mode": self.mode,
            "w": float(self.w),
            "threshold": float(self.threshold),
            "keep_ratio": self.keep_ratio if self.mode == "ratio" else None,
            "budget": self.budget if self.mode == "budget" else None,
            "min_keep": self.min_keep,
            "metric": self.metric,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary of every field.

        Examples:
            >>> SharpVConfig().to_dict()["mode"]
            'adaptive'
        """
        return asdict(self)
