"""LMD: mean distance of the mouth landmarks (48-67) of generated and real aligned frames, both
landmarked by face-alignment's 2D-FAN at 256x256 (the aligned crop space); pixels at 256."""
from __future__ import annotations

import cv2
import numpy as np

from ..face.template import canonical_landmarks, template_to_pixels

SIZE = 256


def face_box(size: int = SIZE, margin: float = 0.05) -> np.ndarray:
    """The template face's box in the aligned crop (faces are aligned: one box fits all frames)."""
    lm = template_to_pixels(canonical_landmarks(), size)
    (x0, y0), (x1, y1) = lm.min(0), lm.max(0)
    w, h = x1 - x0, y1 - y0
    return np.array([max(x0 - margin * w, 0), max(y0 - margin * h, 0), min(x1 + margin * w, size - 1),
                     min(y1 + margin * h, size - 1)])


def to_256(frames: np.ndarray) -> np.ndarray:
    if frames.shape[1] == SIZE:
        return frames
    return np.stack([cv2.resize(f, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC) for f in frames])


def mouth_landmarks(fan, frames: np.ndarray) -> np.ndarray:
    """(T, S, S, 3) aligned RGB frames -> (T, 20, 2) mouth landmarks at 256."""
    f = to_256(frames)
    return fan.landmarks_from_boxes(f, np.tile(face_box(), (len(f), 1)))[:, 48:68]


def mouth_distance(generated: np.ndarray, real: np.ndarray) -> float:
    """(T, 20, 2) mouth landmarks of generated and real frames -> their mean point distance."""
    return float(np.linalg.norm(generated - real, axis=-1).mean())


def lmd(fan, generated: np.ndarray, real: np.ndarray) -> float:
    return mouth_distance(mouth_landmarks(fan, generated), mouth_landmarks(fan, real))
