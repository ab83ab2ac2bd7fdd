"""Launcher of the native CPU kernel of Visual SharpV's score pass (``native_scores.c``).

The kernel reads each row twice: once for its norm, its frame's column sums and its
difference to the same token of the previous frame (``T``), and once more, from cache, for
its difference to the frame mean (``S``); no intermediate tensor (the PyTorch path makes
about a dozen passes). It is what ``visual_prune``/``visual_scores`` run on CPU tensors under
``SHARPV_BACKEND=auto`` when a C compiler is present (``native``). The rest of that route is
the PyTorch path's (:func:`~.torch_path.visual_prune_torch` with ``native=True``), with its
semantics and bits, except that the scores from the distances (:func:`scores_ratios_native`), the
top-K selection (:func:`select_native`), the gather (:func:`gather_rows_native`), the
finiteness flag (:func:`norms_finite_native`) and the int32 counts and token offsets
(:func:`counts_cu_native`) run in the same library; the per-frame keep counts (budget split
included) stay aten ops.

Work is split over ``torch.get_num_threads()`` OpenMP threads by frame ranges; built with
OpenMP after torch is loaded, the kernel shares torch's OpenMP runtime and so its threads
(without OpenMP, the ranges run in turn). GNU OpenMP is not safe after ``fork()`` (the
child's first parallel region waits forever for the parent's threads), so in a forked child
every call runs on one thread and enters no OpenMP region (an at-fork handler switches it).

When the kernel cannot be used (no compiler, an untrusted cache folder, a failed build; see
:mod:`sharpv_kernels._native`), :func:`native_unavailable_reason` says why; under
``SHARPV_BACKEND=auto`` it also warns once (:class:`~sharpv_kernels._native.NativeKernelWarning`)
that the PyTorch path runs instead.

Examples:
    >>> x = torch.randn(4, 6, 8)
    >>> dm, dt, norms, mean_norms = unit_distances_native(x)  # doctest: +SKIP
    >>> dm.shape, mean_norms.shape  # doctest: +SKIP
    (torch.Size([4, 6]), torch.Size([4, 1]))
"""

from __future__ import annotations

import ctypes
import math
import os
import threading

import torch

from ..._native import NativeUnavailable, load_library, warn_once
from ..._utils import BACKEND_ENV
from ...vocab import ZERO_NORM_EPS

__all__ = [
    "NATIVE_DTYPES",
    "gather_rows_native",
    "scores_ratios_native",
    "norms_finite_native",
    "counts_cu_native",
    "select_native",
    "native_unavailable_reason",
    "unit_distances_native",
]

#: outputs at least this large get transparent huge pages (see :func:`gather_rows_native`)
HUGE_OUTPUT_BYTES = 8 << 20

#: Input dtypes of the native kernel (its codes in ``native_scores.c``).
NATIVE_DTYPES = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}

#: the functions the kernel's library must export (checked before first use)
SYMBOLS = ("sharpv_visual_distances", "sharpv_advise_hugepages", "sharpv_gather_rows",
           "sharpv_select_top", "sharpv_visual_scores", "sharpv_all_finite",
           "sharpv_counts_cu")  # fmt: skip

_lock = threading.Lock()
_state: dict[str, object] = {"forked": False}


def _after_fork_in_child() -> None:
    """In a forked child: one thread per call (no OpenMP region), and a fresh lock (the
    parent's may have been held by another thread at the fork)."""
    global _lock
    _lock = threading.Lock()
    _state["forked"] = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def _threads() -> int:
    """Threads of a kernel call: torch's intra-op count, 1 in a forked child."""
    return 1 if _state["forked"] else max(1, torch.get_num_threads())


def _library() -> ctypes.CDLL:
    """The loaded kernel; the first call builds it, a failure is remembered and re-raised."""
    with _lock:
        if "lib" not in _state:
            try:
                lib = load_library(__package__, "native_scores.c", (("-fopenmp",), ()), SYMBOLS)
            except NativeUnavailable as e:
                _state["lib"] = e
            except OSError as e:  # never a crash of the caller: a reason, like the others
                _state["lib"] = NativeUnavailable(f"building or loading native_scores.c: {e}")
            else:
                fn = lib.sharpv_visual_distances
                i64, ptr = ctypes.c_int64, ctypes.c_void_p
                fn.argtypes = [ptr, ctypes.c_int, i64, i64, i64, i64, i64, ctypes.c_double,
                               ptr, ptr, ptr, ptr, ctypes.c_int]  # fmt: skip
                fn.restype = ctypes.c_int
                adv = lib.sharpv_advise_hugepages
                adv.argtypes, adv.restype = [ptr, ctypes.c_size_t], ctypes.c_int
                gat = lib.sharpv_gather_rows
                gat.argtypes = [ptr, i64, i64, ptr, i64, ptr, ctypes.c_int]
                gat.restype = ctypes.c_int
                sel = lib.sharpv_select_top
                sel.argtypes, sel.restype = [ptr, i64, i64, ptr, ptr], i64
                sco = lib.sharpv_visual_scores
                sco.argtypes = [ptr, ptr, ptr, ptr, ptr, i64, i64, i64, ctypes.c_int,
                                ctypes.c_float, ctypes.c_float, ptr, ptr, ptr, ptr]  # fmt: skip
                sco.restype = None
                fin = lib.sharpv_all_finite
                fin.argtypes, fin.restype = [ptr, i64], ctypes.c_int
                ccu = lib.sharpv_counts_cu
                ccu.argtypes, ccu.restype = [ptr, i64, ptr, i64, ptr, ptr], None
                _state["lib"] = lib
        lib = _state["lib"]
    if isinstance(lib, NativeUnavailable):
        raise lib
    return lib  # type: ignore[return-value]


