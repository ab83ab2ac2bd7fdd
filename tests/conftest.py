"""Test configuration.

CI has no GPU: the Triton kernels run under Triton's CPU interpreter, which must be
switched on before triton is imported anywhere. Set ``SHARPV_TEST_COMPILED=1`` on a GPU
machine to run the same tests with compiled kernels on CUDA tensors instead.
"""

from __future__ import annotations

import os

COMPILED = os.environ.get("SHARPV_TEST_COMPILED", "0") == "1"
if not COMPILED:
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

#: Device the kernel tests put their tensors on.
DEVICE = "cuda" if COMPILED else "cpu"


@pytest.fixture
def device() -> str:
    return DEVICE


@pytest.fixture(autouse=True)
def _nan_poison_empty(monkeypatch):
    """Fill every floating ``torch.empty``/``empty_like`` result with NaN (integers with -1).

    An output element a kernel forgets to write then fails the comparison instead of
    passing by luck with whatever the allocator returned.
    """
    real_empty, real_empty_like = torch.empty, torch.empty_like

    from torch._subclasses.fake_tensor import is_fake

    def poison(t: torch.Tensor) -> torch.Tensor:
        if not is_fake(t) and t.device.type != "meta" and t.numel():
            if t.is_floating_point():
                t.fill_(float("nan"))
            elif t.dtype != torch.bool:
                t.fill_(-1)
        return t

    def empty(*args, **kwargs):
        return poison(real_empty(*args, **kwargs))

    def empty_like(*args, **kwargs):
        return poison(real_empty_like(*args, **kwargs))

    monkeypatch.setattr(torch, "empty", empty)
    monkeypatch.setattr(torch, "empty_like", empty_like)
    yield


def pytest_report_header(config):
    mode = "compiled on CUDA" if COMPILED else "TRITON_INTERPRET=1 on CPU"
    return f"sharpv kernels: {mode}; torch {torch.__version__}"
