"""Similarity alignment of faces to the template (docs/MODELS.md, reference R5) and its inverse.

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


def similarities(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarities for a batch: (T, N, 2) points -> (T, 2, 3), each mapping src[t] onto
    `dst` (N, 2). Umeyama's closed form (as scikit-image's `SimilarityTransform`, which `similarity`
    uses for one), vectorised over frames; frames with NaN points or coincident points get NaN."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(axis=1), dst.mean(axis=0)  # (T, 2), (2,)
    s_c, d_c = src - mu_s[:, None], dst - mu_d  # (T, N, 2), (N, 2)
    cov = np.einsum("ni,tnj->tij", d_c, s_c) / src.shape[1]  # (T, 2, 2): dst^T src
    var = (s_c ** 2).sum(axis=(1, 2)) / src.shape[1]  # (T,)
    ok = np.isfinite(cov).all(axis=(1, 2)) & (var > 1e-12)
    cov[~ok] = np.eye(2)
    u, sv, vt = np.linalg.svd(cov)  # (T, 2, 2), (T, 2), (T, 2, 2)
    d = np.where(np.linalg.det(u) * np.linalg.det(vt) < 0, -1.0, 1.0)  # reflection guard
    u[:, :, 1] *= d[:, None]
    rot = u @ vt  # (T, 2, 2)
    scale = (sv[:, 0] + d * sv[:, 1]) / np.where(ok, var, 1.0)  # (T,)
    out = np.empty((len(src), 2, 3))
    out[:, :, :2] = scale[:, None, None] * rot
    out[:, :, 2] = mu_d - np.einsum("tij,tj->ti", out[:, :, :2], mu_s)
    out[~ok] = np.nan
    return out


def alignment_matrices(landmarks: np.ndarray, template: np.ndarray, crop_size: int) -> np.ndarray:
    """(T, 68, 2) frame landmarks -> (T, 2, 3) affines, frame pixels -> crop pixels.
    Frames whose landmarks are missing (NaN) get NaN matrices."""
    return crop_scale(crop_size) @ similarities(alignment_points(landmarks), template)  # frame -> template -> crop


def warp_faces(frames: np.ndarray, mats: np.ndarray, crop_size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 + (T, 2, 3) -> aligned crops (T, crop, crop, 3); border replicated."""
    out = np.empty((len(frames), crop_size, crop_size, 3), np.uint8)
    for t, (img, m) in enumerate(zip(frames, mats)):
        cv2.warpAffine(img, m, (crop_size, crop_size), dst=out[t], flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)  # written in place
    return out


def transform_points(points: np.ndarray, mats: np.ndarray) -> np.ndarray:
    """(T, N, 2) points and (T, 2, 3) affines -> (T, N, 2)."""
    return np.einsum("tij,tnj->tni", mats[:, :, :2], points) + mats[:, None, :, 2]


def invert_affines(mats: np.ndarray) -> np.ndarray:
    """(T, 2, 3) -> (T, 2, 3) inverse affines."""
    full = np.concatenate([mats, np.tile([[[0.0, 0.0, 1.0]]], (len(mats), 1, 1))], axis=1)
    return np.linalg.inv(full)[:, :2]
