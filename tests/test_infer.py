"""Inference end to end on a real photograph with real recorded speech, and its pieces."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stylesync.config import InferConfig, MaskConfig
from stylesync.face.paste import blend_mask
from stylesync.face.template import canonical_landmarks
from stylesync.infer import Lipsyncer, ping_pong, smooth_audio_features
from stylesync.video import probe, read_audio, read_video, write_video

from helpers import SPEECH, tone_wav


# The astronaut's face in skimage.data.astronaut() (512 x 512), placed by hand: eye centres, mouth
# corners and chin; the 68-point template is fitted to them (similarity, least squares).
ASTRONAUT_POINTS = np.array([[203, 102], [247, 103], [203, 140], [250, 140], [227, 178]], dtype=np.float64)


def astronaut_landmarks() -> np.ndarray:
    from stylesync.face.align import similarity

    lm = canonical_landmarks()
    tpl = np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[48], lm[54], lm[8]])
    m = similarity(tpl, ASTRONAUT_POINTS)
    return lm @ m[:, :2].T + m[:, 2]


def astronaut_video(path: Path, n: int = 40, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The photo with a small head motion (shift and rotation), and its per-frame landmarks."""
    from skimage.data import astronaut

    img = astronaut()
    s = size / img.shape[0]
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    lm0 = astronaut_landmarks() * s
    frames, lms = [], []
    for t in range(n):
        angle, dx, dy = 2.0 * np.sin(t / 6), 3 * np.sin(t / 9), 2 * np.cos(t / 7)
        m = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
        m[:, 2] += (dx, dy)
        frames.append(cv2.warpAffine(img, m, (size, size), borderMode=cv2.BORDER_REFLECT))
        lms.append(lm0 @ m[:, :2].T + m[:, 2])
    frames, lms = np.stack(frames), np.stack(lms).astype(np.float32)
    write_video(path, frames, 25.0, None, crf=10)
    np.save(path.with_name(path.stem + ".landmarks.npy"), lms)
    return frames, lms


def test_ping_pong_and_audio_smoothing():
    assert ping_pong(9, 4).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2]
    assert ping_pong(3, 1).tolist() == [0, 0, 0]
    f = torch.tensor([[1.0], [0.0], [0.0]])
    np.testing.assert_allclose(smooth_audio_features(f, 0.3, 1.25).squeeze().numpy(), [1.25, 0.375, 0.1125])
    assert torch.equal(smooth_audio_features(f, 0.0, 1.0), f)


def test_blend_mask_is_soft_and_inside_the_generated_region():
    m = blend_mask(256, MaskConfig())
    from stylesync.face.mask import lower_face_mask

    assert m.max() == pytest.approx(1.0) and m.min() == 0.0 and ((m > 0) & (m < 1)).sum() > 500
    assert (m <= lower_face_mask(256) + 1e-6).all()


def test_astronaut_end_to_end_with_real_speech(tmp_path, small_trained_model):
    assert SPEECH.exists(), f"{SPEECH} missing: install Debian's codec2-examples (make test does)"
    video = tmp_path / "astronaut.mp4"
    astronaut_video(video, n=40)
    speech = read_audio(SPEECH)[: int(2.5 * 16000)]  # 2.5 s of real speech, longer than the 1.6 s video
    audio = tmp_path / "speech.wav"
    import soundfile

    soundfile.write(audio, speech, 16000)
    syncer = Lipsyncer.from_dirs(small_trained_model, cfg=InferConfig(batch_size=8))
    out = tmp_path / "out.mp4"
    rep = syncer.run(video, audio, out, landmarks=str(video.with_name("astronaut.landmarks.npy")), progress=False, keep_frames=True)
    info = probe(out)
    n_expected = int(np.ceil(len(speech) / 640))
    assert rep.frames == n_expected == 63 and rep.frames_without_face == 0
    assert info.fps == 25.0 and abs(info.n_frames - n_expected) <= 1 and info.has_audio
    # frames before encoding: exactly the input outside the (warped) blend mask, changed inside
    src, _ = read_video(video)
    from stylesync.infer import ping_pong as pp

    lm = np.load(video.with_name("astronaut.landmarks.npy"))
    from stylesync.face.align import alignment_matrices
    from stylesync.face.landmarks import smooth_landmarks

    aff = alignment_matrices(smooth_landmarks(lm, syncer.face.smooth_sigma), np.asarray(syncer.face.template), 128)
    sched = pp(n_expected, len(src))
    changed = 0
    for k in range(n_expected):
        alpha = cv2.warpAffine(syncer.blend, aff[sched[k]], (256, 256), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        outside = alpha == 0
        assert np.array_equal(syncer.last_frames[k][outside], src[sched[k]][outside])
        changed += int((syncer.last_frames[k][~outside] != src[sched[k]][~outside]).any())
    assert changed == n_expected
    # the audio stream carries the input audio
    got = read_audio(out)[: len(speech)]
    assert len(got) >= len(speech) - 640
    assert np.corrcoef(got[: len(speech)], speech[: len(got)])[0, 1] > 0.95


def test_frames_without_a_face_are_copied(tmp_path, small_trained_model):
    video = tmp_path / "a.mp4"
    frames, lms = astronaut_video(video, n=20)
    lms[5:9] = np.nan  # no face on 4 frames (longer than the smoothing's gap filling)
    np.save(video.with_name("a.landmarks.npy"), lms)
    audio = tone_wav(tmp_path / "a.wav", 0.8, 200.0)
    syncer = Lipsyncer.from_dirs(small_trained_model)
    rep = syncer.run(video, audio, tmp_path / "o.mp4", landmarks=str(video.with_name("a.landmarks.npy")),
                     progress=False, keep_frames=True)
    src, _ = read_video(video)
    assert rep.frames_without_face == 4
    for k in range(5, 9):
        assert np.array_equal(syncer.last_frames[k], src[k])


def test_start_end_and_batch_folder(tmp_path, small_trained_model):
    from stylesync.stages.sync import pairs as _pairs

    folder = tmp_path / "videos"
    folder.mkdir()
    astronaut_video(folder / "one.mp4", n=30)
    astronaut_video(folder / "two.mp4", n=30)
    tone_wav(tmp_path / "voice.wav", 2.0, 150.0)
    pairs = _pairs(folder, tmp_path / "voice.wav", tmp_path / "out")
    assert [p[2].name for p in pairs] == ["one.mp4", "two.mp4"]
    syncer = Lipsyncer.from_dirs(small_trained_model)
    rep = syncer.run(folder / "one.mp4", tmp_path / "voice.wav", tmp_path / "part.mp4",
                     landmarks=str(folder / "one.landmarks.npy"), start=0.4, end=1.0, progress=False)
    assert rep.frames == 15  # 0.6 s at 25 fps
    with pytest.raises(ValueError, match="no frames selected"):
        syncer.run(folder / "one.mp4", tmp_path / "voice.wav", tmp_path / "x.mp4",
                   landmarks=str(folder / "one.landmarks.npy"), start=5.0, progress=False)
