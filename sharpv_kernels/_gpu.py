"""What the launchers need to know about the GPU, and how CI stands in for one.

* :func:`device_limits`: SM count, shared memory and thread limits of a tensor's device. On a
  CUDA device they come from the driver. Under Triton's interpreter they are those of one SM
  (few, wide programs), unless ``SHARPV_SIM_SMS=<int>`` names an SM count: then the planners
  plan for that GPU (:data:`SIM_GPUS`), so CI runs the launch plans a real GPU would get.
* :func:`check_grid`: a launch grid within CUDA's limits, checked before every launch.
* :func:`launch_scope`: the context every launcher runs its kernels in: the tensors' CUDA
  device (``torch.cuda.device``, for models split over GPUs), and under the interpreter the
  program order ``SHARPV_SIM_ORDER=forward|reversed|shuffled[:SEED]`` asks for, so that a
  kernel whose result depends on the order its programs run in (a race on a GPU) fails on a
  CPU.
"""

from __future__ import annotations

import contextlib
import functools
import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ._utils import getenv

__all__ = [
    "SIM_SMS_ENV",
    "SIM_ORDER_ENV",
    "SIM_GPUS",
    "INTERPRETER_LIMITS",
    "MAX_GRID_X",
    "MAX_GRID_YZ",
    "MAX_BLOCK_NUMEL",
    "FP_PINNED",
    "DeviceLimits",
    "device_limits",
    "check_grid",
    "launch_scope",
    "program_order",
]

SIM_SMS_ENV = "SHARPV_SIM_SMS"
SIM_ORDER_ENV = "SHARPV_SIM_ORDER"
#: CUDA's grid limits: axis x below 2^31, axes y and z at most 65,535 programs
MAX_GRID_X = 2**31 - 1
MAX_GRID_YZ = 65535
#: Triton's largest block (``TRITON_MAX_TENSOR_NUMEL``): elements of any tensor in a program
MAX_BLOCK_NUMEL = 1 << 20
#: launch options of every kernel: no floating-point contraction the source did not write
#: (``tl.fma`` where a fused product is meant), so the GPU rounds as the interpreter does;
#: Triton 3.9 fuses by default and warns that the default changes
FP_PINNED = {"enable_fp_fusion": False}


@dataclass(frozen=True)
class DeviceLimits:
    """The limits the planners read (bytes, threads)."""

    name: str
    sms: int
    shared_per_sm: int
    shared_per_block: int
    max_threads_per_sm: int
    max_threads_per_block: int = 1024


_KB = 1024
#: GPUs ``SHARPV_SIM_SMS`` stands in for, by SM count (CUDA C Programming Guide, "Technical
#: Specifications per Compute Capability"; NVIDIA's A100/H100/B200/L40S data sheets).
SIM_GPUS = {
    108: DeviceLimits("A100 (sm_80)", 108, 164 * _KB, 163 * _KB, 2048),
    132: DeviceLimits("H100/H200 SXM (sm_90)", 132, 228 * _KB, 227 * _KB, 2048),
    142: DeviceLimits("L40S (sm_89)", 142, 100 * _KB, 99 * _KB, 1536),
    148: DeviceLimits("B200 (sm_100)", 148, 228 * _KB, 227 * _KB, 2048),
    170: DeviceLimits("RTX 5090 (sm_120)", 170, 128 * _KB, 99 * _KB, 1536),
}
#: The interpreter without ``SHARPV_SIM_SMS``: one SM, the widest blocks, the fewest programs.
INTERPRETER_LIMITS = DeviceLimits("Triton interpreter", 1, 228 * _KB, 227 * _KB, 2048)


def sim_limits(sms: int) -> DeviceLimits:
    """The limits of the GPU with ``sms`` SMs in :data:`SIM_GPUS`; for another count, the
    smallest limits of the table (a GPU of that size with the least shared memory)."""
    if sms in SIM_GPUS:
        return SIM_GPUS[sms]
    return DeviceLimits(f"{sms}-SM GPU", sms, 100 * _KB, 99 * _KB, 1536)


@functools.lru_cache(maxsize=64)
def _cuda_limits(index: int) -> DeviceLimits:
    p = torch.cuda.get_device_properties(index)
    return DeviceLimits(
        p.name, p.multi_processor_count, p.shared_memory_per_multiprocessor,
        getattr(p, "shared_memory_per_block_optin", p.shared_memory_per_block),
        p.max_threads_per_multi_processor,
    )  # fmt: skip


