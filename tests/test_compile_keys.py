"""Bounded compiles: over a model family's sweep of frame counts, videos and modes, the
launchers give few distinct kernel specialisations (constexprs, plus Triton's ``== 1`` and
``% 16`` specialisation of every integer not in ``do_not_specialize``).

Bound (documented in ``docs/ops.md``): at most :data:`BOUND` variants per kernel for one
model (d, f), dtype and GPU, over 1..64 frames, 1..4 videos and every mode."""

from __future__ import annotations

import pytest
import torch

import sharpv_kernels.visual.kernels as VK
from sharpv_kernels.visual.launch import plan_launch, visual_prune_triton
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
