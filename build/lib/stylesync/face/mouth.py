"""How far the mouth is open, from 68-point landmarks (iBUG order).

Two readings of the inner-lip gap |p62 - p66| (the middle points of the inner upper and lower lip):
- `lip_gap`: in template units, from the aligned crop's landmarks (the shards' `landmarks.npy`);
  the loaders compare windows by it (mouth-aware sampling, docs/ARCHITECTURE.md);
- `opening_ratio`: over the outer-eye-corner distance |p36 - p45| of the same frame, scale-free, so
  that any video's landmarks (a real speaker's from dlib, the synthetic corpus's own) compare;
  `opening_stats` summarises it (the corpus calibration, docs/MODELS.md "The synthetic corpus").
"""
from __future__ import annotations

import numpy as np

from .template import TEMPLATE_BOX

INNER_TOP, INNER_BOTTOM = 62, 66
EYE_OUTER = (36, 45)
CLOSED_RATIO = 0.03  # opening ratio under which a frame counts as closed (~1.7 template units)


def lip_gap(landmarks: np.ndarray, crop_size: int) -> np.ndarray:
    """(T, 68, 2) crop-pixel landmarks -> (T,) inner-lip gap in template units (the crop is
    TEMPLATE_BOX[1] = 100 units high)."""
    lm = np.asarray(landmarks, np.float64)
    return np.linalg.norm(lm[:, INNER_TOP] - lm[:, INNER_BOTTOM], axis=1) * TEMPLATE_BOX[1] / crop_size


def opening_ratio(landmarks: np.ndarray) -> np.ndarray:
    """(T, 68, 2) landmarks in any pixel frame -> (T,) inner-lip gap / outer-eye-corner distance."""
    lm = np.asarray(landmarks, np.float64)
    gap = np.linalg.norm(lm[:, INNER_TOP] - lm[:, INNER_BOTTOM], axis=1)
    return gap / np.linalg.norm(lm[:, EYE_OUTER[0]] - lm[:, EYE_OUTER[1]], axis=1)


def opening_stats(ratio: np.ndarray) -> dict[str, float]:
    """Summary of (N,) opening ratios: median, p90, max, std and the share of closed frames."""
    r = np.asarray(ratio, np.float64)
    r = r[np.isfinite(r)]
    return {"median": float(np.median(r)), "p90": float(np.percentile(r, 90)), "max": float(r.max()),
            "std": float(r.std()), "closed_share": float((r < CLOSED_RATIO).mean()), "frames": int(len(r))}


def profile_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Lip-gap profiles (..., T) of two windows -> (...,) the largest per-frame difference (units)."""
    return np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max(-1)
