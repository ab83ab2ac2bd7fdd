"""The two backends every operator test runs on, selected the way users select them: with
``SHARPV_BACKEND`` (``torch``: the plain PyTorch path; ``triton``: the kernels, interpreted
on CPU tensors because ``conftest.py`` sets ``TRITON_INTERPRET=1``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

BACKENDS = ["torch", "triton"]


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Set ``SHARPV_BACKEND=name`` for the duration of a block (for hypothesis tests, which
    cannot take function-scoped fixtures)."""
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
    monkeypatch.setenv("SHARPV_BACKEND", request.param)
    return request.param
