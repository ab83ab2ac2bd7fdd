"""Fixtures of the lmms-eval lane: tiny checkpoints and a local video QA task, built once.

These tests need lmms-eval (``scripts/lane-lmms.sh`` builds a venv with it); elsewhere the
modules that import it are skipped.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from lmms_tiny_task import write_llava_onevision, write_qwen2_5_vl, write_task  # noqa: E402


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lmms")


@pytest.fixture(scope="session")
def llava_ov_ckpt(tiny_root) -> Path:
    return write_llava_onevision(tiny_root / "llava_ov")


@pytest.fixture(scope="session")
def qwen_ckpt(tiny_root) -> Path:
    return write_qwen2_5_vl(tiny_root / "qwen2_5_vl")


@pytest.fixture(scope="session")
def task_dir(tiny_root) -> Path:
    return write_task(tiny_root / "task")
