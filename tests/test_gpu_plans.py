"""Launch plans for real GPUs, checked without one: every plan the planners make for an
accepted input passes :func:`validate_plan` / CUDA's grid limits (a property test over the
whole accepted range), the model shapes at 108/132/148/170 SMs, and grids of huge inputs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharpv_kernels._gpu import (
    INTERPRETER_LIMITS,
    MAX_GRID_X,
    MAX_GRID_YZ,
    SIM_GPUS,
    device_limits,
    sim_limits,
)
from sharpv_kernels.ops.kv_compact.launch import plan_compact
from sharpv_kernels.ops.layer_similarity.launch import (
    plan_similarity,
    similarity_grid,
    similarity_residency,
)
from sharpv_kernels.ops.visual_prune.launch import MAX_TOKENS_PER_FRAME, plan_launch, validate_plan

#: (d, f) of the models the kernels serve: LLaVA-OneVision 0.5B/7B (27x27 patches pooled to
#: 14x14), LLaVA-Video 7B (13x13 after pooling), Qwen2.5-VL 3B/7B at 224/336/448 px (2x2
#: merged 14-px patches: 8x8, 12x12, 16x16)
MODEL_SHAPES = {
    "llava-ov-0.5b": (896, 196),
    "llava-ov-7b": (3584, 196),
    "llava-video-7b": (3584, 169),
    **{f"qwen2.5-vl-3b-{px}": (2048, f) for px, f in ((224, 64), (336, 144), (448, 256))},
    **{f"qwen2.5-vl-7b-{px}": (3584, f) for px, f in ((224, 64), (336, 144), (448, 256))},
}
SM_COUNTS = [108, 132, 148, 170]


@pytest.mark.parametrize("sms", SM_COUNTS)
@pytest.mark.parametrize("model", list(MODEL_SHAPES))
def test_model_shapes_plan_validly(model, sms):
    d, f = MODEL_SHAPES[model]
    for elt in (2, 4):
        for n in range(1, 65):
            plan = plan_launch((n, f, d), elt, sms)
            for n_videos in {1, min(n, 4), n}:
                validate_plan(plan, (n, f, d), elt, n_videos, SIM_GPUS[sms])


@settings(max_examples=400, deadline=None)
@given(
    n=st.integers(1, MAX_GRID_YZ),
    f=st.integers(1, MAX_TOKENS_PER_FRAME),
    d=st.integers(1, 1 << 16),
    elt=st.sampled_from([2, 4]),
    sms=st.one_of(st.sampled_from([1, *SIM_GPUS]), st.integers(1, 1024)),
    data=st.data(),
)
def test_visual_plans_are_valid_over_the_accepted_range(n, f, d, elt, sms, data):
    """Every accepted ``(total_frames, f, d)``, dtype and SM count: the plan validates."""
    n_videos = data.draw(st.integers(1, n))
    limits = sim_limits(sms) if sms > 1 else INTERPRETER_LIMITS
    validate_plan(plan_launch((n, f, d), elt, sms), (n, f, d), elt, n_videos, limits)


def test_validate_plan_rejects_what_cuda_cannot_launch():
    plan = plan_launch((4, 64, 3584), 2, 132)
    with pytest.raises(ValueError, match="grid"):
        validate_plan(plan, (70000, 64, 3584), 2)
    narrow = plan_launch((4, 64, 64), 2, 132)  # norms_cols 64: 56 slots for d = 3584
    with pytest.raises(ValueError, match="pass-1 slices"):
        validate_plan(narrow, (4, 64, 3584), 2)


@settings(max_examples=300, deadline=None)
@given(
    bsz=st.integers(1, MAX_GRID_YZ),
    seq=st.integers(1, 1 << 31),
    d=st.integers(1, 1 << 16),
    elt=st.sampled_from([2, 4]),
    sms=st.sampled_from([1, *SIM_GPUS]),
)
def test_similarity_grids_are_within_cuda_limits(bsz, seq, d, elt, sms):
    lim = sim_limits(sms) if sms > 1 else INTERPRETER_LIMITS
    plan = plan_similarity((bsz, seq, d), elt, lim.sms, lim.shared_per_sm)
    (gx, gy), n_tiles = similarity_grid(plan, bsz, seq)
    assert 1 <= gx <= MAX_GRID_X and 1 <= gy <= MAX_GRID_YZ and gx * plan.block_t >= seq
    assert sms == 1 or similarity_residency(plan, elt, lim.shared_per_sm) >= 1


@pytest.mark.parametrize("sms", SM_COUNTS)
def test_similarity_grid_past_the_old_axis_y_limit(sms):
    """S = 300,000 (a long video at full resolution): the old (bsz, tiles) grid put 75,000
    tiles on axis y (cap 65,535); the tiles are on axis x now. Planner only, no run."""
    lim = SIM_GPUS[sms]
    for seq in (262_141, 300_000, 4_000_000):
        plan = plan_similarity((2, seq, 3584), 2, sms, lim.shared_per_sm)
        (gx, gy), _ = similarity_grid(plan, 2, seq)
        assert gx == math.ceil(seq / plan.block_t) and gy == 2


def test_compact_grid_shapes():
    p = plan_compact((8, 28, 40_000, 128), 2)
    assert p.block_t * p.block_d <= 4096


def test_sim_sms_picks_the_gpu(monkeypatch):
    import torch

    cpu = torch.device("cpu")
    monkeypatch.delenv("SHARPV_SIM_SMS", raising=False)
    assert device_limits(cpu) == INTERPRETER_LIMITS
    monkeypatch.setenv("SHARPV_SIM_SMS", "108")
    assert device_limits(cpu).shared_per_sm == 164 * 1024
    monkeypatch.setenv("SHARPV_SIM_SMS", "77")
    assert device_limits(cpu).sms == 77 and device_limits(cpu).shared_per_sm == 100 * 1024
    monkeypatch.setenv("SHARPV_SIM_SMS", "many")
    with pytest.raises(ValueError, match="SHARPV_SIM_SMS"):
        device_limits(cpu)
