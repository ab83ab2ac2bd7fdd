"""Launch plans: what ``plan_launch``/``plan_similarity``/``plan_compact`` promise at the
benchmark shapes, on H100 (132 SMs) and A100 (108 SMs), without compiling anything."""

from __future__ import annotations

import math

import pytest

from bench.model import MEMORY_SHAPES, TEXT_AFTER, TEXT_BEFORE
from bench.visual_cases import SHAPES
from sharpv_kernels.ops.kv_compact.launch import plan_compact
from sharpv_kernels.ops.layer_similarity.launch import (
    SHARED_PER_SM,
    SimilarityPlan,
    plan_similarity,
    similarity_residency,
)
from sharpv_kernels.ops.visual_prune.launch import LaunchPlan, plan_launch


@pytest.mark.parametrize("sms", [132, 108])
@pytest.mark.parametrize("elt", [2, 4])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_visual_plan_fills_the_gpu(shape, elt, sms):
    n, f, d = shape
    p = plan_launch(shape, elt, sms)
    assert isinstance(p, LaunchPlan)
    n1 = math.ceil(d / p.norms_cols)
    assert n1 * n >= 2 * sms  # pass 1: at least two programs per SM
    assert math.ceil(f / p.scores_rows) * math.ceil(d / p.scores_cols) >= 2 * sms
    assert n * math.ceil(d / p.gather_cols_per_prog) >= 2 * sms
    assert 1 << (n1 - 1).bit_length() <= p.scores_cols  # pass 2 reads the slots in one tile
    assert p.norms_cols * elt >= 128 and p.gather_cols * elt >= 128  # whole 128-byte lines
    assert p.norms_rows * p.norms_cols <= 4096 and p.scores_rows * p.scores_cols <= 4096
    # pass 2: at most 32 elements of a frame per thread, at least four warps per SM
    assert p.scores_rows * p.scores_cols <= 32 * 32 * p.scores_warps
    chunks = math.ceil(n / p.scores_frames)
    tiles = math.ceil(f / p.scores_rows) * math.ceil(d / p.scores_cols)
    assert tiles * chunks * p.scores_warps >= 4 * sms
    assert chunks == 1 or p.scores_frames >= 8  # re-reads at most one frame in eight


def test_interpreter_plan_uses_the_fewest_programs():
    p = plan_launch((6, 7, 64), 4, 1)
    assert math.ceil(64 / p.norms_cols) == 1 and p.gather_cols_per_prog >= 64
    assert p.scores_frames >= 6  # pass 2: one program per tile walks every frame


@pytest.mark.parametrize("sms", [132, 108])
@pytest.mark.parametrize("d", [896, 3584])
def test_similarity_plan_gives_four_programs_per_sm(d, sms):
    span = 1882  # a budget-mode LLaVA-OV prompt: 32 x 196 x 0.3 visual tokens
    p = plan_similarity((1, span + 64, d), 2, sms)
    assert math.ceil(span / p.block_t) >= 4 * sms
    assert p.block_d * 2 >= 256


#: shared memory per SM of the model's GPUs (H100, A100), bytes
SHARED = {132: 228 * 1024, 108: 164 * 1024}


@pytest.mark.parametrize("told", [True, False], ids=["shared-given", "shared-default"])
@pytest.mark.parametrize("sms", [132, 108])
@pytest.mark.parametrize("elt", [2, 4])
@pytest.mark.parametrize("shape", list(MEMORY_SHAPES), ids=list(MEMORY_SHAPES))
def test_similarity_plan_gives_two_waves(shape, elt, sms, told):
    """At the benchmark shapes the grid holds >= 2 waves at the residency the planner states,
    on the GPU's own shared memory; planned for the default 228 KB it holds them on any SM
    with less (A100) as well."""
    m = MEMORY_SHAPES[shape]
    seq = TEXT_BEFORE + m["visual"] + TEXT_AFTER
    kw = {"shared_per_sm": SHARED[sms]} if told else {}
    p = plan_similarity((1, seq, m["hidden"]), elt, sms, **kw)
    ctas = math.ceil(seq / p.block_t)
    for shared in {SHARED[sms], kw.get("shared_per_sm", SHARED_PER_SM)}:
        resident = similarity_residency(p, elt, shared)
        assert resident >= 1 and ctas >= 2 * sms * resident
    assert p.block_t * p.block_d * elt == 4096  # 4 KB tiles: two 16-byte loads per thread
    assert p.warps == 4 and 3 <= p.stages <= 9


def test_similarity_residency_by_warps_and_shared_memory():
    """Hand-computed: 8 pipeline tiles of 2 x 2048 bf16 elements (64 KB) + the driver's 1 KB
    per CTA fit 3 times in 228 KB; 7 of them (56 KB) twice in 164 KB; without a pipeline
    64 / 4 warps; a pipeline larger than the SM's shared memory not at all."""
    assert similarity_residency(SimilarityPlan(2, 1024, 4, stages=9), 2) == 3
    assert similarity_residency(SimilarityPlan(4, 512, 4, stages=8), 2, 164 * 1024) == 2
    assert similarity_residency(SimilarityPlan(4, 512, 4, stages=1), 2) == 16
    assert similarity_residency(SimilarityPlan(4, 512, 16, stages=1), 2) == 4
    assert similarity_residency(SimilarityPlan(4, 512, 4, stages=9), 2, 64 * 1024) == 0


@pytest.mark.parametrize("sms", [132, 108])
def test_similarity_plan_keeps_three_stages_when_the_grid_is_large(sms):
    """Eight 1946-row prompts give two waves of 4-row tiles at 3 stages."""
    p = plan_similarity((8, 1946, 3584), 2, sms, SHARED[sms])
    assert p == SimilarityPlan(4, 512, 4, stages=3)
    assert 8 * math.ceil(1946 / 4) >= 2 * sms * similarity_residency(p, 2, SHARED[sms])


def test_similarity_plan_for_a_small_input_is_one_row_tiles():
    """300 rows cannot make two waves on 132 SMs: as many programs as rows, 3 stages."""
    assert plan_similarity((1, 300, 896), 2, 132) == SimilarityPlan(1, 1024, 4, stages=3)


def test_similarity_interpreter_plan_uses_few_wide_programs():
    p = plan_similarity((1, 1946, 3584), 2, 1)
    assert p.block_t == 16 and p.block_d * 2 == 1024


@pytest.mark.parametrize("hd", [64, 128])
def test_compact_plan_moves_whole_rows(hd):
    p = plan_compact((1, 4, 2048, hd), 2)
    assert p.block_d == hd and p.block_t * p.block_d <= 4096
