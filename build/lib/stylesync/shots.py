"""Shot boundaries (scene cuts) in decoded frames, with PySceneDetect's detectors.

A cut is the index of the first frame of a new shot. Clips never span a cut: preprocessing keeps
one shot of a clip, inference re-detects faces after every cut and smooths landmarks per shot.
"""
from __future__ import annotations

import cv2
import numpy as np

from .config import ScenesConfig


CHUNK = 64  # frames converted for the detector at once


def detect_cuts(frames: np.ndarray, cfg: ScenesConfig, fps: float = 25.0) -> list[int]:
    """(T, H, W, 3) RGB uint8 (an array or video.LazyFrames) -> sorted frame indices where a new shot
    starts (0 never listed)."""
    detector = str(getattr(cfg.detector, "value", cfg.detector))
    if detector == "none" or len(frames) < 2:
        return []
    from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode

    if detector == "content":
        det = ContentDetector(threshold=cfg.threshold, min_scene_len=cfg.min_shot_frames)
    else:
        det = AdaptiveDetector(adaptive_threshold=cfg.threshold, min_scene_len=cfg.min_shot_frames)
    cuts = []
    for a in range(0, len(frames), CHUNK):  # bounded memory: frames may be decoded on demand
        for t, frame in enumerate(detector_frames(frames[a : a + CHUNK], cfg.downscale), start=a):
            cuts += det.process_frame(FrameTimecode(t, fps=fps), frame)
    cuts += det.post_process(FrameTimecode(len(frames) - 1, fps=fps))
    return sorted({int(c.frame_num) for c in cuts} - {0})


def detector_frames(frames: np.ndarray, downscale: int) -> np.ndarray:
    """(T, H, W, 3) RGB -> (T, H // d, W // d, 3) BGR, box-averaged by `downscale` = d (one OpenCV call
    for the whole clip: the frames are stacked rows, and d x d boxes never straddle two frames)."""
    t, h, w, _ = frames.shape
    d = max(1, int(downscale))
    h, w = h // d * d, w // d * d
    rows = np.ascontiguousarray(frames[:, :h, :w]).reshape(t * h, w, 3)  # (T*H, W, 3)
    if d > 1:
        rows = cv2.resize(rows, (w // d, t * h // d), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(rows, cv2.COLOR_RGB2BGR).reshape(t, h // d, w // d, 3)


def shot_ranges(n: int, cuts: list[int] | tuple[int, ...]) -> list[tuple[int, int]]:
    """[start, stop) of every shot of n frames split at `cuts`."""
    edges = [0, *[c for c in sorted(cuts) if 0 < c < n], n]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]
