"""Run a check of the native kernel's build, cache or load in a fresh Python process.

Each ``test_native_*`` file that builds, plants or damages a library runs the code that
loads it in a child process with its own cache folder: the native kernel is loaded once per
process, and a crash there (SIGBUS from a truncated library, a hang after ``fork``) must fail
one test, not kill pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: a library whose constructor leaves a marker file: it must never be loaded from an
#: untrusted place (it exports the kernel's symbols, so a loader that ran it would use it)
PLANTED_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
  const char *p = getenv("PLANTED_MARKER");
  FILE *fh = fopen(p ? p : "/dev/null", "w");
  if (fh) { fputs("planted code ran\n", fh); fclose(fh); }
}
int sharpv_visual_distances(void) { return 1; }
int sharpv_advise_hugepages(void) { return 0; }
"""


def child_env(cache: Path | None, **overrides: str | None) -> dict[str, str]:
    """The environment of a child: this tree first on ``PYTHONPATH``, ``SHARPV_CACHE_DIR``
    set to ``cache`` (unset with ``None``), ``SHARPV_BACKEND=auto``, then ``overrides``
    (``None`` removes a variable)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["SHARPV_BACKEND"] = "auto"
    env["TRITON_INTERPRET"] = "1"
    env.pop("SHARPV_CACHE_DIR", None)
    if cache is not None:
        env["SHARPV_CACHE_DIR"] = str(cache)
    for k, v in overrides.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def run_child(code: str | Path, env: dict[str, str], *, argv: tuple[str, ...] = (),
              timeout: float = 180, **kw):  # fmt: skip
    """Run ``code`` (dedented; or the script at that path) in a fresh interpreter with
    arguments ``argv``; returns the ``CompletedProcess``."""
    program = [str(code)] if isinstance(code, Path) else ["-c", textwrap.dedent(code)]
    try:
        return subprocess.run([sys.executable, *program, *argv], env=env, capture_output=True,
                              text=True, timeout=timeout, **kw)  # fmt: skip
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the child process did not finish in {timeout} s: {e.stderr!r}")


def check_ok(res) -> str:
    """``res``'s stdout, after asserting that it exited with code 0 (not killed by a
    signal: a negative code is the signal's number)."""
    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout}\n{res.stderr[-3000:]}"
    return res.stdout


def compile_planted(tmp: Path) -> Path:
    """``PLANTED_C`` built into ``tmp / planted.so``."""
    from sharpv_kernels._native import compiler_command

    src = tmp / "planted.c"
    src.write_text(PLANTED_C)
    out = tmp / "planted.so"
    subprocess.run([*compiler_command(), "-shared", "-fPIC", str(src), "-o", str(out)],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    return out


#: a child that loads the kernel the way the op does and prints either ``OK`` and whether
#: the op's result equals the PyTorch path's, or ``UNAVAILABLE`` and the reason; warnings
#: of the native loader are printed as ``WARNING <text>``
LOAD_AND_RUN = """
import os, warnings, torch
warnings.simplefilter("always")
from sharpv_kernels import visual_prune
from sharpv_kernels._native import NativeKernelWarning
from sharpv_kernels.ops.visual_prune.native import native_unavailable_reason
x = torch.randn(6, 5, 24, generator=torch.Generator().manual_seed(0))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    reason = native_unavailable_reason()
    got = visual_prune(x, [0, 2, 6]).indices
    got2 = visual_prune(x, [0, 2, 6]).indices
os.environ["SHARPV_BACKEND"] = "torch"
want = visual_prune(x, [0, 2, 6]).indices
for w in caught:
    if issubclass(w.category, NativeKernelWarning):
        print("WARNING", str(w.message).replace(chr(10), " "))
print("SAME" if torch.equal(got, want) and torch.equal(got2, want) else "DIFFERENT")
print("UNAVAILABLE " + reason.replace(chr(10), " ") if reason else "OK")
"""

#: appended to ``LOAD_AND_RUN``: the op under ``SHARPV_BACKEND=native``, printing
#: ``NATIVE_ERROR <message>`` when it raises
THEN_NATIVE = """
os.environ["SHARPV_BACKEND"] = "native"
try:
    visual_prune(x, [0, 2, 6])
except RuntimeError as e:
    print("NATIVE_ERROR", str(e).replace(chr(10), " "))
"""


def lines(out: str, tag: str) -> list[str]:
    """The lines of ``out`` that start with ``tag``."""
    return [ln for ln in out.splitlines() if ln.startswith(tag)]
