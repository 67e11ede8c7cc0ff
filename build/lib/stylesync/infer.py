"""Lip-sync a video to an audio track (`stylesync sync`, and this Python API).

    from stylesync.infer import Lipsyncer
    Lipsyncer.from_dirs("models/backbone/generator").run("in.mp4", "speech.wav", "out.mp4")

Any length, fps and size: decode, re-time to 25 fps, shot cuts (PySceneDetect), 68-point landmarks
(face-alignment or dlib, or a precomputed sidecar) of one face track per shot (`landmarks.face`: its
size rank, 0 = the largest), re-detected after every cut and smoothed within each shot, alignment to the template, the lower-face mask, the
generator on the audio's mel windows (audio features smoothed over time as in the authors' code),
paste-back with the inverse warp and a feathered mask, H.264 + AAC with the new audio. Audio longer
than the video: the frames play forward then backward (ping-pong); shorter: the video is trimmed.
Frames where the followed face is lost are copied through unchanged (and counted). Streamed: frames
are decoded on demand (one window of `infer.chunk_frames`), generated and encoded batch by batch.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np
import torch
from tqdm import tqdm

from .audio import mel_windows, melspectrogram
from .config import FaceConfig, InferConfig, LandmarksConfig, ScenesConfig
from .face.mask import mask_tensor
from .face.align import alignment_matrices, warp_faces
from .face.landmarks import LandmarkTrack, load_sidecar, smooth_landmarks
from .face.paste import blend_mask, match_colour, paste_back, paste_mask
from .models.generator import StyleSyncGenerator
from .models.store import apply_personal, load_generator
from .runtime.device import amp_dtype, autocast
from .storage import parent
from .shots import detect_cuts
from .video import VideoWriter, align_audio, audio_start_offset, open_video, read_audio, resample_indices

log = logging.getLogger(__name__)
FPS, SR = 25.0, 16000
SAMPLES_PER_FRAME = int(SR / FPS)
AUDIO_BLOCK = 256  # output frames whose audio features are computed at once


class NoFaceError(ValueError):
    """Too few frames with the followed face to lip-sync the video."""


def ping_pong(n_out: int, n_src: int) -> np.ndarray:
    """Source frame of each output frame: 0..T-1, T-2..0, 1..T-1, ... (no repeated end frames)."""
    if n_src == 1:
        return np.zeros(n_out, np.int64)
    period = 2 * n_src - 2
    k = np.arange(n_out) % period
    return np.where(k < n_src, k, period - k)


def ema_features(f_a: torch.Tensor, ema: float, state: Optional[torch.Tensor] = None) -> torch.Tensor:
    """s_t = ema * s_{t-1} + (1 - ema) * f_t, from s_{-1} = `state` (a previous block's last s), or
    s_0 = f_0 without one. (T, D) -> (T, D)."""
    out = torch.empty_like(f_a)
    for t in range(len(f_a)):
        state = f_a[t] if state is None else ema * state + (1 - ema) * f_a[t]
        out[t] = state
    return out


def smooth_audio_features(f_a: torch.Tensor, ema: float, gain: float) -> torch.Tensor:
    """The authors' inference-time audio smoothing as a pure function over the sequence: the EMA
    (`ema_features`), output gain * s_t; ema 0 = no smoothing. (T, D) -> (T, D)."""
    return (ema_features(f_a, ema) if ema > 0 else f_a) * gain


@dataclass
class SyncReport:
    frames: int
    frames_without_face: int
    seconds: float
    wall_s: float
    output: str
    shots: int = 1

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s else 0.0


class Lipsyncer:
    """A generator plus everything needed around it; reusable across videos."""

    def __init__(self, G: StyleSyncGenerator, face: FaceConfig, cfg: InferConfig = InferConfig(),
                 landmarks: LandmarksConfig = LandmarksConfig(backend="auto"), scenes: ScenesConfig = ScenesConfig(),
                 device: torch.device | str = "cpu"):
        self.G, self.face, self.cfg, self.lm_cfg, self.scenes = G.eval(), face, cfg, landmarks, scenes
        self.device = torch.device(device)
        self.G.to(self.device)
        self.mask = mask_tensor(G.size, face.mask, self.device)
        self.blend = blend_mask(face.crop_size, face.mask, cfg.paste)
        self._landmarker: Optional[Callable] = None

    @classmethod
    def from_dirs(cls, generator_dir: str | Path, personal_dir: Optional[str | Path] = None, **kw) -> "Lipsyncer":
        G, face, _ = load_generator(generator_dir, kw.get("device", "cpu"))
        if personal_dir is not None:
            G = apply_personal(G, parent(generator_dir), personal_dir, kw.get("device", "cpu"))
        return cls(G, face, **kw)

    # ------------------------------------------------------------------ landmarks
    def landmarks(self, frames: np.ndarray, idx: np.ndarray, sidecar: Optional[str], cuts: list[int]) -> LandmarkTrack:
        """The followed face per shot on the 25-fps frames (source frames `idx`)."""
        if sidecar is not None:
            return load_sidecar(sidecar).take(idx).follow(cuts, self.lm_cfg)
        if self._landmarker is None:
            from .face.landmarks import make_landmarker

            self._landmarker = make_landmarker(self.lm_cfg, str(self.device))
        return self._landmarker(frames, cuts)

    # ------------------------------------------------------------------ the pipeline
    def read_audio(self, audio: str | Path, video: str | Path, start: float, end: Optional[float]) -> np.ndarray:
        """The driving audio (16 kHz mono float32) of the selected range, padded to whole 25-fps frames
        (empty when the range holds none)."""
        wav = read_audio(audio, SR)
        if Path(audio) == Path(video):  # one container: honour the streams' start times
            wav = align_audio(wav, audio_start_offset(video), SR)
        wav = wav[int(round(start * SR)) : None if end is None else int(round(end * SR))] if (start or end) else wav
        n_out = int(np.ceil(len(wav) / SAMPLES_PER_FRAME))
        return np.pad(wav, (0, n_out * SAMPLES_PER_FRAME - len(wav)))

    @torch.no_grad()
    def run(self, video: str | Path, audio: str | Path, output: str | Path, landmarks: Optional[str] = None,
            start: float = 0.0, end: Optional[float] = None, progress: bool = True,
            keep_frames: bool = False) -> SyncReport:
        """Lip-sync `video` to `audio` into `output` (mp4, 25 fps). Streams: frames are decoded on
        demand, generated and encoded in batches, so memory is bounded by `infer.chunk_frames` and
        the batch, not by the video (what grows with its length: the landmarks, 0.6 KB a frame, and
        the audio, 70 KB a second).
        `keep_frames` also keeps every output frame before encoding in `self.last_frames`."""
        t0 = time.time()
        wav = self.read_audio(audio, video, start, end)  # fails before any video work
        n_out = len(wav) // SAMPLES_PER_FRAME
        with open_video(video, self.cfg.chunk_frames, self.cfg.max_decoded_gb * 2**30) as (frames, times), \
                VideoWriter(output, FPS, wav, SR, crf=self.cfg.crf) as writer:
            idx = resample_indices(times, FPS)  # source frame of every 25-fps frame
            first, last = int(round(start * FPS)), len(idx) if end is None else min(len(idx), int(round(end * FPS)))
            if first >= last:
                raise ValueError(f"--start {start} / --end {end}: no frames selected (the video has {len(idx) / FPS:.2f} s)")
            if wav.size == 0:
                raise ValueError(f"{audio}: no audio in the selected range")
            idx = idx[first:last]
            src = frames.take(idx)  # (T, H, W, 3) at 25 fps, decoded on demand
            cuts = detect_cuts(src, self.scenes, FPS)
            track = self.landmarks(src, idx, landmarks, cuts)
            lm = smooth_landmarks(track.landmarks, self.face.smooth_sigma, cuts=cuts)  # (T, 68, 2)
            has_face = np.isfinite(lm).all(axis=(1, 2))
            missing = int((~has_face).sum())
            if missing > self.cfg.max_frames_without_face * len(has_face):
                raise NoFaceError(f"{video}: the followed face (--face {self.lm_cfg.face}) is missing in {missing} of "
                                  f"{len(has_face)} frames, over infer.max_frames_without_face "
                                  f"({self.cfg.max_frames_without_face:.0%}): nothing to lip-sync there; try another "
                                  f"--face or a video where a face is visible")
            affine = alignment_matrices(lm, np.asarray(self.face.template, dtype=np.float64), self.face.crop_size)
            schedule = ping_pong(n_out, len(src))  # source (25-fps) frame of every output frame
            mel = melspectrogram(wav).astype(np.float32)
            kept: list[np.ndarray] = []
            no_face, state = 0, None
            bar = tqdm(total=n_out, desc="lip sync", unit="frame", disable=not progress)
            for a0 in range(0, n_out, AUDIO_BLOCK):
                ks_block = np.arange(a0, min(n_out, a0 + AUDIO_BLOCK))
                f_a, state = self.audio_features(mel, ks_block, state)  # (block, D)
                for b0 in range(0, len(ks_block), self.cfg.batch_size):
                    ks = ks_block[b0 : b0 + self.cfg.batch_size]
                    outs, n_copied = self.generate(src, schedule[ks], lm, affine, f_a[b0 : b0 + len(ks)])
                    no_face += n_copied
                    for img in outs:
                        writer.write(img)
                    if keep_frames:
                        kept += outs
                    bar.update(len(ks))
            bar.close()
        report = SyncReport(n_out, no_face, n_out / FPS, time.time() - t0, str(output), len(cuts) + 1)
        log.info("%s: %d frames in %d shots (%d without the followed face, copied), %.1f s of audio, %.1f frames/s",
                 output, report.frames, report.shots, report.frames_without_face, report.seconds, report.fps)
        self.last_frames = np.stack(kept) if keep_frames else None
        return report

    def audio_features(self, mel: np.ndarray, ks: np.ndarray,
                       state: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """E_a of output frames `ks`' mel windows, smoothed (EMA carried across blocks in `state`) and
        scaled as the authors do. mel (80, 4 T) -> ((len(ks), D), the new state)."""
        mels = torch.from_numpy(mel_windows(mel, ks)).unsqueeze(1).to(self.device)  # (K, 1, 80, 16)
        with autocast(self.device, amp_dtype(self.cfg.amp, self.device)):
            f_a = self.G.encode_audio(mels).float()
        if self.cfg.audio_ema <= 0:
            return f_a * self.cfg.audio_gain, f_a[-1]
        s = ema_features(f_a, self.cfg.audio_ema, state)
        return s * self.cfg.audio_gain, s[-1]

    def generate(self, src, s_idx: np.ndarray, lm: np.ndarray, affine: np.ndarray,
                 f_a: torch.Tensor) -> tuple[list[np.ndarray], int]:
        """Output frames for source frames `s_idx` (a batch) driven by f_a (len(s_idx), D): the
        generated lower face pasted back (`infer.paste`: inside the frame's own face contour from
        its landmarks lm (T, 68, 2)) where the followed face is, the frame copied elsewhere.
        -> (frames (H, W, 3) uint8, how many were copied)."""
        imgs = src[s_idx]  # (B, H, W, 3)
        out = list(imgs)
        todo = np.flatnonzero(np.isfinite(lm[s_idx]).all(axis=(1, 2)))
        if len(todo):
            size = self.G.size
            crops = warp_faces(imgs[todo], affine[s_idx[todo]], self.face.crop_size)
            x = torch.from_numpy(np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA)
                                           for c in crops])).permute(0, 3, 1, 2).float().div(255).to(self.device)
            ref = x if self.cfg.reference == "same" else x[:1].expand_as(x)
            with autocast(self.device, amp_dtype(self.cfg.amp, self.device)):
                pred = self.G(x * (1 - self.mask), ref, None, self.mask, f_a=f_a[todo])
            pred = (pred.float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
            for j, t in enumerate(todo):
                i = s_idx[t]
                mask = paste_mask(self.blend, lm[i], affine[i], self.cfg)  # (crop, crop)
                p = match_colour(pred[j], crops[j], mask) if self.cfg.paste_colour else pred[j]
                out[t] = paste_back(imgs[t], p, affine[i], mask)
        return out, len(s_idx) - len(todo)
