"""Small helpers shared by every kernel family: the backend switch and argument checks."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence

import torch

__all__ = [
    "BACKEND_ENV",
    "BACKENDS",
    "FLOAT_DTYPES",
    "INDEX_DTYPES",
    "check_spans",
    "check_written_memory",
    "signature_of",
    "check_no_overlap",
    "check_tensor",
    "getenv",
    "is_interpreting",
    "next_power_of_2",
    "select_backend",
]

#: Input dtypes the Triton kernels accept.
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
#: Dtypes of index arguments (spans, lengths).
INDEX_DTYPES = (torch.int32, torch.int64)

#: Environment variable that picks the implementation behind every ``torch.ops.sharpv`` op.
BACKEND_ENV = "SHARPV_BACKEND"
#: Its values: ``auto`` (Triton on CUDA; on CPU the native kernel where an op has one and it
#: builds, else PyTorch), ``triton``, ``torch``, ``native``.
BACKENDS = ("auto", "triton", "torch", "native")


def _environ_reader() -> Callable[[str], str | None]:
    """The fastest exact reader of ``os.environ``: CPython's ``os._Environ`` keeps the
    variables in a dict under encoded keys (``_data``, ``encodekey``, ``decodevalue``, the same
    ones ``os.environ.get`` goes through, without its ``KeyError`` for an unset variable:
    0.1 instead of 0.7 us, read by the ops at every call); any other mapping is read with
    ``get``."""
    env = os.environ
    data = getattr(env, "_data", None)
    encode = getattr(env, "encodekey", None)
    decode = getattr(env, "decodevalue", None)
    if not (isinstance(data, dict) and callable(encode) and callable(decode)):
        return env.get

    def read(name: str) -> str | None:
        raw = data.get(encode(name))
        return None if raw is None else decode(raw)

    return read


#: the reader of the ``os.environ`` object it was made for (made anew if that is replaced)
_READER: list = [None, None]


def getenv(name: str, default: str = "") -> str:
    """``os.environ.get(name, default)``, read now (cheap enough for every call of an op).

    Examples:
        >>> getenv("SHARPV_SURELY_UNSET_VARIABLE", "auto")
        'auto'
    """
    if _READER[0] is not os.environ:
        _READER[:] = [os.environ, _environ_reader()]
    value = _READER[1](name)
    return default if value is None else value


def is_interpreting() -> bool:
    """True when Triton runs kernels with its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return getenv("TRITON_INTERPRET", "0") == "1"


def select_backend(
    device: torch.device, native_unavailable: Callable[[], str | None] | None = None
) -> str:
    """``"triton"``, ``"torch"`` or ``"native"``: the implementation an op runs on ``device``.

    Reads ``SHARPV_BACKEND`` at every call (``auto`` when unset):

    * ``auto``: the Triton kernels on CUDA; on other devices the op's native CPU kernel when
      it has one and it builds here, else the plain PyTorch path;
    * ``triton``: the Triton kernels; on CPU tensors only under Triton's interpreter
      (``TRITON_INTERPRET=1``, how CI runs the kernels), an error otherwise;
    * ``torch``: the plain PyTorch path on any device (on CUDA: the eager GPU baseline);
    * ``native``: the op's native CPU kernel on CPU tensors (an error when it cannot be
      built); ops without one run their PyTorch path.

    Args:
        device: the device of the op's tensors.
        native_unavailable: for an op with a native CPU kernel, a function returning ``None``
            when that kernel is usable, else the reason it is not.

    Examples:
        >>> select_backend(torch.device("cpu"))  # SHARPV_BACKEND unset, no native kernel
        'torch'
    """
    choice = getenv(BACKEND_ENV, "auto").strip().lower() or "auto"
    if choice not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV} must be one of {BACKENDS}, got {choice!r}")
    if choice == "auto":
        if device.type == "cuda":
            return "triton"
        if device.type == "cpu" and native_unavailable is not None and not native_unavailable():
            return "native"
        return "torch"
    if choice == "triton" and device.type != "cuda" and not is_interpreting():
        raise RuntimeError(
            f"{BACKEND_ENV}=triton needs CUDA tensors, or TRITON_INTERPRET=1 set before triton "
            f"is imported to run the kernels on {device.type} tensors with Triton's interpreter"
        )
    if choice == "native":
        if native_unavailable is None:
            return "torch"
        if device.type != "cpu":
            raise RuntimeError(f"{BACKEND_ENV}=native runs CPU tensors only, got {device.type}")
        reason = native_unavailable()
        if reason is not None:
            raise RuntimeError(f"{BACKEND_ENV}=native: the native CPU kernel is unavailable: "
                               f"{reason}")  # fmt: skip
    return choice


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= ``n`` (1 for ``n <= 1``)."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def check_tensor(
    name: str,
    t: object,
    *,
    ndim: int | None = None,
    dtypes: tuple[torch.dtype, ...] | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Validate a tensor argument, raising ``TypeError``/``ValueError`` that name it."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    if dtypes is not None and t.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} must have dtype in ({names}), got {str(t.dtype)}")
    if device is not None and t.device != device:
        raise ValueError(f"{name} is on {t.device} but must be on {device} like the other inputs")
    return t


