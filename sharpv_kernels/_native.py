"""Build, cache and load the package's native CPU kernels: plain C sources compiled on first use.

A kernel is one C file shipped inside the package. :func:`load_library` compiles it once
with the system C compiler into a shared library in a private cache folder
(:func:`cache_dir`) and loads it with :mod:`ctypes` (which releases the GIL during a call).
The C code includes no Python or torch header, so one build serves every Python and torch
version. A kernel may use OpenMP: built with ``-fopenmp`` and loaded after torch, it binds
to the OpenMP runtime torch already loaded (the same ``libgomp.so.1``).

Loading code into the process is a security boundary, so the cache follows these rules:

* the folder is owned by this user and writable by nobody else (created with mode 0700
  whatever the umask); a folder that fails this is refused, never written to or loaded from;
* a library is built in a private folder inside the cache, checked (not empty, an object
  file), synced and renamed atomically to ``<stem>-<key>-<sha256>.so``: ``key`` hashes the
  source, the compiler command and its version, the flags and the CPU; ``sha256`` is the
  hash of the file's own bytes;
* before it is loaded (by absolute path), a cached library must be a regular file owned by
  this user, writable by nobody else, and hash to the name it carries; a file that fails
  this (damaged, truncated by an interrupted copy, changed) is removed, with a warning, and
  rebuilt, so a truncated file never reaches ``dlopen`` (where it would raise SIGBUS);
* every symbol the caller names is checked once after loading.

Anything that makes the kernel unusable raises :class:`NativeUnavailable` with a reason
that names the file or the folder; callers fall back to PyTorch.

Examples:
    >>> lib = load_library("sharpv_kernels.ops.visual_prune", "native_scores.c")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import importlib.resources
import os
import platform
import shlex
import shutil
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = [
    "CACHE_ENV",
    "CFLAGS",
    "NativeKernelWarning",
    "NativeUnavailable",
    "cache_dir",
    "compiler_command",
    "load_library",
    "warn_once",
]

#: Environment variable naming the folder of built native kernels.
CACHE_ENV = "SHARPV_CACHE_DIR"
#: Compiler flags: optimised for this CPU, and no floating-point contraction (the kernels'
#: exact-zero guarantees depend on it); on x86-64 also full-width AVX-512 where the CPU has
#: it (compilers default to 256-bit vectors there).
CFLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fPIC", "-shared", "-std=c11") + (
    ("-mprefer-vector-width=512",) if platform.machine().lower() in ("x86_64", "amd64") else ()
)
_BUILD_TIMEOUT_S = 120
#: first bytes of a shared object: ELF, Mach-O (32/64-bit, both byte orders, universal)
_OBJECT_MAGICS = (b"\x7fELF", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe",
                  b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe")  # fmt: skip


class NativeUnavailable(RuntimeError):
    """The native kernel cannot be built or loaded here; the message says why."""


class NativeKernelWarning(RuntimeWarning):
    """A native kernel fell back to something slower (PyTorch, a build without OpenMP) or
    found a damaged cached file; issued once per message and process."""


_warned: set[str] = set()


def warn_once(message: str) -> None:
    """Issue ``message`` as a :class:`NativeKernelWarning`, once per process."""
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, NativeKernelWarning, stacklevel=3)


# --------------------------------------------------------------------------- the folder


def _check_private(st: os.stat_result, path: Path | str, kind: str) -> None:
    """Raise :class:`NativeUnavailable` unless ``st`` is owned by this user and writable by
    nobody else."""
    uid = os.geteuid()
    if st.st_uid != uid:
        raise NativeUnavailable(
            f"{kind} {path} is owned by uid {st.st_uid}, not by this user (uid {uid})"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise NativeUnavailable(
            f"{kind} {path} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})"
        )


def _make_private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents with mode 0700 (chmod after mkdir, so the
    umask does not matter)."""
    missing = []
    p = path
    while not os.path.lexists(p):
        missing.append(p)
        p = p.parent
    for p in reversed(missing):
        try:
            os.mkdir(p, 0o700)
        except FileExistsError:
            continue  # made by a concurrent process: checked below like any folder
        os.chmod(p, 0o700)


def _trusted_folder(path: Path, origin: str) -> Path:
    """``path`` created if missing and checked: a real folder, owned by this user, writable
    by nobody else."""
    try:
        _make_private_dirs(path)
        st = os.lstat(path)
    except OSError as e:
        raise NativeUnavailable(f"cannot create the cache folder {path} ({origin}): {e}") from e
    if not stat.S_ISDIR(st.st_mode):
        raise NativeUnavailable(f"the cache folder {path} ({origin}) is not a folder")
    _check_private(st, path, f"the cache folder ({origin})")
    if not os.access(path, os.W_OK | os.X_OK):
        raise NativeUnavailable(f"the cache folder {path} ({origin}) is not writable")
    return path


