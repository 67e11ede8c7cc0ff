"""Per-clip preprocessing, as pure functions (testable without Ray):

    decode -> 25 fps -> 16 kHz mono audio aligned to frame 0 -> shot cuts -> landmarks (one face
    track per shot) -> quality gates -> temporal smoothing per shot -> the longest run of frames with
    the face inside one shot (a clip never spans a cut) -> similarity alignment -> crops + affines + aligned landmarks ->
    [GPEN cleanup] -> Wav2Lip mel -> one shard sample

Each stage either returns the clip state for the next one or raises `ClipRejected(stage, reason,
detail)`; `process_clip` runs them all and returns a `ClipResult` (sample or failure).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from ..audio import SAMPLE_RATE, melspectrogram
from ..config import PreprocessConfig, config_hash
from ..shots import detect_cuts, shot_ranges
from ..face.align import alignment_matrices, transform_points, warp_faces
from ..face.landmarks import LandmarkTrack, face_size, load_sidecar, smooth_landmarks
from ..video import TARGET_FPS, MediaError, align_audio, audio_start_offset, read_audio, read_video, resample_indices
from .sample import encode_sample, sample_key

log = logging.getLogger(__name__)


class ClipRejected(Exception):
    def __init__(self, stage: str, reason: str, detail: str = ""):
        super().__init__(f"{stage}: {reason}: {detail}")
        self.stage, self.reason, self.detail = stage, reason, detail


@dataclass
class Clip:
    """State of a clip between stages."""

    row: dict  # the manifest row
    frames: np.ndarray  # (T, H, W, 3) uint8 at 25 fps
    audio: np.ndarray  # (N,) float32 at 16 kHz, sample 0 = frame 0
    source_fps: float
    source_index: np.ndarray  # (T,) source frame of every 25-fps frame
    cuts: list[int] = field(default_factory=list)  # first frames of the shots after the first
    track: Optional[LandmarkTrack] = None
    crops: Optional[np.ndarray] = None  # (T, S, S, 3)
    affine: Optional[np.ndarray] = None  # (T, 2, 3)
    aligned_landmarks: Optional[np.ndarray] = None  # (T, 68, 2)
    info: dict = field(default_factory=dict)


@dataclass
class ClipResult:
    clip_id: str
    key: str
    sample: Optional[dict] = None  # field -> bytes
    failure: Optional[dict] = None  # {clip_id, stage, reason, detail}
    stats: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------ stages
def stage_decode(row: dict, cfg: PreprocessConfig) -> Clip:
    """Decode video + audio, re-time to exactly `TARGET_FPS`, align and trim audio to the frames."""
    if row.get("probe_error"):
        raise ClipRejected("decode", "unreadable", str(row["probe_error"]))
    try:
        frames, times = read_video(row["path"])
    except (MediaError, OSError) as e:
        raise ClipRejected("decode", "unreadable", str(e)) from e
    step = np.median(np.diff(times)) if len(times) > 1 else 1.0 / TARGET_FPS
    source_fps = float(1.0 / step) if step > 0 else TARGET_FPS
    duration = float(times[-1] - times[0] + step)
    idx = resample_indices(times, TARGET_FPS, duration)
    audio_src = row.get("audio_path") or row["path"]
    try:
        audio = read_audio(audio_src, SAMPLE_RATE)
        if audio_src == row["path"]:  # one container: honour the streams' start times
            audio = align_audio(audio, audio_start_offset(audio_src), SAMPLE_RATE)
    except (MediaError, OSError) as e:
        raise ClipRejected("decode", "no_audio", str(e)) from e
    if audio.size == 0:
        raise ClipRejected("decode", "no_audio", "the file has no audio stream")
    spf = SAMPLE_RATE / TARGET_FPS  # samples per frame
    n = len(idx)
    coverage = len(audio) / (n * spf)
    if coverage < 1.0:
        if coverage < cfg.gates.min_audio_coverage:
            raise ClipRejected("decode", "audio_too_short", f"audio covers {coverage:.0%} of the video")
        n = int(len(audio) // spf)  # keep the frames the audio covers
        idx = idx[:n]
    audio = audio[: int(round(n * spf))]
    if n < cfg.gates.min_frames:
        raise ClipRejected("decode", "too_short", f"{n} frames at {TARGET_FPS:g} fps < {cfg.gates.min_frames}")
    rms_db = 20 * np.log10(np.sqrt(np.mean(audio.astype(np.float64) ** 2)) + 1e-12)
    if rms_db < cfg.gates.min_audio_db:
        raise ClipRejected("decode", "silent_audio", f"RMS {rms_db:.1f} dBFS < {cfg.gates.min_audio_db}")
    cuts = detect_cuts(frames[idx], cfg.scenes, TARGET_FPS)
    return Clip(row=row, frames=frames[idx], audio=audio.astype(np.float32), source_fps=source_fps,
                source_index=idx, cuts=cuts, info={"source_frames": len(frames), "source_size": list(frames.shape[1:3]),
                                                   "audio_rms_db": float(rms_db), "cuts": cuts})


def stage_landmarks_precomputed(clip: Clip, cfg: PreprocessConfig) -> Clip:
    """Landmarks from the clip's sidecar (indexed like the source frames), one face track per shot."""
    path = clip.row.get("landmarks_path")
    if not path:
        raise ClipRejected("landmarks", "no_landmarks", "no landmarks sidecar for the precomputed backend")
    try:
        track = load_sidecar(path)
    except (OSError, ValueError) as e:
        raise ClipRejected("landmarks", "no_landmarks", str(e)) from e
    if len(track.landmarks) < clip.info["source_frames"]:
        raise ClipRejected("landmarks", "no_landmarks",
                           f"sidecar has {len(track.landmarks)} frames, video {clip.info['source_frames']}")
    clip.track = track.take(clip.source_index).follow(clip.cuts, cfg.landmarks)
    return clip


