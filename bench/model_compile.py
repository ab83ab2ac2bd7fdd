"""Compile the project's Triton kernels for a GPU target exactly as the JIT would, with no GPU.

One implementation shared by ``scripts/aot_compile_check.py`` (CI) and ``bench/model.py``
(the static performance model):

1. :func:`record_launches` runs the real launchers on CPU tensors with every ``@triton.jit``
   kernel of the given modules replaced by a recorder: nothing executes, each launch's grid,
   arguments and options are captured. The launchers therefore pick their launch plan
   (blocks, warps, constexprs) the way they do on a GPU when given that plan.
2. :func:`compile_launch` specialises a recorded launch with Triton's own binder for the
   target (pointer alignment and divisibility-by-16 hints on integer arguments, ``== 1``
   integers folded, ``do_not_specialize`` honoured) and compiles it to a cubin.
3. :func:`cubin_stats` reads registers, spills and SASS (``cuobjdump``) of the cubin.

Examples:
    >>> from bench.model_compile import record_launches, compile_launch
    >>> with record_launches(kernels_module) as launches:  # doctest: +SKIP
    ...     launcher(cpu_tensors)
    >>> compiled = compile_launch(launches[0], arch=90)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, make_backend
from triton.runtime.jit import JITFunction, create_function_from_signature

__all__ = [
    "Launch",
    "record_launches",
    "compile_launch",
    "cubin_stats",
    "CubinStats",
    "local_stores",
]

_BIN = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")


@dataclass
class Launch:
    """One recorded kernel launch: the kernel, its grid and its call arguments."""

    kernel: JITFunction
    grid: tuple[int, int, int]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    #: argument name -> value (positional and keyword, defaults not applied)
    named: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.kernel.fn.__name__

    @property
    def ctas(self) -> int:
        return self.grid[0] * self.grid[1] * self.grid[2]

    @property
    def num_warps(self) -> int:
        return int(self.kwargs.get("num_warps", 4))


class _Recorder:
    """Stands in for a ``@triton.jit`` kernel: ``kernel[grid](...)`` records, runs nothing.

    Small int32 tensors passed to the kernel (the launchers' 2-word headers) are zeroed so
    that a launcher reading its header back sees "no error, nothing kept".
    """

    def __init__(self, fn: JITFunction, log: list[Launch]) -> None:
        self.fn, self.log = fn, log

    def __getitem__(self, grid):
        def call(*args, **kwargs):
            g = tuple(grid) + (1,) * (3 - len(grid))
            names = [p.name for p in self.fn.params]
            named = dict(zip(names, args, strict=False))
            named.update({k: v for k, v in kwargs.items() if k in names})
            for v in list(args) + list(kwargs.values()):
                if isinstance(v, torch.Tensor) and v.dtype == torch.int32 and v.numel() <= 2:
                    v.zero_()
            self.log.append(Launch(self.fn, g, args, kwargs, named))

        return call


@contextlib.contextmanager
def record_launches(*modules: ModuleType) -> Iterator[list[Launch]]:
    """Within the block, launches of the kernels defined in ``modules`` are recorded."""
    log: list[Launch] = []
    saved: list[tuple[ModuleType, str, JITFunction]] = []
    for mod in modules:
        for name, obj in list(vars(mod).items()):
            if isinstance(obj, JITFunction):
                saved.append((mod, name, obj))
                setattr(mod, name, _Recorder(obj, log))
    try:
        yield log
    finally:
        for mod, name, obj in saved:
            setattr(mod, name, obj)


def compile_launch(launch: Launch, arch: int):
    """Compile ``launch`` for ``sm_<arch>`` with the specialisation the JIT would apply."""
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    fn = launch.kernel
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, specialization, options = binder(*launch.args, **launch.kwargs)
    options, signature, constexprs, attrs = fn._pack_args(
        backend, launch.kwargs, bound, specialization, options
    )
    src = ASTSource(fn, signature, constexprs, attrs)
    return triton.compile(src, target=target, options=options.__dict__)


@dataclass
class CubinStats:
    """What ``cuobjdump`` says about one compiled kernel."""

    registers: int
    stack_bytes: int
    shared_bytes: int
    sass_instructions: int
    #: SASS instructions of the innermost loop that loads from global memory (0: no loop)
    loop_instructions: int
    #: global loads (LDG, LDGSTS) in that loop
    loop_loads: int
    #: True when the loop copies global to shared asynchronously (software pipelining)
    pipelined: bool


def _tool(name: str, *args: str, cubin: bytes) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as fh:
            fh.write(cubin)
        out = subprocess.run([os.path.join(_BIN, name), *args, path], capture_output=True,
                             text=True, check=False)  # fmt: skip
    return out.stdout + out.stderr


_INSN = re.compile(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);")
_LABEL = re.compile(r"^\s*\.(L_x_\d+):")
_TARGET = re.compile(r"\b(?:BRA|BRX|JMP)\b[^`]*`\(\.(L_x_\d+)\)")


def _loops(sass: str) -> list[tuple[int, int, list[str]]]:
    """``(start, end, instructions)`` of each backward branch's loop in ``nvdisasm`` output."""
    labels: dict[str, int] = {}
    insns: list[tuple[int, str]] = []
    pending: list[str] = []
    for line in sass.splitlines():
        m = _LABEL.match(line)
        if m:
            pending.append(m.group(1))
            continue
        m = _INSN.search(line)
        if m:
            addr = int(m.group(1), 16)
            for lab in pending:
                labels[lab] = addr
            pending = []
            insns.append((addr, m.group(2).strip()))
    loops = []
    for addr, text in insns:
        t = _TARGET.search(text + ";")
        if t is None:
            t = re.search(r"`\(\.(L_x_\d+)\)", text)
            if t is None or not re.search(r"\bBRA\b", text):
                continue
        start = labels.get(t.group(1))
        if start is not None and start <= addr:
            body = [s for a, s in insns if start <= a <= addr]
            loops.append((start, addr, body))
    return loops


def cubin_stats(compiled) -> CubinStats:
    """Registers, stack, shared memory and SASS loop shape of a compiled kernel."""
    cubin = compiled.asm["cubin"]
    res = _tool("cuobjdump", "-res-usage", cubin=cubin)
    regs = re.search(r"REG:(\d+)", res)
    stack = re.search(r"STACK:(\d+)", res)
    sass = _tool("nvdisasm", "-c", cubin=cubin)
    n_insn = len(_INSN.findall(sass))
    loops = [lp for lp in _loops(sass) if any("LDG" in s for s in lp[2])]
    if loops:
        inner = min(loops, key=lambda lp: lp[1] - lp[0])
        body = inner[2]
        loop_loads = sum(1 for s in body if re.search(r"\bLDG", s))
        pipelined = any("LDGSTS" in s for s in body)
    else:
        body, loop_loads, pipelined = [], 0, False
    return CubinStats(
        registers=int(regs.group(1)) if regs else -1,
        stack_bytes=int(stack.group(1)) if stack else -1,
        shared_bytes=int(compiled.metadata.shared),
        sass_instructions=n_insn,
        loop_instructions=len(body),
        loop_loads=loop_loads,
        pipelined=pipelined,
    )


_STL = re.compile(r"\bSTL(?:\.(\d+))?\b")


def local_stores(compiled) -> int:
    """Bytes written by the SASS's local-memory stores (``STL``; ``STL.64``, ``STL.128``):
    register spills (and local arrays, which Triton does not emit). 0 means no spills."""
    sass = _tool("nvdisasm", "-c", cubin=compiled.asm["cubin"])
    insns = "\n".join(text for _, text in _INSN.findall(sass))
    return sum(int(width or 32) // 8 for width in _STL.findall(insns))
