"""Paste a generated aligned face back into its frame (docs/MODELS.md, reference R5).

The prediction is warped back with the inverse of the frame's alignment and blended with a
feathered mask. `infer.paste` picks the mask:

- `face` (default): the lower-face band (`lower_face` below: where the generator re-creates the face) times
  the frame's own face contour: the jaw line (landmarks 0-16) closed over the brows, in crop
  coordinates, feathered inwards by a Gaussian whose width is `infer.paste_feather` x the face size.
  Only the face is pasted: the neck below the chin and the background beside the cheeks stay the
  frame's, however the generator paints them (a model that never saw them paints a grey box).
- `lower_face`: the band alone, the fixed U mask of template space, eroded and blurred by an edge
  width of sqrt(mask area) / 20 like the authors' paste-back.
- `crop`: the whole aligned crop.

Outside the (warped) mask the frame is left exactly as it was. `match_colour` optionally shifts the
prediction's colours (mean and std per channel) to the frame's on the blend's transition ring.
"""
from __future__ import annotations

import functools
from typing import Optional

import cv2
import numpy as np

from ..config import InferConfig, MaskConfig
from .mask import lower_face_mask

JAW = slice(0, 17)  # iBUG 68: the jaw line, from the image-left ear over the chin to the right ear
BROW_ENDS = [26, 17]  # outer brow ends, closing the contour above the nose (right to left)
SUBPIXEL = 4  # fillPoly fractional bits


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
    """(crop, crop) float32 in [0, 1]: where and how much of the prediction is pasted. For `kind`
    "face" this is the band that `face_blend_mask` cuts to each frame's face (the lower-face mask)."""
    return _blend_mask(crop_size, "crop" if kind == "crop" else "lower_face", mask_cfg.top, mask_cfg.jaw_margin,
                       mask_cfg.nose_margin, mask_cfg.feather)


def landmarks_to_crop(lm: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """lm (68, 2) in frame pixels, affine (2, 3) frame -> crop: the points in crop pixels (68, 2)."""
    lm = np.asarray(lm, np.float64)
    affine = np.asarray(affine, np.float64)
    return lm @ affine[:, :2].T + affine[:, 2]


def face_contour(lm_crop: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """(19, 2) polygon: the jaw line (0-16) then the outer brow ends (26, 17), in the coordinates of
    `lm_crop` (68, 2). margin: the jaw points moved away from the nose centre (mean of 27-35) by this
    fraction of the face size (sqrt of the polygon's area); < 0 moves them inwards."""
    lm_crop = np.asarray(lm_crop, np.float64)
    poly = np.concatenate([lm_crop[JAW], lm_crop[BROW_ENDS]])  # (19, 2)
    if margin:
        centre = lm_crop[27:36].mean(0)  # (2,)
        out = poly[:17] - centre  # (17, 2)
        norm = np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
        poly[:17] = centre + out * (1 + margin * polygon_area(poly) ** 0.5 / norm)
    return poly


def polygon_area(poly: np.ndarray) -> float:
    """Area of a simple polygon (P, 2) (shoelace)."""
    x, y = poly[:, 0], poly[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def face_blend_mask(band: np.ndarray, lm_crop: np.ndarray, feather: float = 0.03, margin: float = 0.0) -> np.ndarray:
    """(crop, crop) float32 in [0, 1]: `band` (crop, crop) times the feathered face contour of
    `lm_crop` (68, 2, crop pixels; `face_contour(lm_crop, margin)`).

    The contour is eroded by 2.5 sigma and blurred by a Gaussian of sigma = feather x the face size
    (sqrt of the contour's area), so the blend is exactly 0 outside the contour, rises monotonically
    inwards and reaches 1 about 5 sigma inside."""
    h, w = band.shape
    poly = face_contour(lm_crop, margin)  # (19, 2)
    size = polygon_area(poly) ** 0.5
    if not np.isfinite(poly).all() or size < 1.0:
        return np.zeros_like(band, np.float32)
    inside = np.zeros((h, w), np.uint8)
    cv2.fillPoly(inside, [np.round(poly * (1 << SUBPIXEL)).astype(np.int32)], 255, cv2.LINE_AA, SUBPIXEL)
    sigma = max(feather * size, 0.5)
    r = int(np.ceil(2.5 * sigma))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    core = cv2.erode(inside, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)  # the crop's edge is outside
    soft = cv2.GaussianBlur(core.astype(np.float32) / 255, (0, 0), sigmaX=sigma, sigmaY=sigma,
                            borderType=cv2.BORDER_CONSTANT)
    soft *= inside.astype(np.float32) / 255  # exactly 0 outside the contour
    soft[soft > 0.999] = 1.0
    out = soft * band  # (crop, crop), never above the band
    out[out < 1e-3] = 0.0
    return out.astype(np.float32)


def paste_mask(band: np.ndarray, lm: Optional[np.ndarray], affine: np.ndarray, cfg: InferConfig) -> np.ndarray:
    """The blend mask (crop, crop) of one frame: with `cfg.paste` "face", `band` (`blend_mask` of the
    face config) cut to the face contour of the frame's landmarks `lm` (68, 2, frame pixels; `affine`
    (2, 3) frame -> crop); `band` itself for the other kinds and where `lm` or `affine` is not finite."""
    if cfg.paste != "face" or lm is None or not (np.isfinite(lm).all() and np.isfinite(affine).all()):
        return band
    return face_blend_mask(band, landmarks_to_crop(lm, affine), cfg.paste_feather, cfg.paste_margin)


def match_colour(pred: np.ndarray, crop: np.ndarray, mask: np.ndarray, max_gain: float = 2.0) -> np.ndarray:
    """pred (S, S, 3) uint8 with each channel's mean and std set to the frame's on the blend's
    transition ring (0 < mask < 1, weighted by how evenly the two are mixed there), where the two
    meet. crop (C, C, 3) uint8: the frame's aligned crop; mask (C, C). Returns (C, C, 3) uint8 (pred
    resized to the mask's size); pred unchanged (resized) where the ring is empty. The std ratio is
    clipped to [1 / max_gain, max_gain]."""
    c = mask.shape[0]
    if pred.shape[0] != c:
        pred = cv2.resize(pred, (c, c), interpolation=cv2.INTER_CUBIC)
    if crop.shape[0] != c:
        crop = cv2.resize(crop, (c, c), interpolation=cv2.INTER_AREA)
    wgt = (mask * (1 - mask)).astype(np.float64)  # (C, C): 0 outside and in the core, most at 0.5
    total = wgt.sum()
    if total < 1e-6:
        return pred
    wgt = (wgt / total)[..., None]  # (C, C, 1)
    p, f = pred.astype(np.float64), crop.astype(np.float64)  # (C, C, 3)
    mp, mf = (wgt * p).sum((0, 1)), (wgt * f).sum((0, 1))  # (3,)
    sp = np.sqrt((wgt * (p - mp) ** 2).sum((0, 1)))
    sf = np.sqrt((wgt * (f - mf) ** 2).sum((0, 1)))
    gain = np.clip(sf / np.maximum(sp, 1e-6), 1 / max_gain, max_gain)
    return np.clip((p - mp) * gain + mf + 0.5, 0, 255).astype(np.uint8)


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
