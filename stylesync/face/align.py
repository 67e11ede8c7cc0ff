"""Similarity alignment of faces to the template (STYLESYNC.md section 5) and its inverse.

Per frame: the mean of each eyebrow and of the nose (landmarks 17:22, 22:27, 27:36) are mapped by a
least-squares similarity transform onto the template points (in template units: the 75 x 100 unit
crop), then scaled to the square `crop_size` crop. The authors warp to 210x280 and resize to 256x256;
we compose both into one affine and warp once (one interpolation instead of two).
"""
from __future__ import annotations

import cv2
import numpy as np
from skimage.transform import SimilarityTransform

from .template import TEMPLATE_BOX, alignment_points


def crop_scale(crop_size: int) -> np.ndarray:
    """Template units -> crop pixels (anisotropic, as the authors' 210x280 -> 256x256 resize)."""
    return np.diag([crop_size / TEMPLATE_BOX[0], crop_size / TEMPLATE_BOX[1]])


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) src -> dst as a 2x3 matrix."""
    tf = SimilarityTransform.from_estimate(np.asarray(src, np.float64), np.asarray(dst, np.float64))
    if not tf:
        raise ValueError("degenerate alignment points")
    return tf.params[:2]


def alignment_matrices(landmarks: np.ndarray, template: np.ndarray, crop_size: int) -> np.ndarray:
    """(T, 68, 2) frame landmarks -> (T, 2, 3) affines, frame pixels -> crop pixels.
    Frames whose landmarks are missing (NaN) get NaN matrices."""
    pts = alignment_points(landmarks)  # (T, 3, 2)
    scale = crop_scale(crop_size)
    out = np.full((len(pts), 2, 3), np.nan)
    for t, p in enumerate(pts):
        if np.isfinite(p).all():
            m = similarity(p, template)  # frame -> template units
            out[t] = scale @ m  # -> crop pixels
    return out


def warp_faces(frames: np.ndarray, mats: np.ndarray, crop_size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 + (T, 2, 3) -> aligned crops (T, crop, crop, 3); border replicated."""
    out = np.empty((len(frames), crop_size, crop_size, 3), np.uint8)
    for t, (img, m) in enumerate(zip(frames, mats)):
        out[t] = cv2.warpAffine(img, m, (crop_size, crop_size), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
    return out


def transform_points(points: np.ndarray, mats: np.ndarray) -> np.ndarray:
    """(T, N, 2) points and (T, 2, 3) affines -> (T, N, 2)."""
    return np.einsum("tij,tnj->tni", mats[:, :, :2], points) + mats[:, None, :, 2]


def invert_affines(mats: np.ndarray) -> np.ndarray:
    """(T, 2, 3) -> (T, 2, 3) inverse affines."""
    full = np.concatenate([mats, np.tile([[[0.0, 0.0, 1.0]]], (len(mats), 1, 1))], axis=1)
    return np.linalg.inv(full)[:, :2]
