"""The pruning step of a batch of videos inside vLLM's worker, each with its own settings.

vLLM hands a model the videos of every request in a scheduling step in one call. Videos whose
frame shape and settings agree form one group, and each group is pruned by *one* call of its
method's pruning function over its packed frames (for ``sharpv``, ``visual_prune`` in budget
mode: the native CPU kernel on CPU, the Triton kernels on CUDA): the cost of the step is one
call per distinct (shape, settings) pair, not per video. Each video's kept count comes from
the method's count on the host (:meth:`VllmSharpVSettings.video_tokens`), so splitting the
kept rows back into videos needs no device-to-host copy. No vLLM import.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch

from .settings import OPTIONS_WIDTH, VllmSharpVSettings

__all__ = ["PrunedGroup", "prune_videos", "settings_per_video"]


def settings_per_video(
    rows: torch.Tensor | Sequence[torch.Tensor] | None,
    n_videos: int,
    default: VllmSharpVSettings,
) -> list[VllmSharpVSettings]:
    """The settings of each video of a batch from its ``sharpv_options`` field.

    Args:
        rows: ``(n_videos, OPTIONS_WIDTH)`` (or a list of ``(OPTIONS_WIDTH,)``) CPU rows of
            :meth:`VllmSharpVSettings.as_row`, or None (every video gets ``default``).
        n_videos: videos in the batch.
        default: the server's settings.
    """
    if rows is None:
        return [default] * n_videos
    if not isinstance(rows, torch.Tensor):
        rows = torch.stack([torch.as_tensor(r) for r in rows])
    table = rows.reshape(-1, OPTIONS_WIDTH).tolist()
    if len(table) != n_videos:
        raise ValueError(f"sharpv_options has {len(table)} rows for {n_videos} videos")
    known: dict[tuple[float, ...], VllmSharpVSettings] = {}
    out = []
    for row in table:
        key = tuple(row)
        if key not in known:
            known[key] = VllmSharpVSettings.from_row(row)
        out.append(known[key])
    return out


@dataclass(frozen=True)
class PrunedGroup:
    """One pruning call's result for the videos that share shape and settings.

    Attributes:
        videos: positions of the group's videos in the batch.
        packed: ``(sum n_i, f, d)`` their frames, one video after the other.
        indices: ``(sum N_i,)`` int64 kept rows of ``packed.reshape(-1, d)``, ascending.
        sizes: ``N_i`` kept tokens of each video (the budget formula; host ints).
        frame_offsets: first frame of each video in ``packed``.
    """

    videos: list[int]
    packed: torch.Tensor
    indices: torch.Tensor
    sizes: list[int]
    frame_offsets: list[int]


def prune_videos(
    frames: Sequence[torch.Tensor],
    settings: Sequence[VllmSharpVSettings],
    keys: Sequence[Hashable] | None = None,
) -> list[PrunedGroup]:
    """Prune a batch of videos, one pruning call per (key, settings) group.

    Args:
        frames: per video ``(n_i, f_i, d)`` frame tokens as they enter the LLM.
        settings: per video its settings.
        keys: per video a grouping key besides the settings (default ``f_i``); videos are
            packed together only when their keys agree (Qwen2.5-VL passes the merged grid's
            ``(h, w)``, so a group also shares its position layout).
    Returns:
        the groups, in order of first appearance.
    """
    if len(frames) != len(settings):
        raise ValueError(f"{len(frames)} videos but {len(settings)} settings")
    keys = [int(v.shape[1]) for v in frames] if keys is None else list(keys)
    groups: dict[tuple[Hashable, VllmSharpVSettings], list[int]] = {}
    for i, (key, s) in enumerate(zip(keys, settings, strict=True)):
        groups.setdefault((key, s), []).append(i)
    out = []
    for (_, s), members in groups.items():
        parts = [frames[i] for i in members]
        packed = parts[0] if len(parts) == 1 else torch.cat(parts)
        n_frames = [int(p.shape[0]) for p in parts]
        offsets = [0]
        for n in n_frames:
            offsets.append(offsets[-1] + n)
        f = int(packed.shape[1])
        sizes = [s.video_tokens(n, f) for n in n_frames]
        out.append(PrunedGroup(members, packed, s.prune(packed, offsets), sizes, offsets[:-1]))
    return out
