"""Bounded compiles: over a model family's sweep of frame counts, videos and modes, the
launchers give few distinct kernel specialisations (constexprs, plus Triton's ``== 1`` and
``% 16`` specialisation of every integer not in ``do_not_specialize``).

Bound (documented in ``docs/ops.md``): at most :data:`BOUND` variants per kernel for one
model (d, f), dtype and GPU, over 1..64 frames, 1..4 videos and every mode."""

from __future__ import annotations

import pytest
import torch

import sharpv_kernels.ops.visual_prune.kernels as VK
from sharpv_kernels.ops.visual_prune.launch import plan_launch, visual_prune_triton
from tests.test_gpu_plans import MODEL_SHAPES

#: variants per kernel over both modes (2-4 per mode today): the frame and video counts only
#: reach the constexprs through power-of-two buckets (the plan's cuts, block_n, BLOCK_B)
BOUND = 8

NAMES = ["frame_norms_kernel", "frame_scores_kernel", "frame_select_kernel",
         "video_counts_kernel", "gather_kernel"]  # fmt: skip


class _Key:
    def __init__(self, kernel, keys):
        self.kernel, self.keys = kernel, keys

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            names = self.kernel.arg_names
            dns = set(self.kernel.kwargs.get("do_not_specialize", ()))  # interpreted kernel
            spec = []
            for name, a in zip(names, args, strict=False):
                if isinstance(a, int) and not isinstance(a, bool) and name not in dns:
                    spec.append((name, a == 1, a % 16 == 0))
            const = tuple(sorted((k, v) for k, v in kwargs.items()))
            self.keys.setdefault(self.kernel.fn.__name__, set()).add((tuple(spec), const))

        return launch


@pytest.mark.parametrize("model", ["llava-ov-7b", "qwen2.5-vl-7b-224"])
def test_specialisations_over_a_model_sweep(model, monkeypatch):
    d, f = MODEL_SHAPES[model]
    keys: dict[str, set] = {}
    for name in NAMES:
        monkeypatch.setattr(VK, name, _Key(getattr(VK, name), keys))
    for n in range(1, 65):
        x = torch.empty((n, f, d), dtype=torch.bfloat16, device="meta")
        plan = plan_launch((n, f, d), 2, 132)
        for videos in range(1, min(n, 4) + 1):
            cu = torch.empty(videos + 1, dtype=torch.int32, device="meta")
            for mode, kw in (("adaptive", {}), ("budget", {"budget": 0.3})):
                with pytest.raises(NotImplementedError):  # the header read, on meta
                    visual_prune_triton(x, cu, mode=mode, plan=plan, **kw)
    counts = {k: len(v) for k, v in keys.items()}
    assert set(counts) == set(NAMES)
    assert max(counts.values()) <= BOUND, counts


#: variants of ``_sim_partial_kernel`` for one hidden size, dtype and GPU over every ``S``:
#: three tile heights times three pipeline depths (``memory.launch.SIM_STAGES``)
SIM_BOUND = 9


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("sms", [108, 132])
def test_layer_similarity_specialisations_over_200_sizes(dtype, sms, monkeypatch):
    """200 sequence lengths from 16 to 32K tokens (quadratically spaced), Qwen2-7B's hidden
    size, through the planner for that GPU: at most :data:`SIM_BOUND` variants of the
    partial kernel, two of the finishing one (``S`` and the tile count are not specialised)."""
    import sharpv_kernels.ops.layer_similarity.kernels as MK
    from sharpv_kernels._gpu import SIM_GPUS
    from sharpv_kernels.ops.layer_similarity.launch import layer_similarity_triton, plan_similarity

    keys: dict[str, set] = {}
    for name in ("_sim_partial_kernel", "_sim_finish_kernel"):
        monkeypatch.setattr(MK, name, _Key(getattr(MK, name), keys))
    lim = SIM_GPUS[sms]
    for i in range(200):
        seq = 16 + i * i * (32768 - 16) // (199 * 199)
        h = torch.empty((1, seq, 3584), dtype=dtype, device="meta")
        span = torch.empty(1, dtype=torch.int64, device="meta")
        out = torch.empty((2, 1), dtype=torch.float32, device="meta")
        plan = plan_similarity(tuple(h.shape), h.element_size(), sms, lim.shared_per_sm)
        layer_similarity_triton(h, h, span, span, out, 1, plan=plan)
    counts = {k: len(v) for k, v in keys.items()}
    assert counts["_sim_partial_kernel"] <= SIM_BOUND and counts["_sim_finish_kernel"] <= 2, counts
