"""Face tracks: detections on key frames linked by box IoU within one shot, ranked by size.

One track is followed per shot (never switching people): rank 0 is the largest (the sum of its box
areas over the shot's key frames, so a face present throughout beats a brief larger one).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..config import LandmarksConfig


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4), (M, 4) [x1, y1, x2, y2] -> (N, M) intersection over union."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def link_tracks(keys: list[int], dets: list[np.ndarray], min_iou: float, patience: int = 2) -> list[dict[int, np.ndarray]]:
    """Key frames of one shot (in order) and their (n, >=4) detections -> tracks {key frame: the
    matched detection row}. Each key frame's boxes are matched (Hungarian on IoU; pairs under
    `min_iou` stay unmatched) to the tracks seen on one of the last `patience` key frames, by their
    last box; unmatched boxes start tracks."""
    tracks: list[dict[int, np.ndarray]] = []
    last_seen: list[int] = []  # per track: position in `keys` of its last detection
    for pos, (k, det) in enumerate(zip(keys, dets)):
        det = np.asarray(det, np.float32).reshape(len(det), -1) if len(det) else np.zeros((0, 4), np.float32)  # (n, >=4)
        live = [i for i, p in enumerate(last_seen) if pos - p <= patience]
        matched: dict[int, int] = {}  # detection -> track
        if live and len(det):
            iou = box_iou(np.stack([tracks[i][keys[last_seen[i]]][:4] for i in live]), det[:, :4])  # (live, n)
            rows, cols = linear_sum_assignment(-iou)
            matched = {int(c): live[int(r)] for r, c in zip(rows, cols) if iou[r, c] >= min_iou}
        for j, row in enumerate(det):
            i = matched.get(j)
            if i is None:
                tracks.append({})
                last_seen.append(pos)
                i = len(tracks) - 1
            tracks[i][k] = row
            last_seen[i] = pos
    return tracks


def rank_tracks(tracks: list[dict[int, np.ndarray]]) -> list[dict[int, np.ndarray]]:
    """Largest first: by the sum of the track's box areas."""
    size = [sum(float((b[2] - b[0]) * (b[3] - b[1])) for b in t.values()) for t in tracks]
    return [tracks[i] for i in np.argsort(-np.asarray(size), kind="stable")]


def followed_track(keys: list[int], dets: list[np.ndarray], cfg: LandmarksConfig,
                   patience: int = 2) -> Optional[dict[int, np.ndarray]]:
    """The track one shot follows: the `cfg.face`-th largest (None when the shot has fewer)."""
    tracks = rank_tracks(link_tracks(keys, dets, cfg.track_iou, patience))
    return tracks[cfg.face] if cfg.face < len(tracks) else None
