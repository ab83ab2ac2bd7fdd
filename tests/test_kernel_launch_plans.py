"""Launch plans: what ``plan_launch``/``plan_similarity``/``plan_compact`` promise at the
benchmark shapes, on H100 (132 SMs) and A100 (108 SMs), without compiling anything."""

from __future__ import annotations

import math

import pytest

from bench.visual_cases import SHAPES
from sharpv_kernels.memory.launch import plan_compact, plan_similarity
from sharpv_kernels.visual.launch import LaunchPlan, plan_launch


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


@pytest.mark.parametrize("hd", [64, 128])
def test_compact_plan_moves_whole_rows(hd):
    p = plan_compact((1, 4, 2048, hd), 2)
    assert p.block_d == hd and p.block_t * p.block_d <= 4096
