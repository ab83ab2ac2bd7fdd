"""A damaged cached library never reaches ``dlopen``: no SIGBUS, no raw ``AttributeError``.

A library truncated in place (an interrupted copy, a full disk) would kill the process with
SIGBUS once loaded; its bytes no longer hash to its name, so it is removed (one warning) and
rebuilt. A library that lacks the kernel's symbols is unusable: the loader says so and uses
the next build variant, or PyTorch, instead of failing in the op.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sharpv_kernels._native import compiler_command

from .native_child import LOAD_AND_RUN, THEN_NATIVE, check_ok, child_env, lines, run_child


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A cache folder holding one library built by a child process."""
    cache = tmp_path_factory.mktemp("template") / "cache"
    out = check_ok(run_child(LOAD_AND_RUN, child_env(cache)))
    assert "OK" in out and "SAME" in out, out
    return cache


@pytest.mark.parametrize("keep", [0, 4096, 0.5])
def test_a_truncated_library_is_rebuilt(tmp_path, template, keep):
    cache = tmp_path / "cache"
    shutil.copytree(template, cache)
    (lib,) = cache.glob("*.so")
    size = lib.stat().st_size
    os.truncate(lib, int(size * keep) if isinstance(keep, float) else keep)
    res = run_child(LOAD_AND_RUN + THEN_NATIVE, child_env(cache))
    out = check_ok(res)  # a SIGBUS would be exit code -7
    assert "OK" in out and "SAME" in out and not lines(out, "NATIVE_ERROR")
    (warning,) = lines(out, "WARNING")
    assert str(lib) in warning and "does not hash to its name" in warning
    assert lib.stat().st_size == size  # rebuilt under the same name


def test_a_library_without_the_symbols_is_not_used(tmp_path, template):
    """A library of the right name and hash but without the kernel's functions: the
    OpenMP variant is reported unusable, the build without it runs instead."""
    cache = tmp_path / "cache"
    shutil.copytree(template, cache)
    (lib,) = cache.glob("*.so")
    src = tmp_path / "empty.c"
    src.write_text("int sharpv_something_else(void) { return 0; }\n")
    empty = tmp_path / "empty.so"
    subprocess.run([*compiler_command(), "-shared", "-fPIC", str(src), "-o", str(empty)],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    lib.unlink()
    prefix = lib.name[: lib.name.rindex("-") + 1]
    planted = cache / f"{prefix}{hashlib.sha256(empty.read_bytes()).hexdigest()}.so"
    shutil.copy(empty, planted)
    out = check_ok(run_child(LOAD_AND_RUN, child_env(cache)))
    assert "OK" in out and "SAME" in out
    (warning,) = lines(out, "WARNING")
    assert "lacks the symbols sharpv_visual_distances, sharpv_advise_hugepages" in warning
    assert str(planted) in warning and "slower" in warning
