"""pytest-benchmark suite of ``visual_prune`` (the cases of ``bench_visual.py``).

Run with ``pytest bench --benchmark-only`` (add ``--benchmark-save=NAME`` and
``--benchmark-compare`` to compare commits). bfloat16 on a GPU, float32 on CPU. Each case
records the bytes the op must move, so GB/s follows from the reported time.
"""

from __future__ import annotations

import pytest
import torch

from sharpv_kernels import visual_prune

from .bench_visual import bytes_floor, make_callable
from .common import sync
from .visual_cases import SHAPES, video_features

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = torch.bfloat16 if DEVICE == "cuda" else torch.float32


@pytest.mark.parametrize("provider", ["naive", "eager", "compiled", "sharpv"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_visual_prune(benchmark, shape, provider):
    if provider == "naive" and (DEVICE != "cpu" or shape == "long-video-7b"):
        pytest.skip("the per-frame reference is timed on CPU at the short shapes only")
    n, f, d = SHAPES[shape]
    x = video_features(n, f, d, DTYPE, DEVICE)
    cu = torch.tensor([0, n], dtype=torch.int32, device=DEVICE)
    n_keep = int(visual_prune(x, cu).tokens.shape[0])
    fn = make_callable(provider, x, cu, "adaptive", {})

    def step():
        fn()
        sync(DEVICE)

    step()  # compile / warm up outside the timed rounds
    benchmark.extra_info.update(
        {"bytes_floor": bytes_floor(x, n_keep), "n_keep": n_keep, "dtype": str(DTYPE)}
    )
    benchmark.pedantic(step, rounds=5 if provider == "naive" else 20, warmup_rounds=1)