def _byte_span(t: torch.Tensor) -> tuple[int, int]:
    """``[first, last]`` byte addresses an (non-empty) tensor's elements occupy."""
    lo = hi = t.data_ptr()
    for size, stride in zip(t.shape, t.stride(), strict=True):
        reach = (size - 1) * stride * t.element_size()
        lo, hi = (lo + reach, hi) if reach < 0 else (lo, hi + reach)
    return lo, hi + t.element_size() - 1


def _self_overlaps(t: torch.Tensor) -> bool:
    """True unless the strides prove that no two elements of ``t`` share memory.

    Sufficient test: with the dimensions of size > 1 sorted by stride, each stride must
    exceed the span of all the smaller ones (true of every view made by slicing, permuting
    or transposing a tensor; false for ``expand`` and most ``as_strided`` aliasing).
    """
    dims = sorted((abs(st), sz) for sz, st in zip(t.shape, t.stride(), strict=True) if sz > 1)
    span = 0
    for stride, size in dims:
        if stride <= span:
            return True
        span += stride * (size - 1)
    return False


def check_no_overlap(named: list[tuple[str, torch.Tensor]]) -> None:
    """Raise ``ValueError`` naming a tensor an op writes whose memory may alias itself or
    another written tensor (a stride-0 ``expand``, two views of one buffer that intersect).

    Run before the first write, so that an op that raises leaves its arguments unchanged.
    """
    spans = []
    for name, t in named:
        if t.numel() == 0:
            continue
        if _self_overlaps(t):
            raise ValueError(
                f"{name} has overlapping memory (strides {tuple(t.stride())}); pass a tensor "
                "whose elements do not alias, e.g. .clone()"
            )
        spans.append((name, t.untyped_storage().data_ptr(), *_byte_span(t)))
    spans.sort(key=lambda s: (s[1], s[2]))
    reach: tuple[str, int, int] | None = None  # (name, storage, highest byte so far)
    for name, storage, lo, hi in spans:
        if reach is not None and reach[1] == storage and lo <= reach[2]:
            raise ValueError(
                f"{reach[0]} and {name} share memory; the tensors an op writes must not"
            )
        if reach is None or reach[1] != storage or hi > reach[2]:
            reach = (name, storage, hi)


def check_spans(span_start: object, span_len: object, bsz: int, device: torch.device) -> None:
    """``span_start``/``span_len``: ``(bsz,)`` int32/int64 tensors on ``device`` (any strides)."""
    for name, t in (("span_start", span_start), ("span_len", span_len)):
        check_tensor(name, t, ndim=1, dtypes=INDEX_DTYPES, device=device)
        if t.shape[0] != bsz:
            raise ValueError(f"{name} must have shape ({bsz},), got {tuple(t.shape)}")


def check_written_memory(
    keys: list[torch.Tensor] | None = None,
    values: list[torch.Tensor] | None = None,
    lengths: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> None:
    """The tensors an op writes must not alias themselves or each other (a stride-0
    ``lengths``, two layers that are views of one slot range): ``ValueError`` naming them.
    Reads data pointers, so it runs in the real implementations, not the fake ones."""
    written = [(f"keys[{i}]", k) for i, k in enumerate(keys or [])]
    written += [(f"values[{i}]", v) for i, v in enumerate(values or [])]
    if lengths is not None:
        written.append(("lengths", lengths))
    if out is not None:
        written.append(("out", out))
    check_no_overlap(written)


def _written(annotation: object) -> object:
    """An annotation as written: ``NamedTuple`` keeps postponed ones as ``ForwardRef``."""
    return getattr(annotation, "__forward_arg__", annotation)


def signature_of(
    args_type: type[tuple],
    *,
    head: Sequence[inspect.Parameter] = (),
    tail: Sequence[inspect.Parameter] = (),
    keyword_only: bool = False,
    defaults: bool = True,
) -> Callable[[Callable], Callable]:
    """Give the decorated ``f(*args, **kwargs)`` the signature ``(*head, <fields>, *tail)``:
    the fields of the ``NamedTuple`` ``args_type``, in order, with their annotations as
    written (and their defaults unless ``defaults=False``; keyword-only if ``keyword_only``),
    and ``f``'s return annotation.

    An op's arguments are written once, as the fields of its ``NamedTuple`` (``checks.py``);
    ``inspect.signature``, ``help()`` and ``torch.library.custom_op``'s schema inference read
    them from there.

    Examples:
        >>> from typing import NamedTuple
        >>> class Args(NamedTuple):
        ...     x: torch.Tensor
        ...     k: int = 2
        >>> @signature_of(Args)
        ... def op(*args, **kwargs) -> None: ...
        >>> str(inspect.signature(op))
        "(x: 'torch.Tensor', k: 'int' = 2) -> 'None'"
    """
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    if keyword_only:
        kind = inspect.Parameter.KEYWORD_ONLY
    found = args_type._field_defaults if defaults else {}
    fields = [
        inspect.Parameter(n, kind, annotation=_written(args_type.__annotations__[n]),
                          default=found.get(n, inspect.Parameter.empty))
        for n in args_type._fields
    ]  # fmt: skip

    def apply(fn: Callable) -> Callable:
        ret = fn.__annotations__.get("return", inspect.Signature.empty)
        fn.__signature__ = inspect.Signature([*head, *fields, *tail], return_annotation=ret)
        return fn

    return apply
