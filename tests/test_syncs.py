"""Host synchronisations and the device guard of the launchers, counted without a GPU.

The launchers run under ``FakeTensorMode`` on ``cuda:1`` tensors with their Triton kernels
replaced by recorders; a dispatch mode counts every operation that makes the host wait for
the device (a scalar read, a device-to-host copy, a blocking host-to-device copy), and a
stand-in for ``torch.cuda.device`` records the device current at each launch.
"""

from __future__ import annotations

import contextlib
import functools

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

import sharpv_kernels.ops.kv_compact.kernels as KK
import sharpv_kernels.ops.layer_similarity.kernels as SK
import sharpv_kernels.ops.visual_prune.kernels as VK
from sharpv_kernels._gpu import SIM_GPUS
from sharpv_kernels.ops.kv_compact.launch import CompactPlan, kv_compact_triton
from sharpv_kernels.ops.layer_similarity.launch import SimilarityPlan, layer_similarity_triton
from sharpv_kernels.ops.visual_prune.checks import prepare_cu_frames
from sharpv_kernels.ops.visual_prune.launch import (
    plan_launch,
    visual_prune_triton,
    visual_scores_triton,
)

DEV = torch.device("cuda", 1)


class SyncCounter(TorchDispatchMode):
    """Counts the operations that synchronise the host with a CUDA device."""

    def __init__(self):
        super().__init__()
        self.syncs: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func)
        if func is torch.ops.aten._local_scalar_dense.default:
            if args[0].device.type == "cuda":
                self.syncs.append("scalar read")
        elif func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default):
            src = args[1] if func is torch.ops.aten.copy_.default else args[0]
            dst = kwargs.get("device") if func is torch.ops.aten._to_copy.default else args[0]
            dst = dst.device if isinstance(dst, torch.Tensor) else dst
            src_dev = src.device.type
            dst_dev = torch.device(dst).type if dst is not None else src_dev
            if src_dev == "cuda" and dst_dev == "cpu":
                self.syncs.append(f"device-to-host {name}")
            elif src_dev == "cpu" and dst_dev == "cuda":
                if not (kwargs.get("non_blocking") or (len(args) > 2 and args[2])):
                    self.syncs.append(f"blocking host-to-device {name}")
                elif not src.is_pinned():
                    self.syncs.append(f"pageable host-to-device {name}")
        return func(*args, **kwargs)


