"""The embedded default dataset: a deterministic synthetic talking-face corpus (docs/ARCHITECTURE.md \"Synthetic corpus\").

Written like VoxCeleb2, {out}/{dev,test}/mp4/idNNNNN/<video_id>/NNNNN.mp4 (H.264 + AAC 16 kHz mono),
with two sidecars per clip: NNNNN.landmarks.npy (float32 (T, 68, 2), frame pixels (x, y), exactly
the landmarks rendered) and NNNNN.json (per-frame ground-truth articulation, head pose, blinks,
phones, and the identity's appearance/voice/talking style).

Every random draw comes from a Generator seeded by (seed, identity) for the identity and by (seed,
identity, video, clip) for a clip, so a clip is the same whether generated alone or in a corpus.
"""
from __future__ import annotations

import io
import json
import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..config import SynthConfig
from ..storage import atomic_write_bytes
from ..video import write_video
from .synth_audio import Speech, TalkingStyle, Voice, apply_style, mouth_track, sample_style, sample_voice, synthesize
from .synth_face import (
    Appearance, FaceRenderer, Motion, frame_landmarks, head_transform, sample_appearance, sample_motion,
)

log = logging.getLogger(__name__)
VIDEO_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_IDENTITY, _VIDEO, _CLIP = 1, 2, 3  # seed-stream tags


@dataclass(frozen=True)
class Identity:
    index: int
    appearance: Appearance
    voice: Voice
    style: TalkingStyle

    @property
    def name(self) -> str:
        return f"id{self.index:05d}"


@dataclass(frozen=True)
class ClipJob:
    split: str  # dev | test
    identity: int  # global index: dev 0..n_dev-1, test continues
    video: int
    clip: int


@dataclass
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    audio: np.ndarray  # (N,) float32
    landmarks: np.ndarray  # (T, 68, 2) float32, frame pixels
    meta: dict


def make_identity(seed: int, index: int) -> Identity:
    a, v, s = np.random.SeedSequence([seed, _IDENTITY, index]).spawn(3)
    return Identity(index, sample_appearance(np.random.default_rng(a)), sample_voice(np.random.default_rng(v)),
                    sample_style(np.random.default_rng(s)))


def video_id(seed: int, identity: int, video: int) -> str:
    """An 11-character YouTube-like id."""
    rng = np.random.default_rng([seed, _VIDEO, identity, video])
    return "".join(VIDEO_ID_CHARS[i] for i in rng.integers(0, len(VIDEO_ID_CHARS), 11))


def corpus_jobs(cfg: SynthConfig) -> list[ClipJob]:
    splits = ["dev"] * cfg.identities_dev + ["test"] * cfg.identities_test
    return [ClipJob(split, i, v, c) for i, split in enumerate(splits)
            for v in range(cfg.videos_per_identity) for c in range(cfg.clips_per_video)]


def clip_paths(cfg: SynthConfig, job: ClipJob) -> tuple[Path, Path, Path]:
    """(mp4, landmarks .npy, .json) of a clip."""
    d = Path(cfg.out) / job.split / "mp4" / f"id{job.identity:05d}" / video_id(cfg.seed, job.identity, job.video)
    stem = f"{job.clip + 1:05d}"
    return d / f"{stem}.mp4", d / f"{stem}.landmarks.npy", d / f"{stem}.json"


def _r(x: np.ndarray) -> list:
    return np.round(np.asarray(x, np.float64), 4).tolist()


def av_offset(cfg: SynthConfig, job: ClipJob, rng: np.random.Generator) -> int:
    """The A/V offset injected into a clip (frames, > 0: the audio is late; 0: in sync)."""
    if job.split not in cfg.av_offset_splits or rng.random() >= cfg.av_offset_fraction \
            or f"id{job.identity:05d}" in cfg.in_sync_identities:
        return 0
    return int(rng.integers(1, cfg.av_offset_max + 1)) * int(rng.choice([-1, 1]))


def shift_audio(wav: np.ndarray, offset: int, samples_per_frame: int) -> np.ndarray:
    """The audio `offset` frames late (> 0: silence first) or early (< 0: its start cut), same length."""
    n = abs(offset) * samples_per_frame
    if n == 0:
        return wav
    pad = np.zeros(n, wav.dtype)
    return np.concatenate([pad, wav[:-n]]) if offset > 0 else np.concatenate([wav[n:], pad])


@dataclass
class Articulation:
    """A clip before rendering: its speech, the mouth it drives, head motion and the landmarks."""

    identity: Identity
    speech: Speech
    aperture: np.ndarray  # (T,)
    spread: np.ndarray  # (T,)
    mouth_open: np.ndarray  # (T,) template units
    mouth_width: np.ndarray  # (T,)
    motion: Motion
    transforms: np.ndarray  # (T, 2, 3) template units -> frame pixels
    landmarks: np.ndarray  # (T, 68, 2) float32, frame pixels


def _streams(cfg: SynthConfig, job: ClipJob) -> list[np.random.SeedSequence]:
    # children 0 and 1 are the same for any spawn count: adding the offset stream changes no clip
    return np.random.SeedSequence([cfg.seed, _CLIP, job.identity, job.video, job.clip]).spawn(3)


