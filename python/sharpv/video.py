"""Videos for SharpV: a synthetic clip built in code, decoding with PyAV, preprocessing.

Frames are ``(T, H, W, 3)`` uint8 numpy arrays (RGB) throughout. Reading a file costs memory
in proportion to the frames sampled, not to the clip (see :func:`read_video`). Importing this
module does not import torch (only :func:`frames_to_pixels` needs it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "VideoReadError",
    "synthetic_video",
    "scene_cut_frame",
    "read_video",
    "probe_video",
    "VideoInfo",
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
    """``n`` frame indices spread uniformly over ``total`` frames (all of them if fewer).

    The rule of :func:`read_video`: ``round(linspace(0, total - 1, n))``, so the first and
    the last frame are always sampled.

    Examples:
        >>> sample_indices(10, 4)
        [0, 3, 6, 9]
        >>> sample_indices(3, 8)
        [0, 1, 2]
    """
    if total <= 0:
        return []
    if n >= total:
        return list(range(total))
    return [int(x) for x in np.linspace(0, total - 1, n).round().astype(int)]


#: Seek (to the keyframe before the next sampled frame) rather than decode through when the
#: next sampled frame is more than this many frames ahead.
SEEK_GAP = 48


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learns without decoding a frame.

    Attributes:
        frames: frame count (container metadata, else a pass counting packets).
        width, height: frame size in pixels.
        fps: average frame rate, or ``None`` when the container does not say.
        counted: True when ``frames`` comes from the counting pass (no metadata).
    """

    frames: int
    width: int
    height: int
    fps: float | None
    counted: bool


def _check_path(path: str) -> None:
    if not os.path.exists(path):
        raise VideoReadError(f"video not found: {path}")
    if os.path.isdir(path):
        raise VideoReadError(f"video path is a directory: {path}")


def _open(path: str):
    """``av.open`` with PyAV's many error types turned into :class:`VideoReadError`."""
    import av

    try:
        container = av.open(path)
    except Exception as e:  # InvalidDataError, OSError, ...
        raise VideoReadError(f"cannot read video {path}: {type(e).__name__}: {e}") from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"no video stream in {path}")
    return container


def _count_packets(path: str) -> int:
    """Frames of the first video stream, counted by demuxing (no decoding, no conversion)."""
    with _open(path) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count, size and rate of a video file, without decoding it.

    The count is the container's metadata; when it has none (``0``: Matroska, WebM, some
    streams) one pass demuxes the packets and counts them, decoding nothing.

    Raises:
        VideoReadError: the file is missing, cannot be opened, or has no video stream.

    Examples:
        >>> info = probe_video("clip.mp4")  # doctest: +SKIP
        >>> info.frames, info.width, info.height  # doctest: +SKIP
        (1500, 320, 180)
    """
    path = os.fspath(path)
    _check_path(path)
    try:
        with _open(path) as container:
            stream = container.streams.video[0]
            frames = int(stream.frames or 0)
            rate = stream.average_rate or stream.guessed_rate
            width, height = int(stream.width), int(stream.height)
        counted = frames <= 0
        if counted:
            frames = _count_packets(path)
    except VideoReadError:
        raise
    except Exception as e:
        raise VideoReadError(f"cannot read video {path}: {type(e).__name__}: {e}") from None
    return VideoInfo(frames, width, height, float(rate) if rate else None, counted)


class _NoTimestamps(Exception):
    """A decoded frame without a timestamp: indices must come from a frame counter."""


def _decode_sampled(path: str, wanted: list[int], seek: bool) -> dict[int, np.ndarray]:
    """Decode the first video stream once, converting only the frames in ``wanted`` to RGB.

    With ``seek`` a frame's index is its timestamp times the frame rate (exact for constant
    frame rate) and the decoder jumps to the keyframe before a sampled frame that is more
    than :data:`SEEK_GAP` frames ahead; otherwise indices count decoded frames. A sampled
    index at or past the end of the stream (metadata that overcounts) gets the last frame.
    """
    targets = sorted(set(wanted))
    out: dict[int, np.ndarray] = {}
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        tb = stream.time_base
        seek = seek and bool(rate) and tb is not None
        start = stream.start_time or 0
        counter = -1
        last = None  # last decoded frame, not converted
        decoder = container.decode(stream)
        ti = 0
        while ti < len(targets):
            target = targets[ti]
            if seek and target - counter > SEEK_GAP:
                container.seek(start + int(target / (rate * tb)), stream=stream)
                decoder = container.decode(stream)
            hit = False
            for frame in decoder:
                if seek:
                    if frame.pts is None:
                        raise _NoTimestamps
                    counter = round(float((frame.pts - start) * tb * rate))
                else:
                    counter += 1
                last = frame
                if counter >= target:
                    rgb = frame.to_ndarray(format="rgb24")
                    while ti < len(targets) and targets[ti] <= counter:
                        out[targets[ti]] = rgb
                        ti += 1
                    hit = True
                    break
            if not hit:  # end of stream
                if last is None:
                    break
                rgb = last.to_ndarray(format="rgb24")
                for t in targets[ti:]:
                    out[t] = rgb
                break
    return out


def read_video(path: str | os.PathLike, n_frames: int = 32) -> np.ndarray:
    """Decode a video file with PyAV and sample ``n_frames`` frames uniformly.

    Sampling: the indices of :func:`sample_indices` (``round(linspace(0, total - 1, n))``)
    over the clip's ``total`` frames (container metadata, else a counting pass over the
    packets). Memory is bounded by the sample, not by the clip: frames are decoded as a
    stream, only the sampled ones are converted to RGB, and where the container has
    timestamps the decoder seeks to the keyframe before a distant sampled frame instead
    of decoding everything in between.

    Args:
        path: a video file PyAV (FFmpeg) can read.
        n_frames: frames to sample (``>= 1``).

    Returns:
        ``(min(n_frames, total), H, W, 3)`` uint8 RGB frames.

    Raises:
        ValueError: ``n_frames`` is not a positive int.
        VideoReadError: the file is missing, cannot be decoded, or has no video frames.

    Examples:
        >>> frames = read_video("clip.mp4", n_frames=8)  # doctest: +SKIP
        >>> frames.shape, frames.dtype  # doctest: +SKIP
        ((8, 180, 320, 3), dtype('uint8'))
    """
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 1:
        raise ValueError(f"n_frames must be an int >= 1, got {n_frames!r}")
    path = os.fspath(path)
    info = probe_video(path)
    if info.frames <= 0:
        raise VideoReadError(f"no frames could be decoded from {path}")
    wanted = sample_indices(info.frames, n_frames)
    try:
        try:
            frames = _decode_sampled(path, wanted, seek=True)
        except _NoTimestamps:
            frames = _decode_sampled(path, wanted, seek=False)
    except VideoReadError:
        raise
    except Exception as e:  # PyAV raises many error types (InvalidDataError, ...)
        raise VideoReadError(f"cannot read video {path}: {type(e).__name__}: {e}") from None
    if not frames:
        raise VideoReadError(f"no frames could be decoded from {path}")
    return np.stack([frames[i] for i in wanted])


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
    import torch

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    if x.shape[-2:] != (size, size):
        x = torch.nn.functional.interpolate(
            x, size=(size, size), mode="bicubic", align_corners=False, antialias=True
        )
    x = (x / 255.0).clamp(0, 1)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s
