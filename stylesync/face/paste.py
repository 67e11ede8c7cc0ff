"""Paste a generated aligned face back into its frame (docs/MODELS.md, reference R5).

The prediction is warped back with the inverse of the frame's alignment, and blended with a
feathered mask: the lower-face mask (the region the generator re-creates), eroded and blurred by an
edge width of sqrt(mask area) / 20 like the authors' paste-back, so there is no visible box and the
blend edge moves with the face (no flicker). Outside the warped mask the frame is left exactly as
it was.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from ..config import MaskConfig
from .mask import lower_face_mask


@functools.lru_cache(maxsize=8)
def _blend_mask(crop_size: int, kind: str, top: float, jaw_margin: float, nose_margin: float, feather: float) -> np.ndarray:
    if kind == "crop":
        base = np.ones((crop_size, crop_size), np.float32)
        base[[0, -1], :] = base[:, [0, -1]] = 0
    else:
        base = lower_face_mask(crop_size, MaskConfig(top, jaw_margin, nose_margin, feather)).copy()
    edge = max(1, int(np.sqrt((base > 0.5).sum()) / 20))
    core = cv2.erode((base > 0.5).astype(np.uint8), np.ones((edge, edge), np.uint8)).astype(np.float32)
    soft = cv2.GaussianBlur(core, (2 * edge + 1, 2 * edge + 1), 0) * base
    soft[soft < 1e-3] = 0.0
    soft.setflags(write=False)
    return soft


def blend_mask(crop_size: int, mask_cfg: MaskConfig, kind: str = "lower_face") -> np.ndarray:
    """(crop, crop) float32 in [0, 1]: where and how much of the prediction is pasted."""
    return _blend_mask(crop_size, kind, mask_cfg.top, mask_cfg.jaw_margin, mask_cfg.nose_margin, mask_cfg.feather)


def paste_back(frame: np.ndarray, pred: np.ndarray, affine: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """frame (H, W, 3) uint8, pred (crop, crop, 3) uint8 aligned by `affine` (frame -> crop, 2x3),
    mask (crop, crop) -> the blended frame (a new array)."""
    h, w = frame.shape[:2]
    if pred.shape[0] != mask.shape[0]:
        pred = cv2.resize(pred, mask.shape[::-1], interpolation=cv2.INTER_CUBIC)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    back = cv2.warpAffine(pred, affine, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = cv2.warpAffine(mask, affine, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    out = frame.copy()
    inside = alpha > 0
    a = alpha[inside][:, None]
    out[inside] = np.clip(a * back[inside] + (1 - a) * frame[inside] + 0.5, 0, 255).astype(np.uint8)
    return out
