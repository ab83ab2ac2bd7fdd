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
from .checks import PruneOptions, check_visual_args, prepare_cu_frames, raise_bad_features
from .launch import MAX_TOKENS_PER_FRAME, visual_prune_triton, visual_scores_triton
from .native import NATIVE_DTYPES, native_unavailable_reason
from .torch_path import visual_prune_torch, visual_scores_torch

__all__ = ["visual_prune_op", "visual_scores_op", "visual_prune_checked", "plain_eager"]

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
    check_visual_args(features, cu_frames, **PruneOptions(*options)._asdict())
    return visual_prune_checked(features, cu_frames, *options, return_scores)


def plain_eager(*tensors: torch.Tensor) -> bool:
    """True when calling an op's body directly does what the dispatcher would: plain tensors,
    no autograd to record, no ``torch.compile`` tracing, no Python dispatch or function mode,
    no functorch transform."""
    return (
        all(type(t) is torch.Tensor for t in tensors)
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
        and not torch.compiler.is_compiling()
        and _get_current_dispatch_mode() is None
        and not torch._C._is_torch_function_mode_enabled()
        and not torch._C._are_functorch_transforms_active()
    )


def visual_prune_checked(
    features: torch.Tensor,
    cu_frames: torch.Tensor,
    *rest: Any,
    cu_host: Sequence[int] | None = None,
) -> _Out6:
    """The body of ``torch.ops.sharpv.visual_prune`` after :func:`check_visual_args`:
    ``rest`` as the op's (the fields of :class:`~.checks.PruneOptions`, then
    ``return_scores``).

    ``cu_host``: the values of ``cu_frames`` when the caller has them on the host as ints
    (checked here; saves reading them back from the tensor).
    """
    *options, return_scores = rest
    kw = PruneOptions(*options)._asdict()
    backend = _backend(features)
    cu = prepare_cu_frames(
        cu_frames, features, check_on_host=backend != "triton", host_values=cu_host
    )
    if backend == "triton":
        # host values of cu_frames size a multi-video budget output with no read-back
        if kw["mode"] == "budget" and cu_frames.device.type == "cpu" and cu_host is None:
            cu_host = cu_frames.tolist()
        out = visual_prune_triton(features, cu, cu_host=cu_host, **kw)
    else:
        out = visual_prune_torch(features, cu, native=backend == "native", **kw)
    tokens, indices, counts, ratios, cu_tokens, scores = out
    if not return_scores:
        scores = scores.new_empty(0)
    return tokens, indices, counts, ratios, cu_tokens, scores


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
