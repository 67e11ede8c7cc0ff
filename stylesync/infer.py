"""Lip-sync a video to an audio track (`stylesync sync`, and this Python API).

    from stylesync.infer import Lipsyncer
    Lipsyncer.from_dirs("models/backbone/generator").run("in.mp4", "speech.wav", "out.mp4")

Any length, fps and size: decode, re-time to 25 fps, shot cuts (PySceneDetect), 68-point landmarks
(face-alignment or dlib, or a precomputed sidecar) of one face track per shot (`landmarks.face`: its
size rank, 0 = the largest), re-detected after every cut and smoothed within each shot, alignment to the template, the lower-face mask, the
generator on the audio's mel windows (audio features smoothed over time as in the authors' code),
paste-back with the inverse warp and a feathered mask, H.264 + AAC with the new audio. Audio longer
than the video: the frames play forward then backward (ping-pong); shorter: the video is trimmed.
Frames where the followed face is lost are copied through unchanged (and counted).
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
from .face.paste import blend_mask, paste_back
from .models.generator import StyleSyncGenerator
from .models.store import apply_personal, load_generator
from .runtime.device import amp_dtype, autocast
from .storage import parent
from .shots import detect_cuts
from .video import align_audio, audio_start_offset, read_audio, read_video, resample_indices, write_video

log = logging.getLogger(__name__)
FPS, SR = 25.0, 16000
SAMPLES_PER_FRAME = int(SR / FPS)


class NoFaceError(ValueError):
    """Too few frames with the followed face to lip-sync the video."""


def ping_pong(n_out: int, n_src: int) -> np.ndarray:
    """Source frame of each output frame: 0..T-1, T-2..0, 1..T-1, ... (no repeated end frames)."""
    if n_src == 1:
        return np.zeros(n_out, np.int64)
    period = 2 * n_src - 2
    k = np.arange(n_out) % period
    return np.where(k < n_src, k, period - k)


def smooth_audio_features(f_a: torch.Tensor, ema: float, gain: float) -> torch.Tensor:
    """The authors' inference-time audio smoothing as a pure function over the sequence:
    s_t = ema * s_{t-1} + (1 - ema) * f_t (s_0 = f_0), output gain * s_t. (T, D) -> (T, D)."""
    if ema <= 0:
        return f_a * gain
    out = torch.empty_like(f_a)
    state = f_a[0]
    for t in range(len(f_a)):
        state = ema * state + (1 - ema) * f_a[t] if t else f_a[0]
        out[t] = state
    return out * gain


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
    @torch.no_grad()
    def run(self, video: str | Path, audio: str | Path, output: str | Path, landmarks: Optional[str] = None,
            start: float = 0.0, end: Optional[float] = None, progress: bool = True) -> SyncReport:
        t0 = time.time()
        frames, times = read_video(video)
        idx = resample_indices(times, FPS)  # source frame of every 25-fps frame
        first, last = int(round(start * FPS)), len(idx) if end is None else min(len(idx), int(round(end * FPS)))
        if first >= last:
            raise ValueError(f"--start {start} / --end {end}: no frames selected (the video has {len(idx) / FPS:.2f} s)")
        if last - first > self.cfg.max_frames_in_memory:
            raise ValueError(f"{last - first} frames exceed infer.max_frames_in_memory; process parts with --start/--end")
        idx = idx[first:last]
        src = frames[idx]  # (T, H, W, 3) at 25 fps
        cuts = detect_cuts(src, self.scenes, FPS)
        track = self.landmarks(src, idx, landmarks, cuts)
        lm = smooth_landmarks(track.landmarks, self.face.smooth_sigma, cuts=cuts)
        has_face = np.isfinite(lm).all(axis=(1, 2))
        missing = int((~has_face).sum())
        if missing > self.cfg.max_frames_without_face * len(has_face):
            raise NoFaceError(f"{video}: the followed face (--face {self.lm_cfg.face}) is missing in {missing} of "
                              f"{len(has_face)} frames, over infer.max_frames_without_face "
                              f"({self.cfg.max_frames_without_face:.0%}): nothing to lip-sync there; try another "
                              f"--face or a video where a face is visible")
        template = np.asarray(self.face.template, dtype=np.float64)
        affine = alignment_matrices(lm, template, self.face.crop_size)
        wav = read_audio(audio, SR)
        if Path(audio) == Path(video):  # one container: honour the streams' start times
            wav = align_audio(wav, audio_start_offset(video), SR)
        wav = wav[int(round(start * SR)) : None if end is None else int(round(end * SR))] if (start or end) else wav
        if wav.size == 0:
            raise ValueError(f"{audio}: no audio in the selected range")
        n_out = int(np.ceil(len(wav) / SAMPLES_PER_FRAME))
        wav = np.pad(wav, (0, n_out * SAMPLES_PER_FRAME - len(wav)))
        schedule = ping_pong(n_out, len(src))
        mels = torch.from_numpy(mel_windows(melspectrogram(wav).astype(np.float32), np.arange(n_out))).unsqueeze(1)  # (n_out, 1, 80, 16)
        amp = amp_dtype(self.cfg.amp, self.device)
        with autocast(self.device, amp):
            f_a = torch.cat([self.G.encode_audio(mels[i : i + 256].to(self.device)) for i in range(0, n_out, 256)]).float()
        f_a = smooth_audio_features(f_a, self.cfg.audio_ema, self.cfg.audio_gain)
        out = np.empty((n_out, *src.shape[1:]), np.uint8)
        no_face = 0
        bs, size = self.cfg.batch_size, self.G.size
        bar = tqdm(total=n_out, desc="lip sync", unit="frame", disable=not progress)
        for b0 in range(0, n_out, bs):
            ks = list(range(b0, min(n_out, b0 + bs)))
            todo = [k for k in ks if has_face[schedule[k]]]
            for k in ks:
                if not has_face[schedule[k]]:
                    out[k] = src[schedule[k]]
                    no_face += 1
            if todo:
                s_idx = schedule[todo]
                crops = warp_faces(src[s_idx], affine[s_idx], self.face.crop_size)
                x = torch.from_numpy(np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA)
                                               for c in crops])).permute(0, 3, 1, 2).float().div(255).to(self.device)
                ref = x if self.cfg.reference == "same" else x[:1].expand_as(x)
                with autocast(self.device, amp):
                    pred = self.G(x * (1 - self.mask), ref, None, self.mask, f_a=f_a[todo])
                pred = (pred.float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
                for j, k in enumerate(todo):
                    out[k] = paste_back(src[s_idx[j]], pred[j], affine[s_idx[j]], self.blend)
            bar.update(len(ks))
        bar.close()
        write_video(output, out, FPS, wav, SR, crf=self.cfg.crf)
        report = SyncReport(n_out, no_face, n_out / FPS, time.time() - t0, str(output), len(cuts) + 1)
        log.info("%s: %d frames in %d shots (%d without the followed face, copied), %.1f s of audio, %.1f frames/s",
                 output, report.frames, report.shots, report.frames_without_face, report.seconds, report.fps)
        self.last_frames = out  # the frames before encoding (tests compare them with the input)
        return report
