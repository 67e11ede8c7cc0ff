"""The render stage's strip PNG: lower-face tiles of the audio's own video above those of the render."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from drawn_clips import make_clip
from stylesync.stages.render import GAP, LABEL_H, TILE, crop_box, write_strip
from stylesync.video import read_video


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("strip")
    voice = make_clip(d / "voice.mp4", n_frames=30, size=(128, 128))
    render = make_clip(d / "render.mp4", n_frames=26, size=(128, 128), seed=1)  # frame counts differ
    return d, voice, render


def _sidecar(path):
    return path.with_name(path.stem + ".landmarks.npy")


def _tiles(img: np.ndarray, n: int) -> np.ndarray:
    """(H, W, 3) strip -> (2, n, TILE, TILE, 3) tiles."""
    rows = [r * (LABEL_H + TILE + GAP) + LABEL_H for r in range(2)]
    return np.stack([[img[y : y + TILE, k * (TILE + GAP) : k * (TILE + GAP) + TILE] for k in range(n)] for y in rows])


def _read(path) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def test_strip_tiles_follow_the_mouth(clips):
    d, voice, render = clips
    n = 10
    out = write_strip(voice, str(_sidecar(voice)), render, str(_sidecar(render)), d / "strips" / "x.png", n=n)
    img = _read(out)
    assert img.shape == (2 * (LABEL_H + TILE) + GAP, n * (TILE + GAP) - GAP, 3)
    tiles = _tiles(img, n).astype(np.int16)  # (2, n, TILE, TILE, 3)
    idx = np.round(np.linspace(0, 25, n)).astype(int)  # same times in both clips, over the shorter (26 frames)
    for row, clip in zip(tiles, (voice, render)):
        lm = np.load(_sidecar(clip))  # (T, 68, 2)
        gap = np.linalg.norm(lm[idx, 66] - lm[idx, 62], axis=1)  # (n,) inner-lip opening
        dark = (row.max(-1) < 70).sum((1, 2))  # (n,) pixels of the open mouth's inside
        assert gap.max() > 2 and gap.min() < 0.5
        assert dark[gap > 2].min() > 1.5 * dark[gap < 0.5].max(), (gap, dark)  # open mouths in their tiles
        a, b = int(gap.argmax()), int(gap.argmin())  # open vs closed: clearly different tiles
        assert np.abs(row[a] - row[b]).mean() > 3


def test_crop_box_holds_the_mouth(clips):
    _, voice, _ = clips
    lm = np.load(_sidecar(voice))
    x0, y0, x1, y1 = crop_box(lm, (128, 128))
    assert x1 - x0 == y1 - y0 and 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128
    mouth = lm[:, 48:68]
    assert (mouth[..., 0] > x0).all() and (mouth[..., 0] < x1).all()
    assert (mouth[..., 1] > y0).all() and (mouth[..., 1] < y1).all()
    assert (x1 - x0) < 100  # enlarged: a part of the frame, not all of it


def test_falls_back_to_the_lower_centre_without_landmarks(clips):
    d, voice, render = clips
    nan = d / "nan.landmarks.npy"
    np.save(nan, np.full((30, 68, 2), np.nan, np.float32))  # no face found anywhere
    n = 4
    out = write_strip(voice, None, render, str(nan), d / "strips" / "fallback.png", n=n)
    tiles = _tiles(_read(out), n)
    assert crop_box(None, (128, 128)) == (32, 64, 96, 128)
    for row, clip in zip(tiles, (voice, render)):
        frames, _ = read_video(clip)
        want = cv2.resize(np.ascontiguousarray(frames[0, 64:128, 32:96]), (TILE, TILE), interpolation=cv2.INTER_CUBIC)
        np.testing.assert_array_equal(row[0], want)