def articulate(cfg: SynthConfig, job: ClipJob) -> Articulation:
    """Everything of a clip but its pixels (cheap: the corpus calibration measures these landmarks)."""
    ident = make_identity(cfg.seed, job.identity)
    audio_ss, motion_ss, _ = _streams(cfg, job)
    n_frames = int(round(cfg.seconds * cfg.fps))
    speech = synthesize(np.random.default_rng(audio_ss), ident.voice, cfg.seconds, cfg.sample_rate, cfg.rest_aperture)
    aperture, spread = mouth_track(speech, n_frames, cfg.fps, cfg.sample_rate)  # (T,), (T,)
    mouth_open, mouth_width = apply_style(ident.style, aperture, spread, ident.appearance.mouth_width,
                                          cfg.max_open, cfg.open_cap)
    mo = sample_motion(np.random.default_rng(motion_ss), n_frames, cfg.fps, cfg.yaw, cfg.exposure)
    mats = np.stack([head_transform(ident.appearance, cfg.resolution, mo.tx[t], mo.ty[t], mo.rot[t], mo.scale[t])
                     for t in range(n_frames)])  # (T, 2, 3)
    landmarks = np.stack([frame_landmarks(ident.appearance, mats[t], mouth_open[t], mouth_width[t], mo.eye_open[t],
                                          mo.yaw[t]) for t in range(n_frames)]).astype(np.float32)
    return Articulation(ident, speech, aperture, spread, mouth_open, mouth_width, mo, mats, landmarks)


def make_clip(cfg: SynthConfig, job: ClipJob) -> Clip:
    """Render one clip in memory: audio, the mouth driven by it, head motion, blinks, frames."""
    a = articulate(cfg, job)
    ident, speech, mo, landmarks = a.identity, a.speech, a.motion, a.landmarks
    aperture, spread, mouth_open, mouth_width = a.aperture, a.spread, a.mouth_open, a.mouth_width
    renderer = FaceRenderer(ident.appearance, cfg.resolution)
    frames = np.empty((len(landmarks), cfg.resolution, cfg.resolution, 3), np.uint8)
    for t in range(len(landmarks)):
        frame = renderer.render(landmarks[t], a.transforms[t], mo.gaze[t])
        frames[t] = np.clip(frame * mo.exposure[t] + 0.5, 0, 255).astype(np.uint8)  # camera exposure drift
    n_frames = len(frames)
    offset = av_offset(cfg, job, np.random.default_rng(_streams(cfg, job)[2]))
    wav = shift_audio(speech.wav, offset, int(round(cfg.sample_rate / cfg.fps)))
    meta = {
        "av_offset": offset,
        "identity": ident.name, "split": job.split, "video": video_id(cfg.seed, job.identity, job.video),
        "clip": f"{job.clip + 1:05d}", "seed": cfg.seed, "fps": cfg.fps, "sample_rate": cfg.sample_rate,
        "resolution": cfg.resolution, "n_frames": n_frames, "n_samples": len(speech.wav),
        "mouth_open": _r(mouth_open), "mouth_width": _r(mouth_width), "aperture": _r(aperture),
        "spread": _r(spread), "eye_open": _r(mo.eye_open),
        "head": {"tx": _r(mo.tx), "ty": _r(mo.ty), "rot_deg": _r(mo.rot), "scale": _r(mo.scale), "yaw": _r(mo.yaw)},
        "exposure": _r(mo.exposure),
        "phones": speech.phones, "style": asdict(ident.style), "voice": asdict(ident.voice),
        "appearance": ident.appearance.to_dict(),
    }
    return Clip(frames, wav, landmarks, meta)


def is_complete(cfg: SynthConfig, job: ClipJob) -> bool:
    return all(p.exists() for p in clip_paths(cfg, job))


def write_clip(cfg: SynthConfig, job: ClipJob) -> dict:
    """Generate and write one clip (the mp4 last; every write atomic)."""
    mp4, npy, js = clip_paths(cfg, job)
    clip = make_clip(cfg, job)
    buf = io.BytesIO()
    np.save(buf, clip.landmarks)
    atomic_write_bytes(npy, buf.getvalue())
    atomic_write_bytes(js, json.dumps(clip.meta, sort_keys=True, separators=(",", ":")).encode())
    write_video(mp4, clip.frames, fps=cfg.fps, audio=clip.audio, sample_rate=cfg.sample_rate)
    return {"frames": len(clip.frames), "seconds": len(clip.audio) / cfg.sample_rate}


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)  # small images: one thread per process is fastest


def generate_corpus(cfg: SynthConfig) -> dict:
    """Write the corpus, or complete it: clips whose mp4, landmarks and json all exist are skipped."""
    t0 = time.perf_counter()
    jobs = corpus_jobs(cfg)
    todo = [job for job in jobs if not is_complete(cfg, job)]
    results = []
    with tqdm(total=len(todo), desc="synthetic corpus", unit="clip") as bar:
        if cfg.workers <= 1 or len(todo) <= 1:
            for job in todo:
                results.append(write_clip(cfg, job))
                bar.update()
        elif todo:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            ctx = multiprocessing.get_context(method)  # clean workers, whatever the parent has loaded
            with ProcessPoolExecutor(min(cfg.workers, len(todo)), mp_context=ctx, initializer=_worker_init) as ex:
                for fut in as_completed([ex.submit(write_clip, cfg, job) for job in todo]):
                    results.append(fut.result())
                    bar.update()
    n_frames, skipped = int(round(cfg.seconds * cfg.fps)), len(jobs) - len(todo)
    return {
        "root": str(cfg.out), "identities": cfg.identities_dev + cfg.identities_test,
        "identities_dev": cfg.identities_dev, "identities_test": cfg.identities_test, "clips": len(jobs),
        "generated": len(todo), "skipped": skipped, "frames": sum(r["frames"] for r in results) + skipped * n_frames,
        "audio_seconds": round(sum(r["seconds"] for r in results) + skipped * cfg.seconds, 3),
        "wall_s": round(time.perf_counter() - t0, 2),
    }
