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


def encode_all(container, stream, frames) -> None:
    """Encode and mux every frame into `stream`, then flush the encoder."""
    for f in frames:
        for pkt in stream.encode(f):
            container.mux(pkt)
    for pkt in stream.encode():
        container.mux(pkt)


def _audio_frame(pcm: np.ndarray, fmt: str, layout: str, rate: int, pts=None) -> av.AudioFrame:
    af = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm), format=fmt, layout=layout)
    af.sample_rate = rate
    if pts is not None:
        af.pts = pts
    return af


def write_late_audio_clip(path, seconds: float = 2.0, fps: int = 30, audio_delay: float = 0.1) -> None:
    """A 30 fps Matroska clip whose audio stream starts `audio_delay` s after the video, with a tone
    burst in the first 0.2 s of the audio stream."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=Fraction(fps))
        vs.width = vs.height = 64
        vs.pix_fmt = "yuv420p"
        aus = c.add_stream("pcm_s16le", rate=SR)
        aus.layout = "mono"
        encode_all(c, vs, (av.VideoFrame.from_ndarray(np.full((64, 64, 3), (i * 4) % 255, np.uint8), format="rgb24")
                           for i in range(int(seconds * fps))))
        t = np.arange(int(seconds * SR)) / SR
        wav = np.where(t < 0.2, 0.5 * np.sin(2 * np.pi * 440 * t), 0.01 * np.sin(2 * np.pi * 300 * t))
        pcm = (wav * 32767).astype(np.int16).reshape(1, -1)
        start = int(round(audio_delay * SR))
        encode_all(c, aus, (_audio_frame(pcm[:, i : i + 1024], "s16", "mono", SR, start + i)
                            for i in range(0, pcm.shape[1], 1024)))


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


def write_bframe_avi(path, n: int = 48) -> None:
    """MPEG-4 Part 2 with B-frames (decode order != presentation order) in AVI, 23.976 fps, AC3
    audio: the kind of real-world file that once crashed `stylesync sync` in resample_indices."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("mpeg4", rate=Fraction(24000, 1001))
        v.width, v.height, v.pix_fmt = 128, 96, "yuv420p"
        v.codec_context.max_b_frames = 2
        a = c.add_stream("ac3", rate=48000)
        a.layout = "stereo"
        bars = np.zeros((n, 96, 128, 3), np.uint8)
        bars[np.arange(n), :, (4 * np.arange(n)) % 128] = 255  # a moving bar: frame i is recognisable
        encode_all(c, v, (av.VideoFrame.from_ndarray(b, format="rgb24") for b in bars))
        t = np.arange(int(48000 * n / 23.976)) / 48000
        wav = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        encode_all(c, a, (_audio_frame(np.stack([wav[i : i + 1536]] * 2), "fltp", "stereo", 48000)
                          for i in range(0, len(wav) - 1536, 1536)))


def test_bframe_avi_decodes_in_presentation_order(tmp_path):
    from stylesync.video import read_audio

    path = tmp_path / "bframes.avi"
    write_bframe_avi(path)
    frames, times = read_video(path)
    assert len(frames) == 48 and (np.diff(times) > 0).all()
    bars = frames[:, 48].mean(axis=-1).argmax(axis=-1)  # the bar's column per frame
    assert (np.abs(bars - (4 * np.arange(48)) % 128) <= 1).all()  # frames in presentation order
    idx = resample_indices(times, 25.0)
    assert abs(len(idx) - 50) <= 1 and (np.diff(idx) >= 0).all()
    assert read_audio(path).size > 1.9 * 16000