class Kernel:
    """Stands in for a ``@triton.jit`` kernel: records each launch's grid and device."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.log.append((self.name, grid, _Device.current))

        return launch


class _Device:
    """Stands in for ``torch.cuda.device`` (no CUDA here): tracks the current device."""

    current = torch.device("cuda", 0)

    def __init__(self, device):
        self.device = torch.device(device)

    def __enter__(self):
        self.prev, _Device.current = _Device.current, self.device

    def __exit__(self, *exc):
        _Device.current = self.prev


@pytest.fixture
def launches(monkeypatch):
    log: list = []
    for mod, names in (
        (VK, ["frame_norms_kernel", "frame_scores_kernel", "frame_select_kernel",
              "video_counts_kernel", "gather_kernel"]),
        (SK, ["_sim_partial_kernel", "_sim_finish_kernel"]),
        (KK, ["_kv_compact_kernel"]),
    ):  # fmt: skip
        for name in names:
            monkeypatch.setattr(mod, name, Kernel(name, log))
    monkeypatch.setattr(torch.cuda, "device", _Device)
    monkeypatch.setattr(torch.Tensor, "pin_memory", _fake_pin)
    return log


def _fake_pin(self):
    """``pin_memory`` needs a CUDA build; mark the tensor pinned for the counter instead."""
    out = self.clone()
    out.is_pinned = lambda: True
    return out


@contextlib.contextmanager
def counting():
    with FakeTensorMode(allow_non_fake_inputs=True), SyncCounter() as counter:
        yield counter


def _on_device(log):
    assert log and all(dev == DEV for _, _, dev in log), log


def test_layer_similarity_no_sync_on_its_device(launches):
    with counting() as c:
        h = torch.empty(2, 300, 64, device=DEV)
        out = torch.empty(3, 2, device=DEV)
        s, n = torch.zeros(2, dtype=torch.int64, device=DEV), torch.ones(2, device=DEV).long()
        layer_similarity_triton(h, h, s, n, out, 1, plan=SimilarityPlan(4, 64, 4))
    assert c.syncs == []
    _on_device(launches)
    assert launches[0][1] == (75, 2)  # tiles on axis x


def test_kv_compact_no_sync_on_its_device(launches):
    with counting() as c:
        keys = [torch.empty(2, 4, 16, 8, device=DEV) for _ in range(3)]
        values = [torch.empty(2, 4, 16, 8, device=DEV) for _ in range(3)]
        lengths = torch.empty(3, 2, dtype=torch.int64, device=DEV)
        s = torch.empty(2, dtype=torch.int64, device=DEV)
        sim = torch.empty(3, 2, device=DEV)
        kv_compact_triton(keys, values, lengths, s, s, sim, 0.2, plan=CompactPlan(4, 8, 4))
    assert c.syncs == []
    _on_device(launches)


@pytest.mark.parametrize(
    "mode, videos, cu_host, syncs",
    [
        ("adaptive", 2, False, 1),
        ("manual", 2, False, 1),
        ("ratio", 2, False, 0),
        ("budget", 1, False, 0),
        ("budget", 2, True, 0),  # the host values of cu_frames size the output
        ("budget", 2, False, 1),  # cu_frames only on the device: the count is read back
    ],
)
def test_visual_prune_syncs(launches, mode, videos, cu_host, syncs, monkeypatch):
    """Sync-free where the kept count follows from host-side values (ratio, budget with one
    video or host ``cu_frames``; the error bits become device-side assertions), else exactly
    one read-back, before the gather kernel. (The host-side value check of ``cu_frames``
    reads a CPU tensor: not a sync, and not something a fake tensor can do, so it is left
    out here.)"""
    monkeypatch.setattr("sharpv_kernels.ops.visual_prune.checks.check_cu_values", lambda *a: None)
    monkeypatch.setattr("sharpv_kernels._gpu._cuda_limits", lambda index: SIM_GPUS[132])
    kw = {"keep_ratio": 0.5} if mode == "ratio" else {"budget": 0.5} if mode == "budget" else {}
    bounds = [0, 1, 4] if videos == 2 else [0, 4]
    with counting() as c:
        x = torch.empty(4, 16, 64, device=DEV)
        cu = prepare_cu_frames(torch.tensor(bounds), x, check_on_host=True)
        assert c.syncs == []  # the list's copy is pinned and non-blocking
        plan = plan_launch((4, 16, 64), 4, 132)
        call = functools.partial(visual_prune_triton, x, cu, mode=mode, plan=plan,
                                 cu_host=bounds if cu_host else None, **kw)  # fmt: skip
        if syncs:
            with pytest.raises(Exception, match="local_scalar_dense|data-dependent|DataDep"):
                call()  # a fake tensor has no value to read: the read-back raises
        else:
            tokens, indices, *_ = call()
            n_keep = 4 * 8 if mode == "ratio" else 32
            assert tokens.shape == (n_keep, 64) and indices.shape == (n_keep,)
    assert len(c.syncs) == syncs
    assert len(launches) == 5 - syncs  # a read-back comes before the gather kernel
    _on_device(launches)


def test_visual_scores_no_sync(launches, monkeypatch):
    monkeypatch.setattr("sharpv_kernels._gpu._cuda_limits", lambda index: SIM_GPUS[132])
    with counting() as c:
        x = torch.empty(4, 16, 64, device=DEV)
        cu = torch.empty(2, dtype=torch.int32, device=DEV)  # values checked on the device
        S, T, I, r = visual_scores_triton(x, cu, w=1.0, metric="dissim")
    assert c.syncs == [] and S.shape == (4, 16) and r.shape == (4,)
    assert len(launches) == 3
    _on_device(launches)


def test_graph_unsafe_tags():
    import sharpv_kernels  # noqa: F401  (registers the ops)

    tag = torch.Tag.cudagraph_unsafe
    assert tag in torch.ops.sharpv.visual_prune.default.tags
    assert tag in torch.ops.sharpv.visual_scores.default.tags
    assert tag not in torch.ops.sharpv.layer_similarity.default.tags
    assert tag not in torch.ops.sharpv.kv_compact_.default.tags
