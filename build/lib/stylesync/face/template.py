"""The canonical 68-point (iBUG) face in the aligned template space, and its alignment points.

Template units follow the authors' alignment (docs/MODELS.md, reference R5): the crop is 75 x 100 units
(210 x 280 px at the default scale 2.8), the eyebrow centres sit at (17, 20) and (58, 20) and the
nose centre (mean of points 27-35) at (37.5, 40). The neutral face below is built to those three
points exactly, so it serves as (a) the lower-face mask's source, (b) the synthetic corpus's face
model and (c) a landmark fixture that aligns to the template by construction.
"""
from __future__ import annotations

import numpy as np

# authors' template (units) for [left brow centre, right brow centre, nose centre]
ALIGN_TEMPLATE = np.array([[17.0, 20.0], [58.0, 20.0], [37.5, 40.0]])
TEMPLATE_BOX = (75.0, 100.0)  # (w, h) in units


def alignment_points(landmarks: np.ndarray) -> np.ndarray:
    """(..., 68, 2) -> (..., 3, 2): mean of each eyebrow (17:22, 22:27) and of the nose (27:36)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return np.stack([lm[..., 17:22, :].mean(-2), lm[..., 22:27, :].mean(-2), lm[..., 27:36, :].mean(-2)], axis=-2)


def _mirror(points: np.ndarray) -> np.ndarray:
    out = points.copy()
    out[:, 0] = TEMPLATE_BOX[0] - out[:, 0]
    return out


UPPER_LIP_SHARE = 0.3  # of the lip gap taken by the upper lip (the jaw opens the rest)
JAW_DROP = 0.55  # chin drop per unit of lip gap

# depth of each landmark towards the camera (template units; ~1.5 mm each) for head yaw
_DEPTH = np.concatenate([
    8 * np.cos((np.arange(17) - 8) / 8 * 1.75),  # jaw: the chin forward, the ears back
    [6, 7, 8, 7, 6, 6, 7, 8, 7, 6],  # brows
    [10, 13, 16, 19], [12, 14, 16, 14, 12],  # nose bridge, nose base
    [4, 6, 6, 4, 6, 6, 4, 6, 6, 4, 6, 6],  # eyes
    [8, 11, 12, 12, 12, 11, 8, 11, 12, 12, 12, 11],  # outer lips
    [9, 10, 10, 10, 9, 10, 10, 10],  # inner lips
])


def canonical_landmarks(
    mouth_open: float = 0.0, mouth_width: float = 1.0, jaw_width: float = 1.0, face_length: float = 1.0,
    eye_open: float = 1.0, eye_spacing: float = 1.0, mouth_y: float = 0.0, yaw: float = 0.0,
) -> np.ndarray:
    """A 68-point face in template units (x right, y down). Neutral (defaults): mouth closed.

    mouth_open: lip gap in units (~1.5 mm each): the upper lip rises by UPPER_LIP_SHARE of it, the
    lower lip drops by the rest and the chin by JAW_DROP of it (the jaw carries the lower lip).
    mouth_width, jaw_width, face_length, eye_spacing: relative shape factors (identity).
    eye_open: 0 = closed lids (blink), 1 = open. mouth_y: vertical mouth offset (units).
    yaw: head turn (radians, small): points move sideways by their depth (an orthographic turn),
    which a 2-D alignment cannot undo, as with real faces."""
    cx = TEMPLATE_BOX[0] / 2
    lm = np.zeros((68, 2))
    # jaw 0-16: half-ellipse from the subject's right ear (image left) over the chin
    drop = JAW_DROP * max(mouth_open, 0.0)
    ax, ay = 40.0 * jaw_width, 51.0 * face_length
    phi = np.pi / 2 - (np.arange(17) - 8) / 8 * 1.75
    lm[0:17, 0] = cx + ax * np.cos(phi)
    lm[0:17, 1] = 40.0 + ay * np.sin(phi)
    lm[0:17, 1] += drop * np.clip(np.sin(phi), 0, None) ** 2  # the chin moves most
    # eyebrows 17-21 (image left), 22-26 mirrored; centres (17, 20) and (58, 20)
    brow = np.array([[7, 22], [12, 19.5], [17, 18.5], [22, 19], [27, 21]], dtype=float)
    lm[17:22] = brow
    lm[22:27] = _mirror(brow)[::-1]
    # nose: bridge 27-30, bottom 31-35; centre (37.5, 40)
    lm[27:31] = [[cx, 26], [cx, 31], [cx, 36], [cx, 41]]
    lm[31:36] = [[32, 44.5], [34.5, 45.5], [cx, 46], [40.5, 45.5], [43, 44.5]]
    # eyes 36-41 (image left), 42-47; lids close with eye_open -> 0
    eye_c = np.array([17.5, 28.0])
    eye_c[0] = cx - (cx - eye_c[0]) * eye_spacing
    lid = 2.5 * float(np.clip(eye_open, 0, 1))
    eye = np.array([[-8.5, 0], [-3, -lid], [3, -lid], [8.5, 0], [3, lid * 0.8], [-3, lid * 0.8]]) + eye_c
    lm[36:42] = eye
    lm[42:48] = _mirror(eye)[[3, 2, 1, 0, 5, 4]]
    # mouth: outer 48-59, inner 60-67; centre line y0, half width hw
    y0, hw = 60.0 + mouth_y, 14.0 * mouth_width
    g = max(mouth_open, 0.0)
    up, lo = y0 - UPPER_LIP_SHARE * g, y0 + (1 - UPPER_LIP_SHARE) * g  # inner lip edges
    lm[48] = [cx - hw, y0]
    lm[49:54] = [[cx - hw * 0.6, up - 2.2], [cx - hw * 0.25, up - 3.2], [cx, up - 2.6],
                 [cx + hw * 0.25, up - 3.2], [cx + hw * 0.6, up - 2.2]]
    lm[54] = [cx + hw, y0]
    lm[55:60] = [[cx + hw * 0.6, lo + 3.0], [cx + hw * 0.25, lo + 3.8], [cx, lo + 4.0],
                 [cx - hw * 0.25, lo + 3.8], [cx - hw * 0.6, lo + 3.0]]
    lm[60] = [cx - hw * 0.8, y0]
    lm[61:64] = [[cx - hw * 0.35, up], [cx, up], [cx + hw * 0.35, up]]
    lm[64] = [cx + hw * 0.8, y0]
    lm[65:68] = [[cx + hw * 0.35, lo], [cx, lo], [cx - hw * 0.35, lo]]
    if yaw:
        lm[:, 0] = cx + (lm[:, 0] - cx) * np.cos(yaw) + _DEPTH * np.sin(yaw)
    return lm


def template_to_pixels(points: np.ndarray, out_size: int = 256) -> np.ndarray:
    """Template units -> pixels of the square aligned crop (the authors' 210x280 warp resized to
    out_size x out_size: anisotropic, as theirs)."""
    scale = np.array([out_size / TEMPLATE_BOX[0], out_size / TEMPLATE_BOX[1]])
    return np.asarray(points, dtype=np.float64) * scale