def stage_landmarks(clip: Clip, landmarker: Optional[Callable[..., LandmarkTrack]], cfg: PreprocessConfig) -> Clip:
    """The followed face's landmarks on every frame: the sidecar's (`landmarker` None) or detected."""
    if landmarker is None:
        return stage_landmarks_precomputed(clip, cfg)
    clip.track = landmarker(clip.frames, clip.cuts)
    return clip


def longest_valid_run(valid: np.ndarray, cuts: list[int] | tuple[int, ...] = ()) -> tuple[int, int]:
    """[start, stop) of the longest run of True that does not span a cut."""
    runs = []
    for a, b in shot_ranges(len(valid), cuts):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], valid[a:b].astype(np.int8), [0]])))
        runs += [(a + int(s), a + int(e)) for s, e in zip(edges[::2], edges[1::2])]
    return max(runs, key=lambda r: r[1] - r[0], default=(0, 0))


def stage_align(clip: Clip, cfg: PreprocessConfig, template: np.ndarray, crop_size: int, smooth_sigma: float) -> Clip:
    """Quality gates on the landmarks, smoothing, alignment to the template, crops."""
    g = cfg.gates
    track = clip.track
    lm = track.landmarks
    n = len(lm)
    has_face = np.isfinite(lm).all(axis=(1, 2))
    missing = 1 - has_face.mean()
    if missing > g.max_missing_face:
        raise ClipRejected("landmarks", "no_face", f"no face on {missing:.0%} of the frames")
    checked = track.n_faces >= 0
    if checked.any():
        several = (track.second_face_ratio[checked] >= g.several_faces_ratio).mean()
        if several >= g.several_faces_fraction:
            raise ClipRejected("landmarks", "several_faces",
                               f"a second face of >= {g.several_faces_ratio:.0%} size on {several:.0%} of the frames")
    sizes = face_size(lm[has_face])
    if np.median(sizes) < g.min_face_px:
        raise ClipRejected("landmarks", "face_too_small", f"median face size {np.median(sizes):.0f} px < {g.min_face_px}")
    lm = smooth_landmarks(lm, smooth_sigma, cuts=clip.cuts)
    valid = np.isfinite(lm).all(axis=(1, 2))
    start, stop = longest_valid_run(valid, clip.cuts)
    if stop - start < g.min_frames:
        raise ClipRejected("landmarks", "too_short", f"longest run with a face is {stop - start} frames")
    if (start, stop) != (0, n):  # keep the longest face run; audio follows
        spf = SAMPLE_RATE / TARGET_FPS
        clip.frames = clip.frames[start:stop]
        clip.audio = clip.audio[int(round(start * spf)) : int(round(stop * spf))]
        clip.source_index = clip.source_index[start:stop]
        lm = lm[start:stop]
        clip.info["trimmed"] = [int(start), int(stop)]
    motion = np.linalg.norm(np.diff(lm, axis=0), axis=-1).mean(axis=-1) / np.maximum(face_size(lm[1:]), 1e-6)
    if len(motion) and motion.max() > g.max_landmark_jump:
        raise ClipRejected("landmarks", "landmark_jumps",
                           f"landmarks move {motion.max():.2f} x face size between frames {int(motion.argmax())}"
                           f" and {int(motion.argmax()) + 1}")
    clip.affine = alignment_matrices(lm, template, crop_size).astype(np.float32)
    clip.crops = warp_faces(clip.frames, clip.affine, crop_size)
    clip.aligned_landmarks = transform_points(lm, clip.affine).astype(np.float32)
    clip.info["face_size_px"] = float(np.median(face_size(lm)))
    return clip