def device_limits(device: torch.device) -> DeviceLimits:
    """Limits of ``device``: the driver's on CUDA; else ``SHARPV_SIM_SMS``'s GPU (read at every
    call) or :data:`INTERPRETER_LIMITS`.

    Examples:
        >>> device_limits(torch.device("cpu")).sms  # SHARPV_SIM_SMS unset
        1
    """
    if device.type == "cuda":
        return _cuda_limits(device.index if device.index is not None else 0)
    raw = getenv(SIM_SMS_ENV).strip()
    if not raw:
        return INTERPRETER_LIMITS
    try:
        sms = int(raw)
    except ValueError:
        sms = 0
    if sms < 1:
        raise ValueError(f"{SIM_SMS_ENV} must be a positive integer, got {raw!r}")
    return sim_limits(sms)


def check_grid(kernel: str, grid: tuple[int, ...]) -> tuple[int, ...]:
    """``grid`` unchanged when CUDA can launch it, else ``ValueError`` naming the kernel."""
    limits = (MAX_GRID_X, MAX_GRID_YZ, MAX_GRID_YZ)
    if not 1 <= len(grid) <= 3 or any(
        not 1 <= g <= lim for g, lim in zip(grid, limits, strict=False)
    ):
        raise ValueError(
            f"{kernel}: grid {grid} is outside CUDA's limits (axis x in [1, 2^31 - 1], "
            f"y and z in [1, {MAX_GRID_YZ}])"
        )
    return grid


def _order(spec: str, n: int) -> list[int]:
    """The linear program indices ``0..n-1`` in the order ``spec`` names."""
    kind, _, seed = spec.partition(":")
    if kind == "forward":
        return list(range(n))
    if kind == "reversed":
        return list(range(n - 1, -1, -1))
    if kind == "shuffled":
        order = list(range(n))
        random.Random(int(seed) if seed else 0).shuffle(order)
        return order
    raise ValueError(f"{SIM_ORDER_ENV} must be forward, reversed or shuffled[:SEED], got {spec!r}")


@contextlib.contextmanager
def program_order(spec: str) -> Iterator[None]:
    """Run the interpreter's program instances in the order ``spec`` names.

    Triton 3.9's interpreter walks the grid in nested ``x, y, z`` loops, calling
    ``interpreter_builder.set_grid_dim`` once and ``set_grid_idx(x, y, z)`` before each
    program. This maps the n-th call to the n-th program of the permutation instead (an
    instance attribute over the builder's method, removed on exit).
    """
    if spec == "forward":
        yield
        return
    from triton.runtime import interpreter as interp

    builder = interp.interpreter_builder
    real_dim, real_idx = builder.set_grid_dim, builder.set_grid_idx
    state: dict[str, list[int]] = {}

    def set_grid_dim(nx, ny, nz):
        real_dim(nx, ny, nz)
        state["order"] = _order(spec, nx * ny * nz)

    def set_grid_idx(x, y, z):
        _, ny, nz = builder.grid_dim
        lin = state["order"][(x * ny + y) * nz + z]
        real_idx(lin // (ny * nz), lin // nz % ny, lin % nz)

    builder.set_grid_dim, builder.set_grid_idx = set_grid_dim, set_grid_idx
    try:
        yield
    finally:
        del builder.set_grid_dim, builder.set_grid_idx


def launch_scope(device: torch.device) -> contextlib.AbstractContextManager:
    """Context of one op's launches: ``torch.cuda.device(device)`` on CUDA; on other devices
    (Triton's interpreter), the program order of ``SHARPV_SIM_ORDER`` (read at every call)."""
    if device.type == "cuda":
        return torch.cuda.device(device)
    # elsewhere Triton runs only under its interpreter (the backend switch checks that)
    spec = getenv(SIM_ORDER_ENV).strip() or "forward"
    if spec == "forward":
        return _NO_SCOPE
    _order(spec, 0)  # a bad value fails here, before any launch
    return program_order(spec)


#: the context of a launch that needs none (reusable: it holds no state)
_NO_SCOPE = contextlib.nullcontext()
