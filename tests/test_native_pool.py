"""A pool of processes starting cold on one cache folder: one build, every answer right.

Processes that need the kernel at the same moment take a lock on the cache folder: the
first builds, the others wait and load its library (a build is published by an atomic
rename, so no process ever sees a partial file). Checked with ``fork`` workers (whose
parent never loaded the kernel) and ``spawn`` workers (fresh interpreters).
"""

from __future__ import annotations

import pytest

from .native_child import check_ok, child_env, run_child

POOL = """
import multiprocessing as mp
import os
import sys

import torch


def work(i):
    from sharpv_kernels import visual_prune

    x = torch.randn(6, 5, 24, generator=torch.Generator().manual_seed(i))
    return visual_prune(x, [0, 2, 6]).indices.tolist()


if __name__ == "__main__":
    os.environ["SHARPV_BACKEND"] = "native"  # the workers' only option: build or fail
    with mp.get_context(sys.argv[1]).Pool(3) as pool:
        got = pool.map(work, range(6), chunksize=1)
    os.environ["SHARPV_BACKEND"] = "torch"
    print("SAME" if got == [work(i) for i in range(6)] else f"DIFFERENT {got}")
"""


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_a_cold_pool_builds_once_and_agrees(tmp_path, start):
    script = tmp_path / "pool.py"
    script.write_text(POOL)
    cache = tmp_path / "cache"
    out = check_ok(run_child(script, child_env(cache), argv=(start,), timeout=300))
    assert "SAME" in out, out
    assert len(list(cache.glob("native_scores-*.so"))) == 1  # built once
    assert [p.name for p in cache.iterdir() if p.suffix != ".so"] == []