def stage_encode(clip: Clip, cfg: PreprocessConfig, params_hash: str) -> dict:
    """Mel of the aligned audio + the encoded sample."""
    row = clip.row
    mel = melspectrogram(clip.audio)  # (80, 1 + N // 200)
    meta = {
        "clip_id": row["clip_id"], "identity": row.get("identity"), "split": row.get("split"),
        "dataset": row.get("dataset"), "source": row["path"], "video_id": row.get("video_id"),
        "text": row.get("text"), "fps": TARGET_FPS, "sample_rate": SAMPLE_RATE,
        "n_frames": int(len(clip.crops)), "crop_size": int(clip.crops.shape[1]),
        "mel_frames": int(mel.shape[1]), "source_fps": clip.source_fps, "params_hash": params_hash,
        "frame_codec": cfg.frame_codec, **clip.info,
    }
    return encode_sample(sample_key(row["clip_id"]), clip.crops, mel, clip.aligned_landmarks, clip.affine, clip.audio,
                         meta, cfg.frame_codec, cfg.jpeg_quality)


def preprocess_hash(cfg: PreprocessConfig, face_cfg: Any) -> str:
    """Hash of everything that changes the samples (recorded in every sample and in the plan)."""
    return config_hash({"preprocess": cfg, "face": face_cfg})


def process_clip(row: dict, cfg: PreprocessConfig, face_cfg, landmarker=None, restorer=None) -> ClipResult:
    """The whole per-clip pipeline. Never raises for a bad clip: failures come back as data."""
    clip_id = row["clip_id"]
    key = sample_key(clip_id)
    template = np.asarray(face_cfg.template, dtype=np.float64)
    stage = "decode"
    try:
        clip = stage_decode(row, cfg)
        stage = "landmarks"
        clip = stage_landmarks(clip, landmarker, cfg)
        stage = "align"
        clip = stage_align(clip, cfg, template, face_cfg.crop_size, face_cfg.smooth_sigma)
        if restorer is not None:
            stage = "gpen"
            clip.crops = restorer(clip.crops)
        stage = "encode"
        sample = stage_encode(clip, cfg, preprocess_hash(cfg, face_cfg))
        return ClipResult(clip_id, key, sample=sample, stats={"frames": len(clip.crops)})
    except ClipRejected as e:
        return ClipResult(clip_id, key, failure={"clip_id": clip_id, "stage": e.stage, "reason": e.reason,
                                                 "detail": e.detail})
    except Exception as e:  # an unexpected error in one clip must not stop the others
        log.exception("clip %s failed in %s", clip_id, stage)
        return ClipResult(clip_id, key, failure={"clip_id": clip_id, "stage": stage, "reason": "error",
                                                 "detail": f"{type(e).__name__}: {e}"})
