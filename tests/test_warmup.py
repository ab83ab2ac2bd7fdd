"""``sharpv_kernels.warmup``: its representative inputs give every compile key the full sweep
gives (so a warmed-up server never compiles at request time), and it runs."""

from __future__ import annotations

import contextlib

import pytest
import torch

import sharpv_kernels.ops.layer_similarity.kernels as MK
import sharpv_kernels.ops.visual_prune.kernels as VK
from sharpv_kernels._gpu import SIM_GPUS
from sharpv_kernels.ops.layer_similarity.launch import layer_similarity_triton, plan_similarity
from sharpv_kernels.ops.visual_prune.launch import plan_launch, visual_prune_triton
from sharpv_kernels.warmup import similarity_warmup_lengths, visual_warmup_inputs, warmup
from tests.backends import use_backend
from tests.test_compile_keys import NAMES, _Key
from tests.test_gpu_plans import MODEL_SHAPES


def _visual_keys(monkeypatch, d, f, pairs):
    keys: dict[str, set] = {}
    for name in NAMES:
        monkeypatch.setattr(VK, name, _Key(getattr(VK, name), keys))
    for n, videos in pairs:
        x = torch.empty((n, f, d), dtype=torch.bfloat16, device="meta")
        cu = torch.empty(videos + 1, dtype=torch.int32, device="meta")
        for mode, kw in (("adaptive", {}), ("budget", {"budget": 0.3})):
            with contextlib.suppress(NotImplementedError):  # the header read, on meta
                visual_prune_triton(x, cu, mode=mode, plan=plan_launch((n, f, d), 2, 132), **kw)
    monkeypatch.undo()
    return keys


@pytest.mark.parametrize("model", ["llava-ov-7b", "qwen2.5-vl-7b-224"])
def test_visual_inputs_cover_the_sweep(model, monkeypatch):
    d, f = MODEL_SHAPES[model]
    sweep = [(n, v) for n in range(1, 65) for v in range(1, min(n, 4) + 1)]
    chosen = visual_warmup_inputs(f, d, 2, 132)
    assert len(chosen) < len(sweep) // 4
    assert _visual_keys(monkeypatch, d, f, chosen) == _visual_keys(monkeypatch, d, f, sweep)


def test_similarity_lengths_cover_every_length(monkeypatch):
    lim = SIM_GPUS[132]

    def keys_of(lengths):
        keys: dict[str, set] = {}
        for name in ("_sim_partial_kernel", "_sim_finish_kernel"):
            monkeypatch.setattr(MK, name, _Key(getattr(MK, name), keys))
        for seq in lengths:
            h = torch.empty((1, seq, 3584), dtype=torch.bfloat16, device="meta")
            span = torch.empty(1, dtype=torch.int64, device="meta")
            out = torch.empty((1, 1), dtype=torch.float32, device="meta")
            plan = plan_similarity(tuple(h.shape), 2, 132, lim.shared_per_sm)
            layer_similarity_triton(h, h, span, span, out, 0, plan=plan)
        monkeypatch.undo()
        return keys

    chosen = similarity_warmup_lengths(3584, 2, 132, lim.shared_per_sm, max_seq=32768)
    assert len(chosen) <= 12
    assert keys_of(chosen) == keys_of(range(1, 32769, 7))


def test_warmup_runs_the_ops():
    with use_backend("triton"):
        calls = warmup([(4, 8)], [torch.float32], device="cpu", max_frames=3, max_videos=2,
                       hidden_sizes=[8], max_seq=20)  # fmt: skip
    assert calls["visual_prune"] == 2 * len(visual_warmup_inputs(4, 8, 4, 1, max_frames=3,
                                                                 max_videos=2))  # fmt: skip
    assert calls["layer_similarity"] >= 1
    with use_backend("torch"):
        assert warmup([(4, 8)], device="cpu") == {"visual_prune": 0, "layer_similarity": 0}