def _home() -> Path | None:
    """This user's home folder, or None (``HOME`` unset and no passwd entry, or unusable)."""
    home = os.path.expanduser("~")
    usable = home not in ("", "~") and os.path.isabs(home) and os.path.isdir(home)
    return Path(home) if usable else None


def cache_dir() -> Path:
    """The folder of the built libraries, absolute, created (mode 0700) if missing.

    ``$SHARPV_CACHE_DIR`` when set (a relative path is taken from the current folder, then
    made absolute); else ``~/.cache/sharpv``; else, without a usable home folder, the
    per-user folder ``sharpv-<uid>`` in the temporary folder, which must then be this
    user's own and private (0700), never a folder shared with others.

    Raises:
        NativeUnavailable: the folder cannot be created, or is not owned by this user, or
            is writable by others (group or world): nothing is built into or loaded from it.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return _trusted_folder(Path(os.path.realpath(os.path.expanduser(env))), f"${CACHE_ENV}")
    home = _home()
    if home is not None:
        path = Path(os.path.realpath(home / ".cache" / "sharpv"))
        try:
            _make_private_dirs(path)
        except OSError:
            pass  # read-only home: use the private temporary folder below
        else:
            return _trusted_folder(path, "the default under the home folder")
    try:
        path = Path(tempfile.gettempdir()) / f"sharpv-{os.geteuid()}"
        _make_private_dirs(path)
        st = os.lstat(path)  # not followed: a link planted by someone else is refused
    except OSError as e:
        raise NativeUnavailable(f"no home folder, and no private temporary folder: {e}") from e
    if not stat.S_ISDIR(st.st_mode) or stat.S_IMODE(st.st_mode) & 0o077:
        raise NativeUnavailable(f"no home folder, and {path} is not a private folder (mode "
                                f"{stat.S_IMODE(st.st_mode):04o}); set {CACHE_ENV}")  # fmt: skip
    return _trusted_folder(path, "no home folder: the per-user temporary folder")


# --------------------------------------------------------------------------- the compiler


def compiler_command() -> list[str]:
    """The C compiler command: ``$CC`` split like a shell word list (a compiler and its
    flags, e.g. ``CC="ccache gcc -m64"``), its program made an absolute path; without
    ``CC``, the first of ``cc``, ``gcc``, ``clang`` on ``PATH``.

    Raises:
        NativeUnavailable: ``CC`` is malformed or names no program; no compiler found.
    """
    env = os.environ.get("CC", "")
    if env.strip():
        try:
            words = shlex.split(env)
        except ValueError as e:
            raise NativeUnavailable(f"CC={env!r} is not a valid command: {e}") from e
        path = shutil.which(words[0])
        if path is None:
            raise NativeUnavailable(f"CC={env!r}: the compiler {words[0]!r} was not found")
        return [os.path.abspath(path), *words[1:]]
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [os.path.abspath(path)]
    raise NativeUnavailable("no C compiler found (set CC, or install gcc or clang)")


def _compiler_identity(cc: list[str]) -> str:
    """What the compiler says of itself (``--version``): part of the cache key."""
    try:
        res = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise NativeUnavailable(f"the C compiler {shlex.join(cc)} does not run: {e}") from e
    return f"{res.returncode}\n{res.stdout}\n{res.stderr}"


def _cpu_signature() -> str:
    """What ``-march=native`` depends on: the machine and, on Linux, the CPU's flags."""
    sig = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            sig += next((line for line in fh if line.startswith(("flags", "Features"))), "")
    except OSError:
        sig += platform.processor()
    return sig


# --------------------------------------------------------------------------- the cache


