"""Option schema of a pruning method: :class:`Option`, :class:`Method`, the one validation.

Plain Python (no torch): the command line validates options with it before importing torch.

Rules, applied by :meth:`Method.validate` in this order (the first broken rule is the error):

1. every given option is declared by the method (unknown option);
2. no two options that exclude each other are both given;
3. each option, in declaration order, is *used* when every ``used_with`` condition holds on
   the values resolved so far; a given option that is not used is an error, a used one is
   coerced (strings such as ``"0.3"`` or ``"true"`` from textual front ends) and checked
   (type, choices, finite, range), and a used option that is not given takes its default,
   or is an error when it is :data:`REQUIRED`;
4. the method's own ``check`` on the resolved values (rules across options).

A ``None`` value counts as "not given". Every error is a :class:`MethodOptionError` whose
text names the option and what was expected, the same whatever the front end.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MethodOptionError",
    "Option",
    "Method",
    "ResolvedOptions",
    "REQUIRED",
    "STAGES",
    "PRE_LLM",
    "INTRA_LLM",
    "BOTH",
]

PRE_LLM, INTRA_LLM, BOTH = "pre-llm", "intra-llm", "both"
#: where a method acts: on the visual tokens before the LLM, inside the LLM, or both
STAGES = (PRE_LLM, INTRA_LLM, BOTH)

# textual booleans; integers are not booleans (lmms-eval turns "1" into the int 1)
_TRUE = ("true",)
_FALSE = ("false",)


class MethodOptionError(ValueError, TypeError):
    """A method name or option that the registry rejects (a ``ValueError``; also a
    ``TypeError`` so that callers of the old per-field checks keep catching it)."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: ``Option(default=REQUIRED)``: the option must be given whenever it is used.
REQUIRED: Any = _Required()


