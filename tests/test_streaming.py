"""Streaming inference: frames decoded on demand in a bounded window, encoded frame by frame, the
result independent of the window; an output written atomically (a failed run leaves the old file)."""
from __future__ import annotations

import numpy as np
import pytest

from stylesync.config import InferConfig
from stylesync.infer import Lipsyncer
from stylesync.video import LazyFrames, VideoWriter, open_video, read_video, write_video

from helpers import tone_wav
from test_infer import astronaut_video


def counting_frames(n: int = 50, window: int = 8) -> tuple[LazyFrames, np.ndarray, list[int]]:
    data = np.arange(n, dtype=np.uint8)[:, None, None, None].repeat(2, 1).repeat(2, 2).repeat(3, 3)  # (n, 2, 2, 3)
    reads: list[int] = []

    def read(src: np.ndarray) -> np.ndarray:
        reads.extend(src.tolist())
        return data[src].copy()

    return LazyFrames(read, np.arange(n), window), data, reads


def test_lazy_frames_index_like_an_array_within_one_window():
    frames, data, reads = counting_frames()
    assert len(frames) == 50 and frames.shape == (50, 2, 2, 3)
    assert np.array_equal(frames[3], data[3]) and np.array_equal(frames[10:20], data[10:20])
    sel = np.array([0, 0, 7, 49, 48])
    assert np.array_equal(frames[sel], data[sel])
    view = frames.take(np.array([5, 5, 6, 9]))
    assert len(view) == 4 and np.array_equal(view[1:3], data[[5, 6]])
    assert len(frames._cache["frames"]) <= 8  # one window


@pytest.mark.parametrize("order", ["forward", "backward", "ping_pong"])
def test_lazy_frames_sweeps_decode_each_frame_about_once(order):
    frames, data, reads = counting_frames()
    idx = {"forward": np.arange(50), "backward": np.arange(50)[::-1],
           "ping_pong": np.r_[np.arange(50), np.arange(48, -1, -1)]}[order]
    for k in idx:
        assert np.array_equal(frames[int(k)], data[k])
        assert len(frames._cache["frames"]) <= 8  # never more than one window decoded
    assert len(reads) <= 2 * len(idx)  # read ahead in the direction of travel, not frame by frame


def test_open_video_matches_read_video(tmp_path):
    frames, _ = astronaut_video(tmp_path / "a.mp4", n=30, size=64)
    whole, times = read_video(tmp_path / "a.mp4")
    with open_video(tmp_path / "a.mp4", window=4) as (lazy, t2):
        np.testing.assert_allclose(t2, times, atol=1e-6)  # decord gives float32 times
        assert np.array_equal(lazy[np.arange(30)[::-1]], whole[::-1])  # a backward sweep through seeks


def test_video_writer_is_atomic_and_fails_before_work(tmp_path):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"the user's old file")
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(out, 25.0) as w:
            w.write(np.zeros((16, 16, 3), np.uint8))
            raise RuntimeError("boom")
    assert out.read_bytes() == b"the user's old file" and sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OSError):  # an output that cannot be created fails on entry, before any frame
        VideoWriter(tmp_path / "a_file" / "o.mp4", 25.0).__enter__()
    write_video(tmp_path / "w.mp4", np.zeros((3, 15, 17, 3), np.uint8), audio=np.zeros(1600, np.float32))
    got, _ = read_video(tmp_path / "w.mp4")
    assert got.shape == (3, 16, 18, 3)  # odd sizes padded for yuv420p


def test_sync_output_does_not_depend_on_the_decode_window(tmp_path, small_trained_model):
    """Ping-pong (audio 2x the video) walks the frames forward and back through the window."""
    video = tmp_path / "v.mp4"
    astronaut_video(video, n=20, size=128)
    audio = tone_wav(tmp_path / "a.wav", 1.6, 190.0)
    sidecar = str(video.with_name("v.landmarks.npy"))
    outs = []
    for window in (3, 1000):
        syncer = Lipsyncer.from_dirs(small_trained_model, cfg=InferConfig(batch_size=4, chunk_frames=window))
        rep = syncer.run(video, audio, tmp_path / f"o{window}.mp4", landmarks=sidecar, progress=False, keep_frames=True)
        assert rep.frames == 40
        outs.append(syncer.last_frames)
    assert np.array_equal(outs[0], outs[1])
    src, _ = read_video(video)
    assert np.array_equal(outs[0][25][:8], src[13][:8])  # output 25 = source 13 on the way back; top rows untouched
