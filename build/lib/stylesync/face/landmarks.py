"""68-point landmarks per frame: the face-alignment backend (S3FD + 2D-FAN, batched), the dlib backend
(HOG detector + the iBUG 68-point shape predictor, weights from the `face-recognition-models`
package), both detecting every N frames of each shot, one face track followed (face/track.py) with its box
interpolated between; the precomputed sidecar
backend; `auto` (face-alignment when its weights are present, else dlib); per-point temporal smoothing.

A `LandmarkTrack` holds the main face's landmarks (T, 68, 2) in frame pixels (NaN where there is no
face) and how many faces each frame showed (-1 where the detector did not run).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ..config import LandmarksConfig
from ..shots import shot_ranges
from .track import followed_track

log = logging.getLogger(__name__)

FAN_FILE = "2DFAN4-11f355bf06.pth.tar"
S3FD_FILE = "s3fd-619a316812.pth"
DETECT_CHUNK = 64  # key frames handed to the detector at once
DLIB_PREDICTOR = "shape_predictor_68_face_landmarks.dat"  # iBUG 300-W 68 points (non-commercial data terms)


@dataclass
class LandmarkTrack:
    landmarks: np.ndarray  # (T, 68, 2) float32, NaN = no face
    n_faces: np.ndarray  # (T,) int, faces seen (-1: not detected on this frame)
    second_face_ratio: np.ndarray  # (T,) size of the 2nd largest face / the largest (0 if none)
    faces: Optional[np.ndarray] = None  # (T, F, 68, 2) every face of a sidecar (NaN-padded)

    def take(self, idx: np.ndarray) -> "LandmarkTrack":
        faces = None if self.faces is None else self.faces[idx]
        return LandmarkTrack(self.landmarks[idx], self.n_faces[idx], self.second_face_ratio[idx], faces)

    def follow(self, cuts: list[int] | tuple[int, ...], cfg: LandmarksConfig) -> "LandmarkTrack":
        """A sidecar's faces linked into tracks (every frame a key frame; a face may be missing for up
        to 2 x `detect_every` frames), the `cfg.face`-th largest track followed per shot as
        `landmarks` (NaN where it is absent)."""
        if self.faces is None or (self.faces.shape[1] == 1 and cfg.face == 0):
            return self
        valid = np.isfinite(self.faces).all(axis=(2, 3))  # (T, F)
        filled = np.where(valid[..., None, None], self.faces, 0)
        lo, hi = filled.min(axis=2), filled.max(axis=2)  # (T, F, 2) each
        rows = np.concatenate([lo, hi, np.arange(self.faces.shape[1])[None, :, None].repeat(len(lo), 0)], -1)  # (T, F, 5): box, face
        out = np.full_like(self.landmarks, np.nan)
        for a, b in shot_ranges(len(out), cuts):
            keys = list(range(a, b))
            track = followed_track(keys, [rows[t][valid[t]] for t in keys], cfg,
                                   patience=2 * cfg.detect_every)  # as the detectors' box gaps
            for t, row in (track or {}).items():
                out[t] = self.faces[t, int(row[4])]
        return LandmarkTrack(out, self.n_faces, self.second_face_ratio, self.faces)


def face_size(landmarks: np.ndarray) -> np.ndarray:
    """(..., 68, 2) -> (...,) diagonal of the landmarks' bounding box."""
    span = np.nanmax(landmarks, axis=-2) - np.nanmin(landmarks, axis=-2)
    return np.hypot(span[..., 0], span[..., 1])