def _read_checked(path: Path) -> bytes:
    """The bytes of a cached file, after checking that it is a regular file (not a link)
    owned by this user and writable by nobody else."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NativeUnavailable(f"the cached library {path} is not a regular file")
        _check_private(st, path, "the cached library")
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read()
    finally:
        os.close(fd)


def _cached(folder: Path, prefix: str) -> Path | None:
    """A verified library of this key in ``folder``, or None; damaged or untrusted files
    of this key are removed with a warning (the folder is this user's own)."""
    for name in sorted(os.listdir(folder)):
        if not (name.startswith(prefix) and name.endswith(".so")):
            continue
        path = folder / name
        digest = name[len(prefix) : -len(".so")]
        try:
            data = _read_checked(path)
            if hashlib.sha256(data).hexdigest() != digest:
                raise NativeUnavailable(
                    f"the cached library {path} does not hash to its name ({len(data)} bytes: "
                    "damaged, truncated or changed since it was built)"
                )
        except (OSError, NativeUnavailable) as e:
            warn_once(f"{e}; removing it and rebuilding")
            with contextlib.suppress(OSError):
                os.unlink(path)
            continue
        return path
    return None


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Exclusive lock on the cache folder while it is searched and built into, so that
    processes starting together build once (best effort: without ``flock``, each builds
    privately and all results are valid)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _remove_stale_builds(folder: Path) -> None:
    """Remove the private build folders of builds that were interrupted (killed): under the
    folder lock no other build is running."""
    for name in os.listdir(folder):
        if name.startswith(".build-"):
            shutil.rmtree(folder / name, ignore_errors=True)


def _build(cc: list[str], flags: list[str], source: str, code: bytes, folder: Path,
           prefix: str) -> Path:  # fmt: skip
    """Compile ``code`` in a private folder inside ``folder``, check the output, sync it and
    rename it atomically to ``<prefix><sha256>.so``; return that path. Nothing is left
    behind when any step fails."""
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=folder))
    try:
        src, out = work / source, work / "out.so"
        src.write_bytes(code)
        try:
            res = subprocess.run([*cc, *flags, str(src), "-o", str(out), "-lm"],
                                 capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S,
                                 cwd=work)  # fmt: skip
        except (OSError, subprocess.SubprocessError) as e:
            raise NativeUnavailable(f"{shlex.join(cc)} did not run: {e}") from e
        if res.returncode != 0:
            raise NativeUnavailable(
                f"{shlex.join(cc)} exited with code {res.returncode}: "
                f"{(res.stderr or res.stdout)[-1500:].strip()}"
            )
        try:
            fd = os.open(out, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise NativeUnavailable(f"{shlex.join(cc)} exited with code 0 but produced no "
                                    f"library ({e.strerror})") from e  # fmt: skip
        try:
            os.fchmod(fd, 0o700)
            with os.fdopen(os.dup(fd), "rb") as fh:
                data = fh.read()
            if not data.startswith(_OBJECT_MAGICS):
                raise NativeUnavailable(f"{shlex.join(cc)} exited with code 0 but produced no "
                                        f"shared library ({len(data)} bytes)")  # fmt: skip
            os.fsync(fd)
        finally:
            os.close(fd)
        final = folder / f"{prefix}{hashlib.sha256(data).hexdigest()}.so"
        os.replace(out, final)
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)  # the rename itself survives a crash
        finally:
            os.close(dfd)
        return final
    except OSError as e:
        raise NativeUnavailable(f"building {source} in {folder} failed: {e}") from e
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _load(path: Path, symbols: Sequence[str]) -> ctypes.CDLL:
    """Load the verified library ``path`` (absolute) and check its symbols."""
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise NativeUnavailable(f"loading {path} failed: {e}") from e
    missing = [s for s in symbols if not hasattr(lib, s)]
    if missing:
        raise NativeUnavailable(f"the library {path} lacks the symbols {', '.join(missing)}")
    return lib


def load_library(
    package: str,
    source: str,
    variants: Sequence[Sequence[str]] = ((),),
    symbols: Sequence[str] = (),
) -> ctypes.CDLL:
    """The shared library built from the C file ``source`` of ``package``: built on the
    first use on this machine, loaded from the cache afterwards (callers keep the handle).

    Args:
        package, source: where the C file is (``importlib.resources``).
        variants: extra compiler flags to try, in order (e.g. ``("-fopenmp",)`` then none);
            the first that builds and loads is used, with a :class:`NativeKernelWarning`
            giving the reason when it is not the first.
        symbols: functions the library must export; checked before it is returned.

    Raises:
        NativeUnavailable: no usable compiler, no trusted cache folder, or every variant
            failed; the message names the file or folder and the reason.
    """
    if os.name != "posix":
        raise NativeUnavailable("native kernels are built on POSIX systems only")
    code = importlib.resources.files(package).joinpath(source).read_bytes()
    cc = compiler_command()
    identity = _compiler_identity(cc)
    folder = cache_dir()
    errors: list[str] = []
    for extra in variants:
        flags = [*CFLAGS, *extra]
        parts = [code, cc, identity, flags, _cpu_signature()]
        key = hashlib.sha256(repr(parts).encode()).hexdigest()[:16]
        prefix = f"{Path(source).stem}-{key}-"
        try:
            with _folder_lock(folder):
                _remove_stale_builds(folder)
                path = _cached(folder, prefix) or _build(cc, flags, source, code, folder, prefix)
            lib = _load(path, symbols)
        except (NativeUnavailable, OSError) as e:
            errors.append(f"[{' '.join(extra) or 'no extra flags'}] {e}")
            continue
        if errors:
            warn_once(f"{source}: using the build with {' '.join(extra) or 'no extra flags'} "
                      f"(slower), because {'; '.join(errors)}")  # fmt: skip
        return lib
    raise NativeUnavailable(f"building {source} with {shlex.join(cc)} failed: " + "; ".join(errors))
