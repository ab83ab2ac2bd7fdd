"""The pre-0.2 import paths (``sharpv_kernels.visual``, ``sharpv_kernels.memory`` and their
modules) still work and give the very objects of the op folders (``docs/architecture.md``)."""

from __future__ import annotations

import importlib

import pytest

import sharpv_kernels
from sharpv_kernels.ops import kv_compact, layer_similarity, visual_prune

VISUAL = ["api", "ops", "checks", "launch", "kernels", "torch_path", "native", "naive", "result"]
MEMORY = ["api", "ops", "checks", "launch", "kernels", "torch_path", "naive"]


@pytest.mark.parametrize("role", VISUAL)
def test_visual_modules_are_the_visual_prune_modules(role):
    old = importlib.import_module(f"sharpv_kernels.visual.{role}")
    assert old is importlib.import_module(f"sharpv_kernels.ops.visual_prune.{role}")


def test_visual_package_names():
    import sharpv_kernels.visual as old
    from sharpv_kernels.visual import VisualPruneResult
    from sharpv_kernels.visual.checks import check_visual_args
    from sharpv_kernels.visual.launch import visual_prune_triton

    assert old is visual_prune
    assert old.visual_prune is sharpv_kernels.visual_prune
    assert old.visual_scores_reference is visual_prune.naive.visual_scores_reference
    assert VisualPruneResult is sharpv_kernels.VisualPruneResult
    assert check_visual_args is visual_prune.checks.check_visual_args
    assert visual_prune_triton is visual_prune.launch.visual_prune_triton


@pytest.mark.parametrize("role", MEMORY)
def test_memory_modules_hold_both_ops(role):
    old = importlib.import_module(f"sharpv_kernels.memory.{role}")
    first, second = getattr(layer_similarity, role), getattr(kv_compact, role)
    for name, value in [*vars(second).items(), *vars(first).items()]:  # the first one wins
        if not name.startswith("__"):
            assert getattr(old, name) is (vars(first).get(name, value)), (role, name)


def test_memory_package_names():
    import sharpv_kernels.memory as old
    from sharpv_kernels.memory.checks import INDEX_DTYPES, check_written_memory
    from sharpv_kernels.memory.launch import CompactPlan, SimilarityPlan, _device_table
    from sharpv_kernels.memory.torch_path import unit_rows_scaled

    assert old.kv_compact_ is sharpv_kernels.kv_compact_
    assert old.layer_similarity is sharpv_kernels.layer_similarity
    assert old.kv_compact_reference is kv_compact.naive.kv_compact_reference
    assert old.layer_similarity_triton is layer_similarity.launch.layer_similarity_triton
    assert check_written_memory is sharpv_kernels._utils.check_written_memory
    assert INDEX_DTYPES is sharpv_kernels._utils.INDEX_DTYPES
    assert (CompactPlan, _device_table) == (
        kv_compact.launch.CompactPlan,
        kv_compact.launch._device_table,
    )
    assert SimilarityPlan is layer_similarity.launch.SimilarityPlan
    assert unit_rows_scaled is layer_similarity.torch_path.unit_rows_scaled


def test_memory_modules_write_through(monkeypatch):
    """Patching an old module patches the op folder's module (what the kernels read)."""
    import sharpv_kernels.memory.kernels as old

    monkeypatch.setattr(old, "_kv_compact_kernel", "patched")
    assert kv_compact.kernels._kv_compact_kernel == "patched"
    monkeypatch.undo()
    assert kv_compact.kernels._kv_compact_kernel is not None
    assert kv_compact.kernels._kv_compact_kernel != "patched"


def test_old_package_path_finds_the_c_source():
    from importlib.resources import files

    import sharpv_kernels.visual  # noqa: F401

    assert files("sharpv_kernels.visual").joinpath("native_scores.c").is_file()