# ------------------------------------------------------------------------------ precomputed sidecar
def load_sidecar(path: str | os.PathLike) -> LandmarkTrack:
    """A `.landmarks.npy` sidecar: (T, 68, 2) for one face or (T, F, 68, 2) for several (NaN-padded).
    `landmarks` holds each frame's largest face until `LandmarkTrack.follow` picks one track."""
    from ..storage import local_file

    with local_file(path) as p:
        arr = np.load(p, allow_pickle=False).astype(np.float32)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[2:] != (68, 2):
        raise ValueError(f"{path}: landmarks must be (T, 68, 2) or (T, F, 68, 2), got {arr.shape}")
    valid = np.isfinite(arr).all(axis=(2, 3))  # (T, F)
    sizes = np.where(valid, face_size(np.where(valid[..., None, None], arr, 0)), 0.0)  # (T, F)
    order = np.argsort(-sizes, axis=1)
    main = np.take_along_axis(arr, order[:, :1, None, None], axis=1)[:, 0]  # (T, 68, 2)
    main[~valid.any(axis=1)] = np.nan
    s_sorted = np.take_along_axis(sizes, order, axis=1)
    ratio = s_sorted[:, 1] / np.maximum(s_sorted[:, 0], 1e-6) if arr.shape[1] > 1 else np.zeros(len(arr))
    return LandmarkTrack(main, valid.sum(1).astype(np.int64), ratio.astype(np.float32), arr)


# ------------------------------------------------------------------------------ face-alignment
def fan_weights_dir(cfg: LandmarksConfig) -> Path:
    """Where face-alignment looks for its files: `<TORCH_HOME>/hub/checkpoints`."""
    import torch

    home = Path(cfg.weights_dir) if cfg.weights_dir else Path(torch.hub.get_dir()).parent
    return home / "hub" / "checkpoints"


