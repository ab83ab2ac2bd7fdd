"""Tensor parallelism of 2 on vLLM's CPU backend: the plugin (and, for Qwen2.5-VL, its
model-runner patch) runs in each worker process and gives the single-process result."""

from __future__ import annotations

import os

import pytest
from conftest import BUDGET, QWEN_ARCH, engine_kwargs, release
from engine_checks import check_greedy_matches_hf
from reference import QWEN

pytestmark = pytest.mark.skipif(
    (os.cpu_count() or 1) < 2, reason="tensor parallelism of 2 needs two CPU cores"
)


def test_tp2_greedy_tokens_match_the_transformers_integration(qwen_dir, monkeypatch):
    from vllm import LLM

    # the CPU backend binds each rank's OpenMP threads; with one NUMA node it cannot choose
    # two disjoint sets itself, so give each rank one core
    monkeypatch.setenv(
        "VLLM_CPU_OMP_THREADS_BIND", os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "0|1")
    )
    llm = LLM(
        model=str(qwen_dir),
        tensor_parallel_size=2,
        distributed_executor_backend="mp",
        **engine_kwargs(QWEN_ARCH, {"budget": BUDGET}),
    )
    try:
        check_greedy_matches_hf(llm, qwen_dir, QWEN, n_frames=(8,))
    finally:
        release(llm)
