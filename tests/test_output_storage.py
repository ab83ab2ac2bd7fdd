"""The Triton path's outputs hold exactly the kept rows (issue 19, item 7): in adaptive,
manual and multi-video budget mode the output is allocated after the one read-back of the
kept count, so the storage a caller keeps alive is ``N_keep`` rows, not ``total_frames * f``.
Data errors on the CPU are the ``ValueError`` naming ``features`` in every mode."""

from __future__ import annotations

import pytest
import torch

import sharpv_kernels as sk
from tests.backends import use_backend

CASES = [
    ("adaptive", {}, [0, 4]),
    ("manual", {"threshold": 2.5}, [0, 1, 4]),
    ("ratio", {"keep_ratio": 0.3}, [0, 1, 4]),
    ("budget", {"budget": 0.3}, [0, 1, 4]),
]


@pytest.mark.parametrize("mode, kw, cu", CASES)
@pytest.mark.parametrize("cu_on_host", [True, False])
def test_storage_is_the_kept_rows(mode, kw, cu, cu_on_host):
    x = torch.randn(4, 16, 24, generator=torch.Generator().manual_seed(3))
    cu_arg = cu if cu_on_host else torch.tensor(cu, dtype=torch.int32, device=x.device)
    with use_backend("triton"):
        res = sk.visual_prune(x, cu_arg, mode=mode, **kw)
    with use_backend("torch"):
        want = sk.visual_prune(x, cu, mode=mode, **kw)
    n_keep = int(res.counts.sum())
    assert 0 < n_keep < 4 * 16 and res.tokens.shape == (n_keep, 24)
    assert torch.equal(res.indices, want.indices)
    assert res.tokens.untyped_storage().nbytes() == n_keep * 24 * x.element_size()
    assert res.indices.untyped_storage().nbytes() == n_keep * 8


@pytest.mark.parametrize("mode, kw, cu", CASES)
def test_nonfinite_features_raise_on_cpu(mode, kw, cu):
    x = torch.randn(4, 16, 24)
    x[2, 3, 5] = float("nan")
    with use_backend("triton"), pytest.raises(ValueError, match="features"):
        sk.visual_prune(x, cu, mode=mode, **kw)