def native_unavailable_reason() -> str | None:
    """``None`` when the native kernel is usable here, else why not (building it on the
    first call). Unless ``SHARPV_BACKEND=native`` (where the caller raises the reason), the
    first time it is unavailable also warns that the PyTorch path runs instead."""
    try:
        _library()
    except NativeUnavailable as e:
        if os.environ.get(BACKEND_ENV, "auto").strip().lower() != "native":
            warn_once(f"the native CPU kernel is unavailable, the PyTorch path runs instead: {e}")
        return str(e)
    return None


def unit_distances_native(
    features: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit-vector distances of every token, on the native CPU kernel.

    Args:
        features: ``(total_frames, f, d)`` float32/bfloat16/float16 CPU tensor, any strides.
    Returns:
        ``dm`` ``(total_frames, f)``: ``||u(x_t,i) - u(mean_t)||``; ``dt`` ``(total_frames, f)``:
        ``||u(x_t,i) - u(x_t-1,i)||`` (0 for frame 0; links across videos are the caller's
        to replace); ``norms`` ``(total_frames, f)`` (``+inf`` where the squared norm
        overflows float32, NaN for NaN/Inf tokens); ``mean_norms`` ``(total_frames, 1)``.
        All float32.
    Raises:
        NativeUnavailable: the kernel cannot be built here.
        MemoryError: the kernel could not allocate its scratch rows.
    """
    lib = _library()
    if features.stride(2) != 1:
        features = features.contiguous()
    n, f, d = features.shape
    out = [torch.empty((n, f), dtype=torch.float32) for _ in range(3)]  # dm, dt, norms
    out.append(torch.empty((n, 1), dtype=torch.float32))  # mean norms
    if n == 0 or f == 0:
        return out[0], out[1], out[2], out[3]
    code = NATIVE_DTYPES[features.dtype]
    ptrs = [t.data_ptr() for t in out]
    st, si = features.stride(0), features.stride(1)
    rc = lib.sharpv_visual_distances(features.data_ptr(), code, n, f, d, st, si, ZERO_NORM_EPS,
                                     *ptrs, _threads())  # fmt: skip
    if rc:
        raise MemoryError("the native Visual SharpV kernel could not allocate its scratch rows")
    return out[0], out[1], out[2], out[3]


def gather_rows_native(rows: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``rows.index_select(0, indices)`` on the native kernel, into a new tensor that, when
    large, is backed by transparent huge pages (Linux, where enabled for ``madvise``).

    Writing a fresh multi-megabyte output costs mostly first-touch page faults (measured: 62-65
    ms to copy 140 MB of kept rows into new memory, 15 ms into memory already touched);
    huge pages make them 512 times rarer. Outputs of 4 MB or more are copied a row at a time
    on ``torch.get_num_threads()`` OpenMP threads (one in a forked child) with non-temporal
    stores (``sharpv_gather_rows``); rows whose channels are not adjacent go to
    ``index_select``.

    Args:
        rows: ``(N, d)`` CPU tensor; indices: ``(K,)`` int64 row indices, valid (not checked).
    Returns:
        ``(K, d)`` tensor of ``rows.dtype``.

    Examples:
        >>> gather_rows_native(torch.arange(6.0).view(3, 2), torch.tensor([2, 0])).tolist()
        [[4.0, 5.0], [0.0, 1.0]]
    """
    out = torch.empty((indices.numel(), rows.shape[1]), dtype=rows.dtype)
    nbytes = out.numel() * out.element_size()
    lib = _library()
    if nbytes >= HUGE_OUTPUT_BYTES:
        lib.sharpv_advise_hugepages(out.data_ptr(), nbytes)  # advisory: result unused
    if nbytes == 0 or (rows.stride(1) != 1 and rows.shape[1] > 1) or indices.dtype != torch.int64:
        return torch.index_select(rows, 0, indices, out=out)
    idx = indices.contiguous()
    es = rows.element_size()
    lib.sharpv_gather_rows(rows.data_ptr(), rows.stride(0) * es, rows.shape[1] * es, idx.data_ptr(),
                           idx.numel(), out.data_ptr(), _threads())  # fmt: skip
    return out


def select_native(scores: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """What :func:`~.torch_path.select_torch` returns, on the native kernel: the flat indices
    (int64, increasing) of the top-``counts[t]`` tokens of each frame by ``scores``, ties to
    the lower token index (every NaN above every number, ``-0`` equal to ``+0``: the order
    of ``torch.sort(descending=True, stable=True)``); a quickselect per frame.

    Args:
        scores: ``(n, f)`` float32 CPU tensor; counts: ``(n,)`` int64, each in ``[0, f]``.
    Returns:
        ``(sum(counts),)`` int64.
    Raises:
        MemoryError: the kernel could not allocate its scratch.

    Examples:
        >>> select_native(torch.tensor([[0.5, 2.0, 2.0], [1.0, 0.0, 3.0]]),
        ...               torch.tensor([2, 1])).tolist()  # doctest: +SKIP
        [1, 2, 5]
    """
    n, f = scores.shape
    s, k = scores.contiguous(), counts.contiguous()
    out = torch.empty(int(k.sum()), dtype=torch.int64)
    m = _library().sharpv_select_top(s.data_ptr(), n, f, k.data_ptr(), out.data_ptr())
    if m < 0:
        raise MemoryError("the native Visual SharpV selection could not allocate its scratch")
    return out


def scores_ratios_native(
    dm: torch.Tensor,
    dt: torch.Tensor,
    norms: torch.Tensor,
    mean_norms: torch.Tensor,
    cu_frames: torch.Tensor,
    w: float,
    metric: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``S, T, I`` from the float32 distances of :func:`unit_distances_native`, and the ratios
    ``r``, in one native call instead of about a dozen small aten ops.

    ``S, T, I``: the float32 operations of :func:`~.torch_path.visual_scores_torch`
    (``pair_scores``, ``T = S`` on every video's first frame, ``I = T + w S``; non-zero
    tokens: norm above ``ZERO_NORM_EPS`` compared in float32), the same bits. ``r``:
    ``clamp(||T[t]|| / (2 sqrt f), 0, 1)`` with the squares of ``T`` summed in double
    (``torch.linalg.vector_norm`` sums in float32: the two may differ by a float32 rounding
    of the norm; equal where the sum is exact), the norm rounded to float32, then its float32
    division and clamp.

    Returns:
        ``S, T, I`` ``(n, f)`` and ``r`` ``(n,)``, float32.
    """
    n, f = dm.shape
    out = [torch.empty((n, f), dtype=torch.float32) for _ in range(3)]
    if n == 0 or f == 0:  # torch_path's expression for r (NaN for f = 0)
        r = (torch.linalg.vector_norm(out[1], dim=-1) / (2.0 * math.sqrt(f))).clamp(0.0, 1.0)
        return out[0], out[1], out[2], r
    r = torch.empty((n,), dtype=torch.float32)
    cu = cu_frames.to(torch.int32).contiguous()
    ins = [t.contiguous() for t in (dm, dt, norms, mean_norms)]
    _library().sharpv_visual_scores(*[t.data_ptr() for t in ins], cu.data_ptr(), cu.numel() - 1,
                                    n, f, int(metric == "cosine"), w, ZERO_NORM_EPS,
                                    *[t.data_ptr() for t in out], r.data_ptr())  # fmt: skip
    return out[0], out[1], out[2], r


def norms_finite_native(norms: torch.Tensor) -> bool:
    """``bool(torch.isfinite(norms).all())`` for the float32 norms of
    :func:`unit_distances_native` (``>= 0``, ``+inf`` or NaN), in one native call.

    Examples:
        >>> norms_finite_native(torch.tensor([1.0, float("inf")]))  # doctest: +SKIP
        False
    """
    nr = norms.contiguous()
    if nr.dtype != torch.float32:
        return bool(torch.isfinite(nr).all())
    return bool(_library().sharpv_all_finite(nr.data_ptr(), nr.numel()))


def counts_cu_native(
    counts: torch.Tensor, cu_frames: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``counts`` as int32 and the token offsets ``cu_tokens`` (``(B + 1,)`` int32: the sums
    of ``counts`` over the frames before each ``cu_frames[b]``), as
    :func:`~.torch_path.visual_prune_torch` computes them (cumsum, index, int32), in one
    native call.

    Args:
        counts: ``(n,)`` int64 CPU tensor; cu_frames: ``(B + 1,)`` valid frame offsets.

    Examples:
        >>> counts_cu_native(torch.tensor([2, 3, 1]), torch.tensor([0, 2, 3]))  # doctest: +SKIP
        (tensor([2, 3, 1], dtype=torch.int32), tensor([0, 5, 6], dtype=torch.int32))
    """
    k = counts.to(torch.int64).contiguous()
    cu = cu_frames.to(torch.int32).contiguous()
    k32 = torch.empty(k.shape, dtype=torch.int32)
    cu_tokens = torch.empty(cu.shape, dtype=torch.int32)
    _library().sharpv_counts_cu(k.data_ptr(), k.numel(), cu.data_ptr(), cu.numel() - 1,
                                k32.data_ptr(), cu_tokens.data_ptr())  # fmt: skip
    return k32, cu_tokens
