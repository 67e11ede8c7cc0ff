"""The fixed lower-face U-shaped mask M (paper Sec. 3, Fig. 2), built from the template landmarks.

A polygon in template units: the jaw line (points 1-15) pushed outward by `jaw_margin`, closed at
`top` across the cheeks with a notch that keeps the nose (points 31-35 plus `nose_margin`).
Rasterised anti-aliased and feathered; values are exactly 1 well inside and exactly 0 well outside.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np
import torch

from ..config import MaskConfig
from .template import canonical_landmarks, template_to_pixels

SUPERSAMPLE = 4


def mask_polygon(cfg: MaskConfig) -> np.ndarray:
    """(P, 2) polygon in template units (x right, y down)."""
    lm = canonical_landmarks()
    centre = np.array([37.5, 40.0])
    jaw = lm[0:17]
    out = jaw - centre
    jaw = centre + out * (1 + cfg.jaw_margin / np.linalg.norm(out, axis=1, keepdims=True))
    jaw = jaw[jaw[:, 1] > cfg.top]
    nose_l = lm[31, 0] - cfg.nose_margin
    nose_r = lm[35, 0] + cfg.nose_margin
    nose_b = lm[31:36, 1].max() + cfg.nose_margin
    left_edge = np.array([[jaw[0, 0], cfg.top]])
    right_edge = np.array([[jaw[-1, 0], cfg.top]])
    notch = np.array([[nose_r, cfg.top], [nose_r, nose_b], [nose_l, nose_b], [nose_l, cfg.top]])
    return np.concatenate([left_edge, jaw, right_edge, notch])


@functools.lru_cache(maxsize=16)
def _lower_face_mask(size: int, top: float, jaw_margin: float, nose_margin: float, feather: float) -> np.ndarray:
    cfg = MaskConfig(top=top, jaw_margin=jaw_margin, nose_margin=nose_margin, feather=feather)
    big = size * SUPERSAMPLE
    poly = template_to_pixels(mask_polygon(cfg), big)
    canvas = np.zeros((big, big), np.uint8)
    cv2.fillPoly(canvas, [np.round(poly * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
    m = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    sigma = feather * size / 256.0
    if sigma > 0:
        m = cv2.GaussianBlur(m, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)
    m[m > 0.999] = 1.0
    m[m < 0.001] = 0.0
    m.setflags(write=False)
    return m


def lower_face_mask(size: int, cfg: MaskConfig | None = None) -> np.ndarray:
    """(size, size) float32 in [0, 1]; 1 = the region the generator must re-create (read-only)."""
    cfg = cfg or MaskConfig()
    return _lower_face_mask(size, cfg.top, cfg.jaw_margin, cfg.nose_margin, cfg.feather)


def mask_tensor(size: int, cfg: MaskConfig, device: torch.device | str = "cpu") -> torch.Tensor:
    """The mask at the model size as a tensor: (1, 1, S, S) float32, 1 = generated region."""
    return torch.from_numpy(lower_face_mask(size, cfg).copy()).reshape(1, 1, size, size).to(device)
