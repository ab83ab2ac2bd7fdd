"""Build and load the package's native CPU kernels: plain C sources compiled on first use.

A kernel is one C file shipped inside the package. :func:`load_library` compiles it once
with the system C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``) into a shared library
cached under ``$SHARPV_CACHE_DIR`` (default ``~/.cache/sharpv``, or the temporary directory
when that is not writable), keyed by the source, the compiler, the flags and the CPU, and
loads it with :mod:`ctypes` (which releases the GIL during a call). The C code includes no
Python or torch header, so one build serves every Python and torch version. A kernel may
use OpenMP: built with ``-fopenmp`` and loaded after torch, it binds to the OpenMP runtime
torch already loaded (the same ``libgomp.so.1``), so its threads are torch's intra-op
threads. Building takes about a second; a missing or failing compiler raises
:class:`NativeUnavailable` with the reason, and callers fall back to PyTorch.

Examples:
    >>> lib = load_library("sharpv_kernels.visual", "native_scores.c")  # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.resources
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["CACHE_ENV", "CFLAGS", "NativeUnavailable", "cache_dir", "load_library"]

#: Environment variable naming the folder of built native kernels.
CACHE_ENV = "SHARPV_CACHE_DIR"
#: Compiler flags: optimised for this CPU, and no floating-point contraction (the kernels'
#: exact-zero guarantees depend on it); on x86-64 also full-width AVX-512 where the CPU has
#: it (compilers default to 256-bit vectors there).
CFLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fPIC", "-shared", "-std=c11") + (
    ("-mprefer-vector-width=512",) if platform.machine().lower() in ("x86_64", "amd64") else ()
)
_BUILD_TIMEOUT_S = 120


class NativeUnavailable(RuntimeError):
    """The native kernel cannot be built or loaded here (no C compiler, a build error)."""


def cache_dir() -> Path:
    """Folder of the built libraries: ``$SHARPV_CACHE_DIR``, ``~/.cache/sharpv`` or a
    temporary folder, whichever is writable first."""
    env = os.environ.get(CACHE_ENV)
    candidates = [Path(env)] if env else []
    candidates += [Path.home() / ".cache" / "sharpv", Path(tempfile.gettempdir()) / "sharpv"]
    for path in candidates:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            return path
    raise NativeUnavailable(f"no writable folder for native kernels (set {CACHE_ENV})")


def _compiler() -> str:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        path = shutil.which(name) if name else None
        if path:
            return path
    raise NativeUnavailable("no C compiler found (set CC, or install gcc or clang)")


def _cpu_signature() -> str:
    """What ``-march=native`` depends on: the machine and, on Linux, the CPU's flags."""
    sig = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            sig += next((line for line in fh if line.startswith(("flags", "Features"))), "")
    except OSError:
        sig += platform.processor()
    return sig


def load_library(
    package: str, source: str, variants: Sequence[Sequence[str]] = ((),)
) -> ctypes.CDLL:
    """The shared library built from the C file ``source`` of ``package``: built on the
    first call on this machine, loaded from the cache afterwards (callers keep the handle).

    Args:
        package, source: where the C file is (``importlib.resources``).
        variants: extra compiler flags to try, in order (e.g. ``("-fopenmp",)`` then none);
            the first that builds and loads is used.

    Raises:
        NativeUnavailable: no C compiler, no writable cache folder, or every variant failed
            (the message holds the compiler's output).
    """
    code = importlib.resources.files(package).joinpath(source).read_bytes()
    cc = _compiler()
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError) as e:
        raise NativeUnavailable(f"C compiler {cc} does not run: {e}") from e
    folder = cache_dir()
    errors = []
    for extra in variants:
        flags = [*CFLAGS, *extra]
        parts = [code, cc, version, " ".join(flags), _cpu_signature()]
        key = hashlib.sha256(repr(parts).encode()).hexdigest()[:16]
        lib_path = folder / f"{Path(source).stem}-{key}.so"
        try:
            if not lib_path.exists():
                _build(cc, flags, source, code, folder, lib_path)
            return ctypes.CDLL(str(lib_path))
        except (NativeUnavailable, OSError) as e:
            errors.append(f"[{' '.join(flags)}] {e}")
    raise NativeUnavailable(f"building {source} with {cc} failed:\n" + "\n".join(errors))


def _build(cc: str, flags: list[str], source: str, code: bytes, folder: Path, out: Path) -> None:
    """Compile ``code`` into ``out``, atomically (concurrent builders never see a partial
    file)."""
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
    os.close(fd)
    try:
        with tempfile.TemporaryDirectory() as src_dir:
            src = Path(src_dir) / source
            src.write_bytes(code)
            res = subprocess.run([cc, *flags, str(src), "-o", tmp, "-lm"], capture_output=True,
                                 text=True, timeout=_BUILD_TIMEOUT_S)  # fmt: skip
        if res.returncode != 0:
            raise NativeUnavailable(res.stderr[-2000:] or f"exit code {res.returncode}")
        os.replace(tmp, out)
    except (OSError, subprocess.SubprocessError) as e:
        raise NativeUnavailable(str(e)) from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
