"""The backends every operator test runs on, selected the way users select them: with
``SHARPV_BACKEND`` (``torch``: the plain PyTorch path; ``triton``: the kernels, interpreted
on CPU tensors because ``conftest.py`` sets ``TRITON_INTERPRET=1``; ``native``: Visual
SharpV's native CPU kernel, skipped where it cannot be built; ``test_native.py`` fails
instead when a C compiler is present)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

BACKENDS = ["torch", "triton", "native"]
#: the memory ops have no native kernel (``native`` runs their PyTorch path)
MEMORY_BACKENDS = ["torch", "triton"]


def skip_unless_available(name: str) -> None:
    """Skip the calling test when ``name`` is the native backend and it cannot be built."""
    if name == "native":
        from sharpv_kernels.ops.visual_prune.native import native_unavailable_reason

        reason = native_unavailable_reason()
        if reason is not None:
            pytest.skip(f"native CPU kernel unavailable: {reason}")


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Set ``SHARPV_BACKEND=name`` for the duration of a block (for hypothesis tests, which
    cannot take function-scoped fixtures)."""
    skip_unless_available(name)
    old = os.environ.get("SHARPV_BACKEND")
    os.environ["SHARPV_BACKEND"] = name
    try:
        yield
    finally:
        if old is None:
            del os.environ["SHARPV_BACKEND"]
        else:
            os.environ["SHARPV_BACKEND"] = old


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch) -> str:
    """Runs the test once per backend, with ``SHARPV_BACKEND`` set accordingly."""
    skip_unless_available(request.param)
    monkeypatch.setenv("SHARPV_BACKEND", request.param)
    return request.param
