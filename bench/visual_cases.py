"""Benchmark shapes and synthetic features for Visual SharpV."""

from __future__ import annotations

import torch

#: name -> (frames, tokens per frame f, channels d)
SHAPES: dict[str, tuple[int, int, int]] = {
    "llava-ov-0.5b": (32, 196, 896),
    "llava-ov-7b": (32, 196, 3584),
    "pllava-7b": (16, 144, 4096),
    "long-video-7b": (256, 196, 3584),
}


def video_features(
    frames: int, f: int, d: int, dtype: torch.dtype, device: str, seed: int = 0
) -> torch.Tensor:
    """Features with video-like redundancy: a static scene, moving patches, a scene cut."""
    g = torch.Generator().manual_seed(seed)
    scene = torch.randn(f, d, generator=g)
    other = torch.randn(f, d, generator=g)
    x = scene.expand(frames, f, d).clone()
    x[frames // 2 :] = other
    x += 0.05 * torch.randn(frames, f, d, generator=g)
    moving = torch.randint(0, f, (frames, max(1, f // 8)), generator=g)
    x.scatter_add_(
        1,
        moving[:, :, None].expand(-1, -1, d),
        torch.randn(frames, moving.shape[1], d, generator=g),
    )
    return x.to(device=device, dtype=dtype)
