"""Fixtures of the vLLM engine lane: offline, CPU, tiny checkpoints written per session.

The environment is fixed before vLLM is imported: no hub access, a 1 GiB KV cache, and the
engine core in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so that a start-up error
reaches the test as an exception and ``LLM.apply_model`` runs here.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

from sharpv.engines.vllm import checkpoints  # noqa: E402

#: retention of every test (the SPEC's budget b)
BUDGET = 0.3
LLAVA_ARCH = "SharpVLlavaOnevisionForConditionalGeneration"
QWEN_ARCH = "SharpVQwen2_5_VLForConditionalGeneration"


def engine_kwargs(arch: str | None, sharpv: dict | None = None, **extra) -> dict:
    """``LLM(...)`` keyword arguments of the tests (float32, eager, small context)."""
    overrides: dict = {}
    if arch is not None:
        overrides["architectures"] = [arch]
    if sharpv is not None:
        overrides["sharpv"] = sharpv
    return dict(
        dtype="float32",
        enforce_eager=True,
        max_model_len=1024,
        limit_mm_per_prompt={"video": 2, "image": 0},
        seed=0,
        hf_overrides=overrides,
        **extra,
    )


def release(llm) -> None:
    """Shut an in-process engine down so that the next one can start."""
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

    engine = getattr(llm, "llm_engine", None)
    core = getattr(engine, "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()
    del llm
    gc.collect()
    cleanup_dist_env_and_memory()


@pytest.fixture(scope="session")
def llava_dir(tmp_path_factory) -> Path:
    return checkpoints.write_llava_onevision(tmp_path_factory.mktemp("llava_onevision"))


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory) -> Path:
    return checkpoints.write_qwen2_5_vl(tmp_path_factory.mktemp("qwen2_5_vl"))


def _llm(path: Path, arch: str) -> Iterator:
    from vllm import LLM

    llm = LLM(model=str(path), **engine_kwargs(arch, {"budget": BUDGET}))
    yield llm
    release(llm)


@pytest.fixture(scope="module")
def llava_llm(llava_dir) -> Iterator:
    yield from _llm(llava_dir, LLAVA_ARCH)


@pytest.fixture(scope="module")
def qwen_llm(qwen_dir) -> Iterator:
    yield from _llm(qwen_dir, QWEN_ARCH)
