"""Small real media files for tests: a drawn face moving its mouth with the audio, + landmark sidecar."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from stylesync.face.template import canonical_landmarks
from stylesync.video import write_video


def face_landmarks(t: int, size: int, center=(0.5, 0.45), scale=0.55, mouth: float = 0.0) -> np.ndarray:
    """(68, 2) frame pixels: the template face scaled into the frame, slowly moving."""
    lm = canonical_landmarks(mouth_open=mouth)  # template units, 75 x 100 box
    s = scale * size / 100.0
    cx, cy = center[0] * size + 2 * np.sin(t / 7), center[1] * size + 1.5 * np.cos(t / 9)
    return ((lm - [37.5, 50.0]) * s + [cx, cy]).astype(np.float32)


def draw_face(img: np.ndarray, lm: np.ndarray, skin=(200, 160, 140)) -> None:
    jaw = lm[0:17]
    top = np.array([[lm[26, 0], lm[24, 1] - 20], [lm[17, 0], lm[19, 1] - 20]])
    cv2.fillPoly(img, [np.round(np.concatenate([jaw, top])).astype(np.int32)], skin, cv2.LINE_AA)
    for a, b in ((36, 42), (42, 48)):
        cv2.fillPoly(img, [np.round(lm[a:b]).astype(np.int32)], (250, 250, 250), cv2.LINE_AA)
    cv2.fillPoly(img, [np.round(lm[48:60]).astype(np.int32)], (160, 60, 70), cv2.LINE_AA)
    cv2.fillPoly(img, [np.round(lm[60:68]).astype(np.int32)], (40, 10, 10), cv2.LINE_AA)
    cv2.polylines(img, [np.round(lm[27:36]).astype(np.int32)], False, (120, 90, 80), 1, cv2.LINE_AA)


def make_clip(path: str | Path, n_frames: int = 40, fps: float = 25.0, size: tuple[int, int] = (128, 128),
              audio_seconds: Optional[float] = None, silent: bool = False, faces: int = 1, with_audio: bool = True,
              sidecar: bool = True, pix_fmt: str = "yuv420p", seed: int = 0) -> Path:
    """Write an mp4 (+ `.landmarks.npy`) of a talking drawn face. faces=0: no face; 2: two faces."""
    rng = np.random.default_rng(seed)
    h, w = size
    sr = 16000
    secs = n_frames / fps if audio_seconds is None else audio_seconds
    t = np.arange(int(secs * sr)) / sr
    env = (np.sin(2 * np.pi * 2.5 * t) > 0) * np.abs(np.sin(2 * np.pi * 2.5 * t))
    audio = (0.3 * env * np.sin(2 * np.pi * 180 * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
    if silent:
        audio[:] = 0
    frames = np.empty((n_frames, h, w, 3), np.uint8)
    lms = np.full((n_frames, max(faces, 1), 68, 2), np.nan, np.float32)
    for i in range(n_frames):
        img = np.full((h, w, 3), (60, 90, 120), np.uint8)
        mouth = 4.0 * float(np.interp(i / fps, t, env)) if len(t) else 0.0
        centers = [(0.5, 0.45)] if faces == 1 else [(0.3, 0.45), (0.72, 0.45)]
        for f, c in enumerate(centers[:faces]):
            lm = face_landmarks(i, min(h, w), c, 0.55 if faces == 1 else 0.38, mouth)
            lm[:, 0] += (w - min(h, w)) / 2
            lm[:, 1] += (h - min(h, w)) / 2
            draw_face(img, lm)
            lms[i, f] = lm
        frames[i] = img
    path = Path(path)
    write_video(path, frames, fps, audio if with_audio else None, pix_fmt=pix_fmt)
    if sidecar:
        np.save(path.with_name(path.stem + ".landmarks.npy"), lms[:, 0] if faces <= 1 else lms)
    return path