def show(value: Any) -> str:
    """How an option value is written in messages and listings (``true``, ``0.3``, ``ratio``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return repr(value)


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return ""


@dataclass(frozen=True)
class Option:
    """One declared option of a method.

    Args:
        name: the option's name (a Python identifier; ``--opt name=value`` on the CLI).
        type: ``bool``, ``int``, ``float`` or ``str``.
        default: value when not given; :data:`REQUIRED` when it must be given; ``None`` for
            "no value" (the method then receives ``None``).
        low, high: range bounds (numbers); ``low_open``/``high_open`` make them exclusive.
        choices: the allowed values (``str`` options).
        finite: ``float`` options must be finite (default).
        used_with: ``{other_option: value or tuple of values}``: the option is used only
            when each earlier-declared ``other_option`` resolves to one of those values;
            given otherwise, it is an error.
        help: one line for ``sharpv methods`` and the docs.

    Examples:
        >>> Option("budget", float, REQUIRED, low=0, high=1, low_open=True).describe()
        'a number in (0, 1]'
    """

    name: str
    type: type
    default: Any = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    finite: bool = True
    used_with: Mapping[str, Any] = field(default_factory=dict)
    help: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"Option name must be an identifier, got {self.name!r}")
        if self.type not in (bool, int, float, str):
            raise ValueError(f"Option {self.name}: type must be bool, int, float or str")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
        norm = {
            k: tuple(v) if isinstance(v, (tuple, list, frozenset, set)) else (v,)
            for k, v in dict(self.used_with).items()
        }
        object.__setattr__(self, "used_with", norm)

    def describe(self) -> str:
        """What a valid value is, in words (used in every message about this option)."""
        if self.choices is not None:
            return "one of " + ", ".join(show(c) for c in self.choices)
        if self.type is bool:
            return "true or false"
        kind = {int: "an integer", float: "a finite number" if self.finite else "a number"}
        kind[str] = "a string"
        rng = _interval(self.low, self.high, self.low_open, self.high_open)
        if self.type is float and rng:
            kind[float] = "a number"
        return f"{kind[self.type]} {rng}".strip()

    def condition(self) -> str:
        """``mode=ratio``, ``memory=true``: when the option is used (empty: always)."""
        return ", ".join(f"{k}={'|'.join(show(v) for v in vs)}" for k, vs in self.used_with.items())

    def coerce(self, method: str, raw: Any) -> Any:
        """The checked value of ``raw`` (strings are parsed), or :class:`MethodOptionError`."""
        value = self._convert(raw)
        if value is _BAD:
            self._fail(method, repr(raw))
        if self.type is float and self.finite and not math.isfinite(value):
            self._fail(method, show(value))
        if self.choices is not None and value not in self.choices:
            self._fail(method, repr(value) if isinstance(value, str) else show(value))
        if self.type in (int, float):
            lo, hi = self.low, self.high
            if lo is not None and (value <= lo if self.low_open else value < lo):
                self._fail(method, show(value))
            if hi is not None and (value >= hi if self.high_open else value > hi):
                self._fail(method, show(value))
        return value

    def _convert(self, v: Any) -> Any:
        t = self.type
        if t is bool:
            if isinstance(v, bool):
                return v
            if isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE:
                return v.strip().lower() in _TRUE
            return _BAD
        if isinstance(v, bool):
            return _BAD
        if t is int:
            if isinstance(v, int):
                return v
            if isinstance(v, str):
                try:
                    return int(v.strip())
                except ValueError:
                    return _BAD
            return _BAD
        if t is float:
            if isinstance(v, (int, float)):
                return float(v)
            if isinstance(v, str):
                try:
                    return float(v.strip())
                except ValueError:
                    return _BAD
            return _BAD
        return v if isinstance(v, str) else _BAD

    def _fail(self, method: str, shown: str) -> None:
        raise MethodOptionError(
            f"option {self.name} of method {method} must be {self.describe()}, got {shown}"
        )


_BAD = object()


class ResolvedOptions(Mapping[str, Any]):
    """The validated options of one method: every used option, given or default.

    A read-only mapping ``{name: value}``; ``method`` is the method's name and ``given`` the
    names the caller set explicitly.

    Examples:
        >>> from sharpv.methods import validate
        >>> r = validate("evs", {"rate": "0.5"})
        >>> dict(r), r.method, sorted(r.given)
        ({'rate': 0.5, 'memory': False}, 'evs', ['rate'])
    """

    __slots__ = ("method", "_values", "given")

    def __init__(self, method: str, values: Mapping[str, Any], given: frozenset[str]) -> None:
        self.method = method
        self._values = dict(values)
        self.given = frozenset(given)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ResolvedOptions):
            return self.method == other.method and self._values == other._values
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.method, tuple(sorted(self._values.items(), key=lambda kv: kv[0]))))

    def __repr__(self) -> str:
        return f"ResolvedOptions({self.method!r}, {self._values!r})"


#: ``fn(features, cu_frames) -> VisualPruneResult``
PruneFn = Callable[..., Any]
#: ``fn(model, visual_mask) -> context manager`` around ``generate``
HooksFn = Callable[..., Any]


def _memory_options(default: bool) -> tuple[Option, ...]:
    from ._vocab import vocab

    v = vocab()
    return (
        Option("memory", bool, default, help="run Memory SharpV inside the LLM after this method"),
        Option(
            "memory_threshold", float, v.DEFAULT_MEMORY_THRESHOLD, low=-1.0, high=1.0,
            used_with={"memory": True},
            help="M of Memory SharpV: a layer whose visual similarity is below it is dropped",
        ),
    )  # fmt: skip


@dataclass(frozen=True, eq=False)
class Method:
    """A pruning method: its name, stage, option schema and the code of each stage.

    Args:
        name: registry name (``--method NAME``, ``method=NAME``).
        stage: :data:`PRE_LLM`, :data:`INTRA_LLM` or :data:`BOTH`.
        options: the declared options, in order (``used_with`` refers to earlier ones).
        prune: pre-LLM stage, ``prune(features, cu_frames, **options)`` with ``features``
            ``(total_frames, f, d)`` and ``cu_frames`` ``(B + 1,)`` frame offsets, returning a
            :class:`sharpv_kernels.VisualPruneResult` (kept tokens in (frame, token) order).
        hooks: intra-LLM stage, ``hooks(model, visual_mask, **options)`` returning a context
            manager (a :class:`sharpv.hooks.GenerationHooks`) entered around ``generate``;
            ``visual_mask`` is ``(batch, seq)`` bool, one span per sample.
        token_count: ``token_count(n_frames, f, **options) -> int``: the tokens one video
            keeps, known before the features exist (what an engine such as vLLM needs);
            ``None`` when the count depends on the content.
        excludes: pairs of option names that must not both be given.
        check: ``check(options)`` raising :class:`MethodOptionError` for rules across options.
        memory: ``None``: the method does not combine with Memory SharpV; ``True``/``False``:
            it does, and the options ``memory`` (with this default) and ``memory_threshold``
            are added to its schema.
        description: one line for ``sharpv methods``.

    Only the options of the method itself (not ``memory``/``memory_threshold``) reach
    ``prune``, ``hooks`` and ``token_count``. Subclasses may override :meth:`pruner`,
    :meth:`hooks_factory` and :meth:`fixed_token_count` (e.g. a stage that an option turns off).
    """

    name: str
    stage: str
    options: tuple[Option, ...] = ()
    prune: PruneFn | None = None
    hooks: HooksFn | None = None
    token_count: Callable[..., int | None] | None = None
    excludes: tuple[tuple[str, str], ...] = ()
    check: Callable[[Mapping[str, Any]], None] | None = None
    memory: bool | None = None
    description: str = ""
    #: ``options`` plus the Memory SharpV pair when ``memory`` is not ``None``
    schema: tuple[Option, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"method name must be an identifier, got {self.name!r}")
        if self.stage not in STAGES:
            raise ValueError(
                f"method {self.name}: stage must be one of {STAGES}, got {self.stage!r}"
            )
        opts = tuple(self.options)
        if self.memory is not None:
            if self.hooks is not None:
                raise ValueError(f"method {self.name}: memory= is for methods without hooks")
            opts += _memory_options(bool(self.memory))
        object.__setattr__(self, "options", tuple(self.options))
        object.__setattr__(self, "schema", opts)
        seen: set[str] = set()
        for opt in opts:
            if not isinstance(opt, Option):
                raise ValueError(f"method {self.name}: options must be Option, got {opt!r}")
            if opt.name in seen:
                raise ValueError(f"method {self.name}: option {opt.name} declared twice")
            missing = [k for k in opt.used_with if k not in seen]
            if missing:
                raise ValueError(
                    f"method {self.name}: option {opt.name} is used_with {missing[0]}, which "
                    "must be declared before it"
                )
            if opt.default is not None and opt.default is not REQUIRED:
                opt.coerce(self.name, opt.default)
            seen.add(opt.name)
        for a, b in self.excludes:
            if a not in seen or b not in seen:
                raise ValueError(f"method {self.name}: excludes names an unknown option")
        if self.stage in (PRE_LLM, BOTH) and self.prune is None:
            raise ValueError(f"method {self.name}: a {self.stage} method needs prune=")
        if self.stage in (INTRA_LLM, BOTH) and self.hooks is None and self.memory is None:
            raise ValueError(f"method {self.name}: a {self.stage} method needs hooks=")

    # ------------------------------------------------------------------ validation
    def option(self, name: str) -> Option:
        """The declared option ``name`` (``KeyError`` if none)."""
        for opt in self.schema:
            if opt.name == name:
                return opt
        raise KeyError(name)

    def validate(self, options: Mapping[str, Any] | None = None) -> ResolvedOptions:
        """The resolved options of this method (see the module docstring for the rules).

        Raises:
            MethodOptionError: the first broken rule, naming the option.
        """
        if options is None:
            options = {}
        if not isinstance(options, Mapping):
            raise MethodOptionError(
                f"options of method {self.name} must be a mapping of names to values, "
                f"got {type(options).__name__}"
            )
        given = {k: v for k, v in options.items() if v is not None}
        names = [o.name for o in self.schema]
        for key in given:
            if key not in names:
                takes = ", ".join(names) if names else "none"
                raise MethodOptionError(
                    f"method {self.name} has no option {key} (its options: {takes})"
                )
        for a, b in self.excludes:
            if a in given and b in given:
                raise MethodOptionError(
                    f"options {a} and {b} of method {self.name} exclude each other; give one"
                )
        values: dict[str, Any] = {}
        for opt in self.schema:
            broken = [(k, vs) for k, vs in opt.used_with.items() if values.get(k, _BAD) not in vs]
            if broken:
                if opt.name in given:
                    k, vs = broken[0]
                    got = f"{k}={show(values[k])}" if k in values else f"{k} unused"
                    raise MethodOptionError(
                        f"option {opt.name} of method {self.name} is only used with "
                        f"{k}={'|'.join(show(v) for v in vs)}, got {got}"
                    )
                continue
            if opt.name in given:
                values[opt.name] = opt.coerce(self.name, given[opt.name])
            elif opt.default is REQUIRED:
                when = f" with {opt.condition()}" if opt.used_with else ""
                raise MethodOptionError(
                    f"option {opt.name} of method {self.name} is required{when}: {opt.describe()}"
                )
            else:
                values[opt.name] = opt.default
        if self.check is not None:
            self.check(values)
        return ResolvedOptions(self.name, values, frozenset(given))

    # ------------------------------------------------------------------ stages
    def own(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options of the method itself (without the Memory SharpV pair)."""
        mine = {o.name for o in self.options}
        return {k: v for k, v in options.items() if k in mine}

    def pruner(self, options: Mapping[str, Any]) -> PruneFn | None:
        """``fn(features, cu_frames) -> VisualPruneResult`` of the pre-LLM stage, or ``None``
        when the method keeps every visual token before the LLM."""
        if self.prune is None:
            return None
        own = self.own(options)
        prune = self.prune

        def fn(features: Any, cu_frames: Any) -> Any:
            return prune(features, cu_frames, **own)

        return fn

    def hooks_factory(self, options: Mapping[str, Any]) -> HooksFn | None:
        """``fn(model, visual_mask) -> context manager`` of the intra-LLM stage, or ``None``."""
        if self.hooks is not None:
            own, hooks = self.own(options), self.hooks
            return lambda model, visual_mask: hooks(model, visual_mask, **own)
        if options.get("memory"):
            threshold = float(options["memory_threshold"])

            def memory(model: Any, visual_mask: Any) -> Any:
                from ..memory import memory_sharpv

                return memory_sharpv(model, visual_mask, threshold=threshold)

            return memory
        return None

    def fixed_token_count(self, options: Mapping[str, Any]) -> Callable[[int, int], int] | None:
        """``fn(n_frames, f) -> int`` when the tokens a video keeps are known before its
        features exist (for these options), else ``None``."""
        if self.token_count is None:
            return None
        own, count = self.own(options), self.token_count
        return lambda n_frames, f: count(n_frames, f, **own)
