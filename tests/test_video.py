"""``sharpv.video.read_video``: uniform sampling, metadata fallback, memory bounded by the sample.

Every clip is generated here with PyAV; nothing is downloaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from sharpv.video import (  # noqa: E402
    VideoReadError,
    _decode_sampled,
    probe_video,
    read_video,
    sample_indices,
    synthetic_video,
    write_video,
)

ROOT = Path(__file__).resolve().parents[1]


def _decode_all(path: Path) -> np.ndarray:
    """The old reader: every frame to RGB (the oracle for small clips)."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def _write_counter_clip(path: Path, n: int, w: int, h: int, gop: int = 12) -> None:
    """A clip whose frame ``i`` is visibly distinct (a bar at ``i mod w``, brightness ``i``)."""
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.gop_size = gop
        img = np.zeros((h, w, 3), np.uint8)
        for i in range(n):
            img[:] = (7 * i) % 200
            img[:, (3 * i) % (w - 8) : (3 * i) % (w - 8) + 8] = 255
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.mark.parametrize(
    "total, n, expected",
    [
        (10, 4, [0, 3, 6, 9]),
        (10, 1, [0]),
        (10, 2, [0, 9]),
        (5, 5, [0, 1, 2, 3, 4]),
        (3, 8, [0, 1, 2]),
        (0, 4, []),
        (100, 3, [0, 50, 99]),  # round half to even of 49.5
    ],
)
def test_sample_indices_uniform(total, n, expected):
    assert sample_indices(total, n) == expected


def test_sample_indices_properties():
    for total in (1, 2, 7, 31, 32, 33, 1000):
        for n in (1, 2, 5, 32):
            idx = sample_indices(total, n)
            assert len(idx) == min(n, total)
            assert idx == sorted(set(idx)), (total, n)  # strictly increasing, no repeats
            assert idx[0] == 0 and idx[-1] == (total - 1 if n > 1 or total == 1 else 0)
            np.testing.assert_allclose(idx, np.linspace(0, total - 1, len(idx)), atol=0.5)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "counter.mp4"
    _write_counter_clip(path, 150, 64, 48)
    return path


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 32, 150, 400])
def test_read_video_matches_decoding_everything(clip, n):
    """Seeking and streaming give exactly the frames the decode-everything reader picks."""
    oracle = _decode_all(clip)
    got = read_video(clip, n)
    want = oracle[sample_indices(len(oracle), n)]
    assert got.shape == want.shape and got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)


def test_seek_and_sequential_decoding_agree(clip):
    idx = sample_indices(150, 9)  # gaps of ~18 frames; force seeks on every one
    import sharpv.video as video

    old = video.SEEK_GAP
    try:
        video.SEEK_GAP = 1
        seek = _decode_sampled(str(clip), idx, seek=True)
    finally:
        video.SEEK_GAP = old
    seq = _decode_sampled(str(clip), idx, seek=False)
    assert sorted(seek) == sorted(seq) == idx
    for i in idx:
        np.testing.assert_array_equal(seek[i], seq[i])


def test_frame_count_from_metadata(clip):
    info = probe_video(clip)
    assert (info.frames, info.width, info.height, info.counted) == (150, 64, 48, False)
    assert info.fps == pytest.approx(25.0)


def test_frame_count_fallback_counts_packets(tmp_path):
    """Matroska stores no frame count: a demux-only pass counts the frames."""
    path = tmp_path / "clip.mkv"
    frames = synthetic_video(21, 32)
    write_video(path, frames, fps=8)
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0  # the fallback is really exercised
    info = probe_video(path)
    assert info.counted and info.frames == 21
    got = read_video(path, 5)
    np.testing.assert_array_equal(got, _decode_all(path)[sample_indices(21, 5)])


def test_read_video_errors(tmp_path):
    with pytest.raises(VideoReadError, match="video not found"):
        read_video(tmp_path / "missing.mp4")
    with pytest.raises(VideoReadError, match="directory"):
        read_video(tmp_path)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(VideoReadError, match="cannot read video"):
        read_video(bad)
    with pytest.raises(ValueError, match="n_frames"):
        read_video(bad, 0)


_MEASURE = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    import av  # noqa: F401  (imported before the baseline is taken)
    from sharpv.video import read_video, probe_video
    probe_video(sys.argv[1])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    frames = read_video(sys.argv[1], int(sys.argv[2]))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(frames.shape[0], (after - before) * 1024)
    """
)


def test_memory_is_bounded_by_the_sample_not_the_clip(tmp_path):
    """1200 frames of 320x180: the old reader held 207 MB of RGB frames; this one a sample."""
    n_total, w, h, n = 1200, 320, 180, 16
    path = tmp_path / "long.mp4"
    _write_counter_clip(path, n_total, w, h, gop=60)
    all_rgb = n_total * w * h * 3  # a lower bound of what decoding every frame to RGB holds
    bound = 48 * 2**20
    assert all_rgb > 4 * bound  # the old reader would fail this bound by far
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "python"), str(ROOT), env.get("PYTHONPATH", "")]
    )
    p = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), str(n)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    got, growth = (int(x) for x in p.stdout.split())
    assert got == n
    assert growth < bound, f"peak RSS grew by {growth / 2**20:.1f} MiB"


@pytest.mark.parametrize(
    "codec, ext", [("libx264", "mp4"), ("libvpx-vp9", "webm"), ("mpeg4", "avi")]
)
def test_read_video_matches_the_oracle_on_common_formats(tmp_path, codec, ext):
    """H.264 with B-frames (MP4), VP9 (WebM: no frame count, counted), MPEG-4 (AVI)."""
    path = tmp_path / f"clip.{ext}"
    try:
        with av.open(str(path), mode="w") as c:
            s = c.add_stream(codec, rate=30)
            s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
            img = np.zeros((64, 96, 3), np.uint8)
            for i in range(240):
                img[:] = (5 * i) % 200
                img[:, i % 80 : i % 80 + 10] = 255
                for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
    except (av.codec.codec.UnknownCodecError, av.error.FFmpegError) as e:
        pytest.skip(f"{codec} not in this FFmpeg build: {e}")
    oracle = _decode_all(path)
    assert probe_video(path).frames == len(oracle) == 240
    for n in (1, 2, 5, 32, 240):
        np.testing.assert_array_equal(read_video(path, n), oracle[sample_indices(240, n)])
