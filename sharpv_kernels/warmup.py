"""Compile, before serving, every Triton kernel variant a model family needs.

Triton compiles a kernel the first time it meets a new specialisation (constexprs, plus the
``== 1``/``% 16`` properties of integers outside ``do_not_specialize``); each compile costs
a user seconds. The launchers keep those keys few: frame and video counts reach them only
through the launch plan's power-of-two cuts (``tests/test_compile_keys.py``: at most 8
variants per kernel for one model, dtype and GPU over 1-64 frames and 1-4 videos; at most 9
of the similarity kernel over every ``S``). :func:`warmup` finds, on the host, one input per
distinct launch plan of the requested range and runs the ops on it once, so every variant
is compiled (and stored in Triton's on-disk cache) before the first request.

Examples:
    >>> warmup([(196, 3584)], [torch.bfloat16], device="cuda")  # doctest: +SKIP
    {'visual_prune': 10, 'layer_similarity': 0}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import torch

from ._gpu import device_limits
from ._utils import is_interpreting, select_backend
from .ops.layer_similarity import launch as similarity_launch
from .ops.visual_prune import launch as visual_launch

__all__ = ["warmup", "visual_warmup_inputs", "similarity_warmup_lengths"]

#: options of each mode for the warm-up calls (the values do not reach the compile keys)
_MODE_KW = {"adaptive": {}, "manual": {}, "ratio": {"keep_ratio": 0.5}, "budget": {"budget": 0.5}}


def visual_warmup_inputs(
    f: int, d: int, element_size: int, sms: int, *, max_frames: int = 64, max_videos: int = 4
) -> list[tuple[int, int]]:
    """``(frames, videos)`` pairs, one per distinct launch configuration of
    ``visual_prune`` for tokens of ``f x d`` over 1..``max_frames`` frames and
    1..``max_videos`` videos on a GPU of ``sms`` SMs (the smallest of each).

    Examples:
        >>> visual_warmup_inputs(196, 3584, 2, 132)  # LLaVA-OV-7B, bf16, H100
        [(1, 1), (5, 1), (10, 1), (19, 1), (33, 1)]
    """
    seen: dict[tuple, tuple[int, int]] = {}
    for n in range(1, max_frames + 1):
        plan = visual_launch.plan_launch((n, f, d), element_size, sms)
        for videos in range(1, min(n, max_videos) + 1):
            # frames per pass-2 program is a runtime integer: not part of the compile key
            key = (dataclasses.replace(plan, scores_frames=1),
                   visual_launch._video_block(plan, videos))  # fmt: skip
            seen.setdefault(key, (n, videos))
    return list(seen.values())


def similarity_warmup_lengths(
    d: int, element_size: int, sms: int, shared_per_sm: int, *, max_seq: int = 32768
) -> list[int]:
    """Sequence lengths, one per distinct ``layer_similarity`` configuration for hidden size
    ``d`` and one sample over ``S`` in 1..``max_seq`` (the shortest of each).

    Examples:
        >>> similarity_warmup_lengths(3584, 2, 132, 228 * 1024)  # Qwen2-7B, bf16, H100
        [1, 129, 792, 1583, 3165, 6333, 13725]
    """
    seen: dict[tuple, int] = {}
    for seq in range(1, max_seq + 1):
        plan = similarity_launch.plan_similarity((1, seq, d), element_size, sms, shared_per_sm)
        _, n_tiles = similarity_launch.similarity_grid(plan, 1, seq)
        seen.setdefault((plan, n_tiles <= 128), seq)
    return list(seen.values())


def warmup(
    shapes: Iterable[tuple[int, int]],
    dtypes: Iterable[torch.dtype] = (torch.bfloat16,),
    *,
    device: torch.device | str = "cuda",
    max_frames: int = 64,
    max_videos: int = 4,
    modes: Sequence[str] = ("adaptive", "budget"),
    metrics: Sequence[str] = ("dissim",),
    hidden_sizes: Iterable[int] = (),
    max_seq: int = 32768,
) -> dict[str, int]:
    """Compile the Triton kernels a model family needs, before the first request.

    Runs ``visual_prune`` once per distinct launch configuration (:func:`visual_warmup_inputs`)
    of each ``(f, d)`` in ``shapes``, dtype, mode and metric, and ``layer_similarity`` once per
    distinct configuration (:func:`similarity_warmup_lengths`) of each hidden size, on zeros.
    ``kv_compact_`` has one variant per head dimension and dtype, compiled by its first call.
    A no-op (returns zeros) when the ops would not run the Triton kernels on ``device``.

    Args:
        shapes: ``(f, d)`` of the visual tokens entering the LLM, e.g. ``[(196, 3584)]``
            for LLaVA-OV-7B at 384 px.
        dtypes: dtypes of the features (and hidden states).
        device: the GPU to compile for.
        max_frames, max_videos: the frame and video counts per call to cover.
        modes, metrics: the ``visual_prune`` modes and metrics the server uses.
        hidden_sizes: the LLM hidden sizes for ``layer_similarity`` (Memory SharpV).
        max_seq: the longest sequence ``layer_similarity`` will see.
    Returns:
        calls made per op.
    """
    from .ops.layer_similarity.api import layer_similarity
    from .ops.visual_prune.api import visual_prune

    device = torch.device(device)
    calls = {"visual_prune": 0, "layer_similarity": 0}
    if select_backend(device) != "triton":
        return calls
    limits = device_limits(device)
    dtypes, hidden_sizes = list(dtypes), list(hidden_sizes)
    for f, d in shapes:
        for dtype in dtypes:
            el = torch.empty((), dtype=dtype).element_size()
            for n, videos in visual_warmup_inputs(f, d, el, limits.sms, max_frames=max_frames,
                                                  max_videos=max_videos):  # fmt: skip
                x = torch.zeros((n, f, d), dtype=dtype, device=device)
                cu = [0] + [n * (i + 1) // videos for i in range(videos)]
                for mode in modes:
                    for metric in metrics:
                        visual_prune(x, cu, mode=mode, metric=metric, **_MODE_KW[mode])
                        calls["visual_prune"] += 1
    for d in hidden_sizes:
        for dtype in dtypes:
            el = torch.empty((), dtype=dtype).element_size()
            lengths = similarity_warmup_lengths(d, el, limits.sms, limits.shared_per_sm,
                                                max_seq=max_seq)  # fmt: skip
            for seq in lengths:
                h = torch.zeros((1, seq, d), dtype=dtype, device=device)
                span = torch.tensor([0], device=device)
                length = torch.tensor([seq], device=device)
                out = torch.zeros((1, 1), dtype=torch.float32, device=device)
                layer_similarity(h, h, span, length, out, 0)
                calls["layer_similarity"] += 1
    if device.type == "cuda" and not is_interpreting():
        torch.cuda.synchronize(device)
    return calls
