"""25 fps re-timing: nearest presentation time, and the audio stream's start time honoured."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from stylesync.config import PreprocessConfig
from stylesync.data.preprocess import stage_decode
from stylesync.video import MediaError, audio_start_offset, read_video, resample_indices

SR = 16000


def test_resample_takes_the_nearest_frame():
    times = np.arange(60) / 30.0  # 2 s at 30 fps
    idx = resample_indices(times, 25.0)
    n = np.arange(len(idx))
    np.testing.assert_array_equal(idx, np.floor(n * 1.2 + 0.5 - 1e-9).astype(int))  # not floor(n * 1.2)
    assert len(idx) == 50
    err = np.abs(times[idx] - n / 25.0)
    assert err.max() <= 0.5 / 30 + 1e-9 and abs(err.mean()) < 0.01  # no half-frame bias


def test_resample_refuses_frames_out_of_presentation_order():
    with pytest.raises(MediaError, match="presentation order"):
        resample_indices(np.array([0.0, 0.08, 0.04, 0.12]))


def write_late_audio_clip(path, seconds: float = 2.0, fps: int = 30, audio_delay: float = 0.1) -> None:
    """A 30 fps Matroska clip whose audio stream starts `audio_delay` s after the video, with a tone
    burst in the first 0.2 s of the audio stream."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=Fraction(fps))
        vs.width = vs.height = 64
        vs.pix_fmt = "yuv420p"
        aus = c.add_stream("pcm_s16le", rate=SR)
        aus.layout = "mono"
        for i in range(int(seconds * fps)):
            img = np.full((64, 64, 3), (i * 4) % 255, np.uint8)
            for pkt in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in vs.encode():
            c.mux(pkt)
        t = np.arange(int(seconds * SR)) / SR
        wav = np.where(t < 0.2, 0.5 * np.sin(2 * np.pi * 440 * t), 0.01 * np.sin(2 * np.pi * 300 * t))
        pcm = (wav * 32767).astype(np.int16).reshape(1, -1)
        start = int(round(audio_delay * SR))
        for i in range(0, pcm.shape[1], 1024):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, i : i + 1024]), format="s16", layout="mono")
            af.sample_rate, af.pts = SR, start + i
            for pkt in aus.encode(af):
                c.mux(pkt)
        for pkt in aus.encode():
            c.mux(pkt)


def test_late_audio_start_is_honoured_in_preprocessing(tmp_path):
    path = tmp_path / "late_audio.mkv"
    write_late_audio_clip(path)
    assert audio_start_offset(path) == pytest.approx(0.1, abs=2e-3)
    frames, times = read_video(path)
    assert len(frames) == 60 and times[0] == 0
    clip = stage_decode({"path": str(path), "clip_id": "late"}, PreprocessConfig())
    assert len(clip.frames) == 50 and clip.source_index[3] == 4  # 0.12 s -> source frame 4 (0.133 s), not 3
    loud = np.flatnonzero(np.abs(clip.audio) > 0.25)
    assert 0.1 * SR - 40 <= loud[0] <= 0.1 * SR + 40  # the burst sits 0.1 s after the first frame
    assert loud[-1] <= 0.3 * SR + 40
