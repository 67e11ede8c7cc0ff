"""What `stylesync sync` writes, whatever the input's rates (README "Lip-sync your own video"):
25 fps H.264 with 16 kHz mono AAC, at the input's size."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import soundfile

from stylesync.cli import main
from stylesync.face.template import canonical_landmarks
from stylesync.video import probe, read_audio, write_video

H, W = 120, 160


def video_30fps(path: Path, n: int) -> Path:
    """n frames at 30 fps (a drifting gradient) and their landmark sidecar (the template face, moving)."""
    yy, xx = np.mgrid[0:H, 0:W]
    frames, lms = [], []
    for t in range(n):
        img = np.stack([(xx + 3 * t) % 256, (yy * 2) % 256, np.full_like(xx, 120)], -1).astype(np.uint8)
        frames.append(img)
        lms.append(canonical_landmarks() * 1.1 + [W / 2 - 41 + np.sin(t / 5), 4.0])
    write_video(path, np.stack(frames), 30.0, None, crf=10)
    np.save(path.with_name(path.stem + ".landmarks.npy"), np.stack(lms).astype(np.float32))
    return path


def test_a_30_fps_input_gives_25_fps_with_16_khz_mono_aac(tmp_path, small_trained_model):
    video = video_30fps(tmp_path / "talk.mp4", 36)  # 1.2 s
    src = probe(video)
    assert src.fps == 30.0 and src.n_frames == 36
    t = np.arange(44100) / 44100  # 1.0 s, 44.1 kHz stereo: resampled and mixed down
    audio = tmp_path / "speech.wav"
    soundfile.write(audio, np.stack([0.3 * np.sin(2 * np.pi * 180 * t), 0.2 * np.sin(2 * np.pi * 240 * t)], -1), 44100)
    out = tmp_path / "out.mp4"
    assert main(["sync", "--checkpoint", str(small_trained_model), "--video", str(video), "--audio", str(audio),
                 "--landmarks", str(tmp_path / "talk.landmarks.npy"), "-o", str(out)]) == 0
    info = probe(out)
    assert info.fps == 25.0 and info.n_frames == 25  # 1.0 s of audio at 25 fps
    assert (info.width, info.height) == (W, H) and info.video_codec == "h264"
    assert info.has_audio and info.audio_codec == "aac" and info.audio_rate == 16000
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.channels == 1
    assert abs(len(read_audio(out)) - 16000) <= 1024  # AAC frames of 1024 samples
