"""Shot boundaries (scene cuts) in decoded frames, with PySceneDetect's detectors.

A cut is the index of the first frame of a new shot. Clips never span a cut: preprocessing keeps
one shot of a clip, inference re-detects faces after every cut and smooths landmarks per shot.
"""
from __future__ import annotations

import numpy as np

from .config import ScenesConfig


def detect_cuts(frames: np.ndarray, cfg: ScenesConfig, fps: float = 25.0) -> list[int]:
    """(T, H, W, 3) RGB uint8 -> sorted frame indices where a new shot starts (0 never listed)."""
    detector = str(getattr(cfg.detector, "value", cfg.detector))
    if detector == "none" or len(frames) < 2:
        return []
    from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode

    if detector == "content":
        det = ContentDetector(threshold=cfg.threshold, min_scene_len=cfg.min_shot_frames)
    else:
        det = AdaptiveDetector(adaptive_threshold=cfg.threshold, min_scene_len=cfg.min_shot_frames)
    cuts = []
    for t, frame in enumerate(frames):
        cuts += det.process_frame(FrameTimecode(t, fps=fps), np.ascontiguousarray(frame[..., ::-1]))  # BGR
    cuts += det.post_process(FrameTimecode(len(frames) - 1, fps=fps))
    return sorted({int(c.frame_num) for c in cuts} - {0})


def shot_ranges(n: int, cuts: list[int] | tuple[int, ...]) -> list[tuple[int, int]]:
    """[start, stop) of every shot of n frames split at `cuts`."""
    edges = [0, *[c for c in sorted(cuts) if 0 < c < n], n]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]
