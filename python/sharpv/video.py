"""Videos for SharpV: a synthetic clip built in code, decoding with PyAV, preprocessing.

Frames are ``(T, H, W, 3)`` uint8 numpy arrays (RGB) throughout.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "VideoReadError",
    "synthetic_video",
    "scene_cut_frame",
    "read_video",
    "write_video",
    "sample_indices",
    "frames_to_pixels",
]

#: Normalisation of SigLIP (LLaVA-OneVision) and CLIP (LLaVA-NeXT-Video) towers.
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class VideoReadError(ValueError):
    """A video file that is missing, unreadable or has no frames."""


def scene_cut_frame(n_frames: int) -> int:
    """Index of the first frame after the scene cut of :func:`synthetic_video`."""
    return (5 * n_frames) // 8


def synthetic_video(n_frames: int = 32, size: int = 384, seed: int = 0) -> np.ndarray:
    """A clip with static stretches, motion and a scene cut, built in code.

    Layout for ``n`` frames: ``[0, n/4)`` a static scene; ``[n/4, 5n/8)`` the same scene
    with a square moving across it; frame ``5n/8`` a hard cut to a second scene, static
    until ``7n/8``; then a disc moving in that scene until the end.

    Returns:
        ``(n_frames, size, size, 3)`` uint8 RGB frames.
    """
    if n_frames < 1 or size < 8:
        raise ValueError(f"need n_frames >= 1 and size >= 8, got {n_frames}, {size}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size

    def scene(kind: int) -> np.ndarray:
        if kind == 0:  # sky over grass, a house
            img = np.zeros((size, size, 3), np.float32)
            img[..., 0] = 80 + 60 * yy
            img[..., 1] = 140 + 80 * (yy > 0.6)
            img[..., 2] = 230 - 150 * (yy > 0.6)
            house = (xx > 0.15) & (xx < 0.4) & (yy > 0.4) & (yy < 0.7)
            img[house] = (180, 60, 40)
        else:  # textured indoor scene
            img = np.stack(
                [
                    128 + 100 * np.sin(12 * xx + 3 * yy),
                    128 + 100 * np.cos(9 * yy),
                    100 + 80 * np.sin(7 * (xx + yy)),
                ],
                axis=-1,
            )
        img += rng.normal(0, 6, img.shape).astype(np.float32)  # fixed texture, not per frame
        return img

    scenes = [scene(0), scene(1)]
    cut = scene_cut_frame(n_frames)
    s1, s2 = n_frames // 4, (7 * n_frames) // 8
    out = np.empty((n_frames, size, size, 3), np.uint8)
    half = max(size // 8, 2)
    for t in range(n_frames):
        img = scenes[0 if t < cut else 1].copy()
        if s1 <= t < cut:  # moving square
            u = (t - s1 + 1) / max(cut - s1, 1)
            cx, cy = int(size * (0.1 + 0.8 * u)), int(size * 0.25)
            img[max(cy - half, 0) : cy + half, max(cx - half, 0) : cx + half] = (250, 220, 30)
        elif t >= s2:  # moving disc
            u = (t - s2 + 1) / max(n_frames - s2, 1)
            cx, cy = 0.2 + 0.6 * u, 0.5 + 0.2 * u
            disc = (xx - cx) ** 2 + (yy - cy) ** 2 < 0.015
            img[disc] = (20, 20, 20)
        out[t] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def sample_indices(total: int, n: int) -> list[int]:
    """``n`` frame indices spread uniformly over ``total`` frames (all of them if fewer)."""
    if total <= 0:
        return []
    if n >= total:
        return list(range(total))
    return [int(x) for x in np.linspace(0, total - 1, n).round().astype(int)]


def read_video(path: str | os.PathLike, n_frames: int = 32) -> np.ndarray:
    """Decode a video file with PyAV and sample ``n_frames`` frames uniformly.

    Returns:
        ``(min(n_frames, total), H, W, 3)`` uint8 RGB frames.

    Raises:
        VideoReadError: the file is missing, cannot be decoded, or has no video frames.
    """
    import av

    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoReadError(f"video not found: {path}")
    if os.path.isdir(path):
        raise VideoReadError(f"video path is a directory: {path}")
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoReadError(f"no video stream in {path}")
            frames = [
                fr.to_ndarray(format="rgb24") for fr in container.decode(container.streams.video[0])
            ]
    except VideoReadError:
        raise
    except Exception as e:  # PyAV raises many error types (InvalidDataError, ...)
        raise VideoReadError(f"cannot read video {path}: {type(e).__name__}: {e}") from None
    if not frames:
        raise VideoReadError(f"no frames could be decoded from {path}")
    idx = sample_indices(len(frames), n_frames)
    return np.stack([frames[i] for i in idx])


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 8) -> None:
    """Encode ``(T, H, W, 3)`` uint8 frames to a file with PyAV (MPEG-4 part 2 video)."""
    import av

    frames = np.asarray(frames, dtype=np.uint8)
    h, w = frames.shape[1:3]
    with av.open(os.fspath(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = w - w % 2, h - h % 2
        stream.pix_fmt = "yuv420p"
        for img in frames:
            frame = av.VideoFrame.from_ndarray(img[: stream.height, : stream.width], format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def frames_to_pixels(
    frames: np.ndarray,
    size: int,
    mean: Sequence[float] = SIGLIP_MEAN,
    std: Sequence[float] = SIGLIP_STD,
) -> torch.Tensor:
    """Resize frames to ``size x size`` (bicubic) and normalise, as the HF processors do.

    Args:
        frames: ``(T, H, W, 3)`` uint8.

    Returns:
        ``(T, 3, size, size)`` float32.
    """
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    if x.shape[-2:] != (size, size):
        x = torch.nn.functional.interpolate(
            x, size=(size, size), mode="bicubic", align_corners=False, antialias=True
        )
    x = (x / 255.0).clamp(0, 1)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s
