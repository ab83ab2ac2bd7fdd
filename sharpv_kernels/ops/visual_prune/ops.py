"""``torch.ops.sharpv.visual_prune`` and ``torch.ops.sharpv.visual_scores``.

One body per op picks the implementation with the backend switch
(:func:`sharpv_kernels._utils.select_backend`, ``SHARPV_BACKEND=auto|triton|torch|native``,
read at every call): the Triton kernels (``launch.py``), the plain PyTorch path
(``torch_path.py``), or that path with its score pass on the native CPU kernel
(``native.py``). The fake implementations give the data-dependent output size an
unbacked symbol, so a function calling the op traces under ``torch.compile(fullgraph=True)``.

The public functions (``api.py``) check their arguments once and, in plain eager mode
(:func:`plain_eager`: no tracing, no dispatch or function mode, no autograd to record), call
the op's body (:func:`visual_prune_checked`) directly: the ``torch.library`` dispatch and a
second argument check would cost more than the rest of the host path.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from ..._utils import select_backend, signature_of
from .checks import (
    PruneOptions,
    check_visual_args,
    check_visual_call,
    prepare_cu_and_values,
    prepare_cu_frames,
    raise_bad_features,
)
from .launch import MAX_TOKENS_PER_FRAME, visual_prune_triton, visual_scores_triton
from .native import NATIVE_DTYPES, native_unavailable_reason
from .torch_path import visual_prune_torch, visual_scores_torch

__all__ = [
    "visual_prune_op",
    "visual_scores_op",
    "visual_prune_checked",
    "visual_scores_checked",
    "plain_eager",
]

_Out6 = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _backend(features: torch.Tensor) -> str:
    """The backend for these features, after the checks the kernels need."""
    backend = select_backend(features.device, native_unavailable_reason)
    if backend == "native" and features.dtype not in NATIVE_DTYPES:
        return "torch"  # float64: the PyTorch path keeps float64 throughout
    if backend == "triton":
        if features.dtype == torch.float64:
            raise TypeError("features must be float32, float16 or bfloat16 for the Triton kernels")
        if features.shape[1] > MAX_TOKENS_PER_FRAME:
            raise ValueError(
                f"features.shape[1] must be <= {MAX_TOKENS_PER_FRAME} for the Triton kernels, "
                f"got {features.shape[1]}"
            )
    return backend


#: visual_prune reads the kept count back from the device in adaptive/manual mode (one
#: synchronisation), and both ops copy host-side ``cu_frames`` to the device: a CUDA graph
#: cannot capture them
_UNSAFE = (torch.Tag.cudagraph_unsafe,)


_TENSORS = tuple(
    inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="torch.Tensor")
    for name in ("features", "cu_frames")
)
_RETURN_SCORES = inspect.Parameter(
    "return_scores", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="bool"
)


@torch.library.custom_op("sharpv::visual_prune", mutates_args=(), tags=_UNSAFE)
@signature_of(PruneOptions, head=_TENSORS, tail=(_RETURN_SCORES,), defaults=False)
def visual_prune_op(features: torch.Tensor, cu_frames: torch.Tensor, *rest: Any) -> _Out6:
    """Visual SharpV. Returns ``(tokens, indices, counts, ratios, cu_tokens, scores)``;
    ``scores`` is ``(total_frames, f)`` float32 when ``return_scores`` else an empty tensor.
    ``rest``: the fields of :class:`~.checks.PruneOptions`, then ``return_scores``. See
    :func:`sharpv_kernels.visual_prune` for the contract."""
    *options, return_scores = rest
    opts = check_visual_call(features, cu_frames, PruneOptions(*options))
    out = visual_prune_checked(features, cu_frames, opts, return_scores)
    return (*out[:5], features.new_empty(0, dtype=torch.float32) if out[5] is None else out[5])


def plain_eager(*tensors: torch.Tensor) -> bool:
    """True when calling an op's body directly does what the dispatcher would: plain tensors,
    no autograd to record, no ``torch.compile`` tracing, no Python dispatch or function mode,
    no functorch transform."""
    grad = torch.is_grad_enabled()
    for t in tensors:
        if type(t) is not torch.Tensor or (grad and t.requires_grad):
            return False
    return not (
        torch.compiler.is_compiling()
        or _get_current_dispatch_mode() is not None
        or torch._C._is_torch_function_mode_enabled()
        or torch._C._are_functorch_transforms_active()
    )


def visual_prune_checked(
    features: torch.Tensor,
    cu_frames: torch.Tensor,
    options: PruneOptions,
    return_scores: bool,
    *,
    cu_host: Sequence[int] | None = None,
) -> tuple[torch.Tensor | None, ...]:
    """The body of ``torch.ops.sharpv.visual_prune`` after :func:`check_visual_call`, with
    ``scores`` None unless ``return_scores`` (the op returns an empty tensor there).

    ``options``: the checked :class:`~.checks.PruneOptions`, numbers as ``float``/``int``.
    ``cu_host``: the values of ``cu_frames`` when the caller has them on the host as ints
    (checked here; saves reading them back from the tensor).
    """
    backend = _backend(features)
    cu, cu_host = prepare_cu_and_values(
        cu_frames, features, check_on_host=backend != "triton", host_values=cu_host
    )
    mode, w, threshold, keep_ratio, budget, min_keep, metric = options
    if backend == "triton":
        # host values of cu_frames size a multi-video budget output with no read-back
        return visual_prune_triton(
            features, cu, mode=mode, w=w, threshold=threshold, keep_ratio=keep_ratio,
            budget=budget, min_keep=min_keep, metric=metric, cu_host=cu_host,
            scores=return_scores,
        )  # fmt: skip
    out = visual_prune_torch(features, cu, native=backend == "native", **options._asdict())
    return (*out[:5], out[5] if return_scores else None)


@visual_prune_op.register_fake
def _visual_prune_fake(features, cu_frames, *rest):
    return_scores = rest[-1]
    n_frames, f, d = features.shape
    n_keep = torch.library.get_ctx().new_dynamic_size()
    return (
        features.new_empty((n_keep, d)),
        features.new_empty((n_keep,), dtype=torch.int64),
        features.new_empty((n_frames,), dtype=torch.int32),
        features.new_empty((n_frames,), dtype=torch.float32),
        features.new_empty((cu_frames.shape[0],), dtype=torch.int32),
        features.new_empty((n_frames, f) if return_scores else (0,), dtype=torch.float32),
    )


@torch.library.custom_op("sharpv::visual_scores", mutates_args=(), tags=_UNSAFE)
def visual_scores_op(
    features: torch.Tensor, cu_frames: torch.Tensor, w: float, metric: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spatial ``S``, temporal ``T``, importance ``I`` (each ``(total_frames, f)`` float32)
    and keep ratio ``r`` (``(total_frames,)`` float32) of Visual SharpV, for analysis."""
    check_visual_args(features, cu_frames, w=w, threshold=0.0, min_keep=0, metric=metric)
    return visual_scores_checked(features, cu_frames, w, metric)


def visual_scores_checked(
    features: torch.Tensor, cu_frames: torch.Tensor, w: float, metric: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The body of ``torch.ops.sharpv.visual_scores`` after its argument check."""
    backend = _backend(features)
    cu = prepare_cu_frames(cu_frames, features, check_on_host=backend != "triton")
    if backend == "triton":
        return visual_scores_triton(features, cu, w=w, metric=metric)
    S, T, I, r, norms = visual_scores_torch(features, cu, w, metric, native=backend == "native")
    raise_bad_features(features, norms)
    return tuple(v.to(torch.float32) for v in (S, T, I, r))


@visual_scores_op.register_fake
def _visual_scores_fake(features, cu_frames, w, metric):
    n_frames, f, _ = features.shape
    s = features.new_empty((n_frames, f), dtype=torch.float32)
    return s, torch.empty_like(s), torch.empty_like(s), s.new_empty((n_frames,))
