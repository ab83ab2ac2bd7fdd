"""User-facing configuration of the drop-in integration (``sharpv.SharpVConfig``).

A configuration is a method name and its options, validated by the method registry
(:func:`sharpv.methods.validate`) on construction. The fields below are SharpV's own option
names, kept as keyword arguments so that ``SharpVConfig(mode="budget", budget=0.3)`` reads as
before; any other option of any method goes in ``method_options``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .methods import MethodOptionError, ResolvedOptions, get, validate

__all__ = ["SharpVConfig", "OPTION_FIELDS"]

#: the fields that are options of a method (``None``: not given)
OPTION_FIELDS = (
    "visual", "memory", "mode", "w", "threshold", "keep_ratio", "budget", "min_keep",
    "metric", "memory_threshold",
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class SharpVConfig:
    """A pruning method and its options, validated on construction by the method registry.

    Every field left at ``None`` is "not given": the method's default applies. After
    construction the fields hold the resolved values (an option the method declares but does
    not use with these settings shows its default; an option it does not declare stays
    ``None``; ``visual``/``memory`` always say whether that stage runs).

    Args:
        visual, memory, mode, w, threshold, keep_ratio, budget, min_keep, metric,
            memory_threshold: options of ``sharpv`` (and of the methods that share them, e.g.
            ``keep_ratio`` of ``uniform``); see ``sharpv methods`` or ``docs/methods.md``.
        method: a registered method name (``sharpv.methods.names()``), ``"sharpv"`` by default.
        method_options: any other option of the method (e.g. ``{"rate": 0.7}`` for ``evs``);
            an option given both as a field and here is an error.

    Raises:
        sharpv.methods.MethodOptionError: (a ``ValueError``) unknown method, or an unknown,
            unused, conflicting, missing, out-of-range or non-finite option, named.

    Examples:
        >>> cfg = SharpVConfig(mode="budget", budget=0.3)
        >>> cfg.visual_kwargs()["budget"], cfg.memory_threshold
        (0.3, 0.2)
        >>> SharpVConfig(method="evs", method_options={"rate": 0.5}).options["rate"]
        0.5
    """

    visual: bool | None = None
    memory: bool | None = None
    mode: str | None = None
    w: float | None = None
    threshold: float | None = None
    keep_ratio: float | None = None
    budget: float | None = None
    min_keep: int | None = None
    metric: str | None = None
    memory_threshold: float | None = None
    method: str = "sharpv"
    method_options: Mapping[str, Any] | None = None
    #: the validated options of ``method`` (what the method's code receives)
    options: ResolvedOptions = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.method_options is not None and not isinstance(self.method_options, Mapping):
            raise MethodOptionError(
                "method_options must be a mapping of option names to values or None, got "
                f"{type(self.method_options).__name__}"
            )
        opts: dict[str, Any] = {n: getattr(self, n) for n in OPTION_FIELDS}
        opts = {k: v for k, v in opts.items() if v is not None}
        for key, value in (self.method_options or {}).items():
            if key in opts and value is not None:
                raise MethodOptionError(
                    f"option {key} of method {self.method} is given twice (as a field and in "
                    "method_options)"
                )
            opts[key] = value
        resolved = validate(self.method, opts)
        method = get(self.method)
        declared = {o.name: o for o in method.schema}
        for name in OPTION_FIELDS:
            if name in resolved:
                value = resolved[name]
            elif name in declared and declared[name].default is not None:
                value = declared[name].default
                value = None if not isinstance(value, (bool, int, float, str)) else value
            else:
                value = None
            object.__setattr__(self, name, value)
        object.__setattr__(self, "visual", bool(resolved.get("visual", True)))
        object.__setattr__(self, "memory", bool(resolved.get("memory", False)))
        if self.method_options is not None:
            object.__setattr__(self, "method_options", dict(self.method_options))
        object.__setattr__(self, "options", resolved)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SharpVConfig):
            return NotImplemented
        return self.options == other.options

    def __hash__(self) -> int:
        return hash(self.options)

    def __repr__(self) -> str:
        return f"SharpVConfig(method={self.method!r}, options={dict(self.options)!r})"

    def visual_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`sharpv_kernels.visual_prune` for this configuration.

        ``keep_ratio`` and ``budget`` go only with their own mode, as the op takes them.

        Examples:
            >>> SharpVConfig(mode="ratio", keep_ratio=0.5).visual_kwargs()["budget"] is None
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
        """Plain dictionary of every field (and ``options``, the resolved options).

        Examples:
            >>> SharpVConfig().to_dict()["mode"]
            'adaptive'
        """
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "options"}
        out["options"] = dict(self.options)
        return out
