"""``CC``: a shell word list (compiler and flags), validated; a failure is a clear reason.

A compiler that is missing, exits with an error, or exits with 0 but writes nothing (or
something that is not a shared library) makes the kernel unavailable with a reason that
names it; nothing is left in the cache. Under ``auto`` the op runs PyTorch with one warning,
under ``native`` it raises. A build that falls back to a slower variant (no OpenMP) warns.
"""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

import pytest

from sharpv_kernels._native import (
    NativeKernelWarning,
    NativeUnavailable,
    compiler_command,
    load_library,
)
from sharpv_kernels.ops.visual_prune.native import SYMBOLS

from .native_child import LOAD_AND_RUN, THEN_NATIVE, check_ok, child_env, lines, run_child

try:
    CC = compiler_command()
except NativeUnavailable:
    CC = None
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler on this machine")


def _script(path: Path, body: str) -> str:
    """An executable shell script at ``path``; returns its path."""
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _load(tmp_path: Path, monkeypatch, cc: str, variants=((),)):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SHARPV_CACHE_DIR", str(cache))
    monkeypatch.setenv("CC", cc)
    try:
        return load_library("sharpv_kernels.ops.visual_prune", "native_scores.c", variants, SYMBOLS)
    finally:
        if cache.exists():
            assert not [p for p in cache.iterdir() if p.suffix != ".so"]  # no build leftovers
            assert all(p.stat().st_size > 0 for p in cache.iterdir())


@pytest.mark.parametrize(
    ("cc", "reason"),
    [
        (
            "/nonexistent/bin/cc",
            "CC='/nonexistent/bin/cc': the compiler '/nonexistent/bin/cc' was not found",
        ),  # fmt: skip
        ('cc "-O2', "is not a valid command"),
        ("false", "exited with code 1"),
        ("true", "exited with code 0 but produced no library"),
        ("WRITES_TEXT", "exited with code 0 but produced no shared library"),
    ],
)
def test_a_broken_compiler_is_a_clear_reason(tmp_path, monkeypatch, cc, reason):
    if cc == "WRITES_TEXT":  # writes text where the library should be: `... -o OUT -lm`
        body = '[ $# -gt 2 ] || exit 0\neval out=\\${$(($# - 1))}\necho junk > "$out"\n'
        cc = _script(tmp_path / "cc.sh", body)
    with pytest.raises(NativeUnavailable, match=reason.replace("(", r"\(")):
        _load(tmp_path, monkeypatch, cc)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


@needs_cc
def test_cc_with_flags_is_split_like_a_shell(tmp_path, monkeypatch):
    wrapper = _script(tmp_path / "my cc", f'exec {shlex.join(CC)} "$@"\n')  # a space in the name
    lib = _load(tmp_path, monkeypatch, f"{shlex.quote(wrapper)} -DSHARPV_UNUSED='1 2' -O2")
    assert Path(lib._name).parent == tmp_path / "cache"
    assert hasattr(lib, "sharpv_visual_distances")


@needs_cc
def test_a_build_without_openmp_warns_once_why(tmp_path, monkeypatch):
    no_omp = _script(
        tmp_path / "cc-no-openmp",
        f"""case "$*" in
  *-fopenmp*) echo "this compiler has no OpenMP" >&2; exit 1;;
esac
exec {shlex.join(CC)} "$@"
""",
    )
    with pytest.warns(NativeKernelWarning) as record:
        _load(tmp_path, monkeypatch, no_omp, (("-fopenmp",), ()))
        _load(tmp_path, monkeypatch, no_omp, (("-fopenmp",), ()))
    (w,) = [w for w in record if issubclass(w.category, NativeKernelWarning)]
    assert "slower" in str(w.message) and "this compiler has no OpenMP" in str(w.message)


def test_a_missing_compiler_means_pytorch_under_auto_and_an_error_under_native(tmp_path):
    env = child_env(tmp_path / "cache", CC="/nonexistent/bin/cc")
    out = check_ok(run_child(LOAD_AND_RUN + THEN_NATIVE, env))
    (warning,) = lines(out, "WARNING")
    assert "/nonexistent/bin/cc" in warning and "PyTorch path runs instead" in warning
    assert "SAME" in out
    (err,) = lines(out, "NATIVE_ERROR")
    assert "SHARPV_BACKEND=native" in err and "/nonexistent/bin/cc" in err
    assert not os.path.exists(tmp_path / "cache") or not os.listdir(tmp_path / "cache")