class KeyframeLandmarks:
    """A detector on every `detect_every`-th frame of each shot (and its last), detections linked
    into face tracks by IoU, one track followed per shot (`cfg.face`: its size rank, 0 = the
    largest) with its box interpolated between key frames, then the landmark model on every frame's
    box. Frames where the followed face is lost get NaN. Subclasses give `detect` (frames -> per
    frame (n, 5) boxes + scores) and `landmarks_from_boxes`."""

    name = ""
    cfg: LandmarksConfig

    def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def landmarks_from_boxes(self, frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, frames: np.ndarray, cuts: list[int] | tuple[int, ...] = ()) -> LandmarkTrack:
        t_total = len(frames)
        shots = shot_ranges(t_total, cuts)
        shot_keys = [sorted(set(range(a, b, self.cfg.detect_every)) | {b - 1}) for a, b in shots]
        keys = [k for ks in shot_keys for k in ks]
        dets = {}
        for i in range(0, len(keys), DETECT_CHUNK):  # bounded memory: frames may be decoded on demand
            dets.update(zip(keys[i : i + DETECT_CHUNK], self.detect(frames[keys[i : i + DETECT_CHUNK]])))
        n_faces = np.full(t_total, -1, np.int64)
        ratio = np.zeros(t_total, np.float32)
        for k, boxes in dets.items():
            n_faces[k] = len(boxes)
            if len(boxes) > 1:
                area = np.sort((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[::-1]
                ratio[k] = np.sqrt(area[1] / max(area[0], 1e-6))
        boxes = np.full((t_total, 4), np.nan, np.float32)  # the followed face's box per frame
        for (a, b), ks in zip(shots, shot_keys):
            track = followed_track(ks, [dets[k] for k in ks], self.cfg)
            if track is not None:
                boxes[a:b] = interpolate_boxes({k - a: row[:4] for k, row in track.items()}, b - a,
                                               max_gap=2 * self.cfg.detect_every)
        return LandmarkTrack(self.landmarks_from_boxes(frames, boxes), n_faces, ratio)


class FaceAlignmentLandmarks(KeyframeLandmarks):
    """face-alignment's S3FD + 2D-FAN, batched over frames; FAN runs on batches of face crops made
    with face-alignment's own crop / heatmap decoding. Weights are read from `fan_weights_dir`; with
    `allow_download: false` (default) a missing file is an error that says where to put it."""

    name = "face_alignment"

    def __init__(self, cfg: LandmarksConfig, device: str = "cpu"):
        import torch
        import face_alignment

        self.cfg = cfg
        ckpt = fan_weights_dir(cfg)
        missing = [f for f in (FAN_FILE, S3FD_FILE) if not (ckpt / f).exists()]
        if missing and not cfg.allow_download:
            raise FileNotFoundError(
                f"face-alignment weights missing in {ckpt}: {', '.join(missing)}. Put the files there "
                f"(from face_alignment.api.models_urls / the S3FD URL), set landmarks.weights_dir, or set "
                f"landmarks.allow_download: true to let face-alignment download them.")
        if cfg.weights_dir:
            torch.hub.set_dir(str(Path(cfg.weights_dir) / "hub"))
        self.device = device
        self.fa = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D, device=device, flip_input=False, compile=False,
            face_detector="sfd", face_detector_kwargs={"filter_threshold": cfg.filter_threshold})
        self.torch = torch

    def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        """S3FD on (K, H, W, 3) frames in batches -> per frame an (n, 5) array of boxes + scores."""
        out = []
        for i in range(0, len(frames), self.cfg.batch_size):
            batch = self.torch.from_numpy(np.ascontiguousarray(frames[i : i + self.cfg.batch_size])).permute(0, 3, 1, 2)
            for boxes in self.fa.face_detector.detect_from_batch(batch.float().to(self.device)):
                out.append(np.asarray(boxes, np.float32).reshape(-1, 5))
        return out

    def landmarks_from_boxes(self, frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """2D-FAN on face boxes (T, 4) [x1, y1, x2, y2] (NaN = skip), batched over frames, with
        face-alignment's own crop and heatmap decoding. -> (T, 68, 2) frame pixels."""
        from face_alignment.utils import CENTER_Y_OFFSET, crop, get_preds_fromhm

        landmarks = np.full((len(frames), 68, 2), np.nan, np.float32)
        todo = [t for t in range(len(frames)) if np.isfinite(boxes[t]).all()]
        ref = self.fa.face_detector.reference_scale
        for i in range(0, len(todo), self.cfg.batch_size):
            chunk = todo[i : i + self.cfg.batch_size]
            centers, scales, crops = [], [], []
            for t in chunk:
                x1, y1, x2, y2 = (float(v) for v in boxes[t])
                center = np.array([(x1 + x2) / 2, (y1 + y2) / 2 - (y2 - y1) * CENTER_Y_OFFSET])
                scale = (x2 - x1 + y2 - y1) / ref
                centers.append(center)
                scales.append(scale)
                crops.append(crop(frames[t], center, scale).transpose(2, 0, 1).astype(np.float32) / 255.0)
            with self.torch.no_grad():
                hm = self.fa.face_alignment_net(self.torch.from_numpy(np.stack(crops)).to(self.device))
            hm = (hm[-1] if isinstance(hm, list) else hm).float().cpu().numpy()
            for j, t in enumerate(chunk):
                _, pts_img, _ = get_preds_fromhm(hm[j : j + 1], centers[j], scales[j])
                landmarks[t] = pts_img.reshape(68, 2)
        return landmarks


def dlib_predictor_path(cfg: LandmarksConfig) -> Path:
    """`landmarks.dlib_predictor`, else the file shipped by the `face-recognition-models` package
    (located without importing it: its __init__ needs pkg_resources)."""
    if cfg.dlib_predictor:
        path = Path(cfg.dlib_predictor)
        if not path.exists():
            raise FileNotFoundError(f"landmarks.dlib_predictor = {path} does not exist")
        return path
    return packaged_dlib_model(DLIB_PREDICTOR, "the dlib landmark backend", "pip install face-recognition-models (or "
                               f"set landmarks.dlib_predictor, e.g. Debian's /usr/share/dlib/{DLIB_PREDICTOR})")


def packaged_dlib_model(name: str, needed_by: str, install: str) -> Path:
    """A model file of the `face-recognition-models` package, located without importing it (its
    __init__ needs the removed pkg_resources); a missing package or file names `install`."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{needed_by} needs {name} of the face-recognition-models package: {install}")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing (a broken face-recognition-models install?): {install}")
    return path


class DlibLandmarks(KeyframeLandmarks):
    """dlib's HOG face detector (`dlib_upsample` times upsampled) on key frames and its 68-point shape
    predictor (iBUG 300-W order = face-alignment's) on every frame's box. CPU; needs `dlib-bin`."""

    name = "dlib"

    def __init__(self, cfg: LandmarksConfig, device: str = "cpu"):
        try:
            import dlib
        except ImportError as e:
            raise ImportError("the dlib landmark backend needs dlib: pip install dlib-bin (a wheel; not PyPI's "
                              "`dlib`, a long source build)") from e
        self.cfg, self.dlib = cfg, dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(dlib_predictor_path(cfg)))

    def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        out = []
        for f in frames:
            rects, scores, _ = self.detector.run(np.ascontiguousarray(f), self.cfg.dlib_upsample, 0.0)
            out.append(np.asarray([[r.left(), r.top(), r.right(), r.bottom(), s] for r, s in zip(rects, scores)],
                                  np.float32).reshape(-1, 5))
        return out

    def landmarks_from_boxes(self, frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        landmarks = np.full((len(frames), 68, 2), np.nan, np.float32)
        for t in range(len(frames)):
            if np.isfinite(boxes[t]).all():
                x1, y1, x2, y2 = (int(round(float(v))) for v in boxes[t])
                shape = self.predictor(np.ascontiguousarray(frames[t]), self.dlib.rectangle(x1, y1, x2, y2))
                landmarks[t] = [(p.x, p.y) for p in shape.parts()]
        return landmarks


def resolve_backend(cfg: LandmarksConfig) -> str:
    """The detector `cfg.backend` stands for: `auto` is face_alignment when its weights are in
    place (or may be downloaded), else dlib."""
    if cfg.backend != "auto":
        return str(cfg.backend.value if hasattr(cfg.backend, "value") else cfg.backend)
    fan = cfg.allow_download or all((fan_weights_dir(cfg) / f).exists() for f in (FAN_FILE, S3FD_FILE))
    return "face_alignment" if fan else "dlib"


def make_landmarker(cfg: LandmarksConfig, device: str = "cpu") -> KeyframeLandmarks:
    """The detector + landmark model of `cfg.backend` (face_alignment | dlib | auto)."""
    backend = resolve_backend(cfg)
    if backend == "face_alignment":
        return FaceAlignmentLandmarks(cfg, device)
    if backend == "dlib":
        return DlibLandmarks(cfg, device)
    raise ValueError(f"landmarks.backend {cfg.backend!r} detects nothing (precomputed reads sidecar files)")


def interpolate_boxes(key_boxes: dict[int, np.ndarray], n: int, max_gap: int) -> np.ndarray:
    """Boxes detected at key frames -> a box for every frame, linearly interpolated between key
    frames no more than `max_gap` apart; NaN elsewhere. (n, 4)"""
    out = np.full((n, 4), np.nan, np.float32)
    keys = sorted(key_boxes)
    for k in keys:
        out[k] = key_boxes[k]
    for a, b in zip(keys, keys[1:]):
        if b - a <= max_gap:
            w = (np.arange(a + 1, b) - a) / (b - a)
            out[a + 1 : b] = (1 - w)[:, None] * key_boxes[a] + w[:, None] * key_boxes[b]
    return out


# ------------------------------------------------------------------------------ smoothing
def smooth_landmarks(landmarks: np.ndarray, sigma: float, max_gap: int = 3,
                     cuts: list[int] | tuple[int, ...] = ()) -> np.ndarray:
    """Per-point temporal Gaussian smoothing over runs of valid frames, each shot on its own (never
    across a cut); gaps of up to `max_gap` frames are filled by linear interpolation first, longer
    gaps stay NaN. (T, 68, 2) -> same."""
    if cuts:
        return np.concatenate([smooth_landmarks(landmarks[a:b], sigma, max_gap)
                               for a, b in shot_ranges(len(landmarks), cuts)])
    lm = np.array(landmarks, dtype=np.float64)
    valid = np.isfinite(lm).all(axis=(1, 2))
    if not valid.any():
        return lm.astype(np.float32)
    idx = np.flatnonzero(valid)
    filled = valid.copy()
    for a, b in zip(idx, idx[1:]):
        if 1 < b - a <= max_gap + 1:
            w = (np.arange(a + 1, b) - a) / (b - a)
            lm[a + 1 : b] = (1 - w)[:, None, None] * lm[a] + w[:, None, None] * lm[b]
            filled[a + 1 : b] = True
    if sigma > 0:
        # smooth each run of consecutive valid frames on its own (no smearing across long gaps)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], filled.astype(np.int8), [0]])))
        for start, stop in zip(edges[::2], edges[1::2]):
            lm[start:stop] = gaussian_filter1d(lm[start:stop], sigma, axis=0, mode="nearest")
    return lm.astype(np.float32)
