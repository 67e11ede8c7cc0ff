"""Video and audio I/O: probe, decode (decord; PyAV fallback), resample to 25 fps, encode + mux.

Frames are RGB uint8 (T, H, W, 3); audio is float32 mono in [-1, 1]. Remote URIs (fsspec) are
copied to a local temporary file first (decoders need seekable local files).
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Optional

import av
import numpy as np

from .storage import local_file

log = logging.getLogger(__name__)
TARGET_FPS = 25.0


class MediaError(RuntimeError):
    """A file that cannot be probed or decoded."""


@dataclass
class MediaInfo:
    duration_s: float
    fps: float
    width: int
    height: int
    n_frames: int
    has_audio: bool
    video_codec: str
    audio_codec: Optional[str]
    audio_rate: Optional[int]


def probe(path: str | os.PathLike) -> MediaInfo:
    """Container-level facts of a media file (no full decode)."""
    with local_file(path) as p:
        try:
            with av.open(p) as c:
                vs = [s for s in c.streams if s.type == "video"]
                aus = [s for s in c.streams if s.type == "audio"]
                if not vs:
                    raise MediaError(f"{path}: no video stream")
                v = vs[0]
                fps = float(v.average_rate or v.guessed_rate or 0)
                if v.duration is not None and v.time_base is not None:
                    duration = float(v.duration * v.time_base)
                elif c.duration is not None:
                    duration = c.duration / av.time_base
                else:
                    duration = 0.0
                n = v.frames or int(round(duration * fps))
                a = aus[0] if aus else None
                return MediaInfo(duration, fps, v.codec_context.width, v.codec_context.height, int(n), a is not None,
                                 v.codec_context.name, a.codec_context.name if a else None,
                                 a.codec_context.sample_rate if a else None)
        except MediaError:
            raise
        except Exception as e:  # PyAV raises many error types for broken files
            raise MediaError(f"{path}: cannot open ({type(e).__name__}: {e})") from e


def probe_audio_file(path: str | os.PathLike) -> tuple[float, str]:
    """(duration seconds, codec) of an audio-only file (e.g. VoxCeleb2's m4a)."""
    with local_file(path) as p:
        try:
            with av.open(p) as c:
                a = next(s for s in c.streams if s.type == "audio")
                dur = float(a.duration * a.time_base) if a.duration else (c.duration or 0) / av.time_base
                return dur, a.codec_context.name
        except StopIteration as e:
            raise MediaError(f"{path}: no audio stream") from e
        except Exception as e:
            raise MediaError(f"{path}: cannot open ({type(e).__name__}: {e})") from e


# ------------------------------------------------------------------------------------ decoding
def read_video(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """All frames (T, H, W, 3) RGB uint8 and their presentation times in seconds (T,).

    decord first (fast sequential decode); PyAV when decord cannot read the file."""
    with local_file(path) as p:
        try:
            import decord

            vr = decord.VideoReader(p, ctx=decord.cpu(0), num_threads=1)
            n = len(vr)
            if n == 0:
                raise MediaError(f"{path}: no frames")
            frames = vr.get_batch(list(range(n))).asnumpy()
            times = vr.get_frame_timestamp(list(range(n)))[:, 0].astype(np.float64)
            if n == 1 or (np.diff(times) > 0).all():
                return frames, times
            log.debug("decord gave non-increasing frame times on %s; trying PyAV", path)
        except MediaError:
            raise
        except Exception as e:
            log.debug("decord failed on %s (%s); trying PyAV", path, e)
        return _read_video_pyav(p, path)


def _read_video_pyav(p: str, name) -> tuple[np.ndarray, np.ndarray]:
    try:
        frames, times = [], []
        with av.open(p) as c:
            stream = c.streams.video[0]
            for f in c.decode(stream):
                frames.append(f.to_ndarray(format="rgb24"))
                times.append(float(f.pts * f.time_base) if f.pts is not None else len(times) / float(stream.average_rate or 25))
    except Exception as e:
        if frames:  # a truncated file: keep what decoded
            log.warning("%s: decoding stopped after %d frames (%s)", name, len(frames), e)
        else:
            raise MediaError(f"{name}: cannot decode video ({type(e).__name__}: {e})") from e
    if not frames:
        raise MediaError(f"{name}: no frames")
    times = np.asarray(times, dtype=np.float64)
    order = np.argsort(times, kind="stable")  # decode order -> presentation order (B-frames)
    times, keep = times[order], np.ones(len(order), bool)
    keep[1:] = np.diff(times) > 0  # a repeated timestamp keeps its first frame
    return np.stack([frames[i] for i in order[keep]]), times[keep] - times[0]


def read_audio(path: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 audio resampled to `sample_rate` (decord; PyAV for codecs decord cannot read),
    trimmed to the stream's declared duration (AAC decoders append encoder padding).
    Returns an empty array when the file has no audio stream."""
    with local_file(path) as p:
        wav = None
        try:
            import decord

            ar = decord.AudioReader(p, ctx=decord.cpu(0), sample_rate=sample_rate, mono=True)
            wav = ar[:].asnumpy().reshape(-1).astype(np.float32)
        except Exception as e:
            log.debug("decord audio failed on %s (%s); trying PyAV", path, e)
        if wav is None or not wav.size:
            wav = _read_audio_pyav(p, path, sample_rate)
        declared = _audio_duration(p)
        if declared and len(wav) > declared * sample_rate:
            wav = wav[: int(round(declared * sample_rate))]
        return wav


def _audio_duration(p: str) -> Optional[float]:
    try:
        with av.open(p) as c:
            a = c.streams.audio[0] if c.streams.audio else None
            if a is not None and a.duration is not None and a.time_base is not None:
                return float(a.duration * a.time_base)
    except Exception:
        return None
    return None


def _read_audio_pyav(p: str, name, sample_rate: int) -> np.ndarray:
    try:
        with av.open(p) as c:
            if not c.streams.audio:
                return np.zeros(0, np.float32)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            chunks = []
            for frame in c.decode(c.streams.audio[0]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except Exception as e:
        raise MediaError(f"{name}: cannot decode audio ({type(e).__name__}: {e})") from e
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def resample_indices(times: np.ndarray, fps: float = TARGET_FPS, duration: Optional[float] = None) -> np.ndarray:
    """Source frame index for every output frame at exactly `fps`: the frame whose presentation time
    is nearest to the output time (ties go to the earlier one). times: (T,) seconds of the frames in
    presentation order; output time 0 is the first frame's time."""
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or not len(times) or not np.isfinite(times).all():
        raise MediaError(f"frame times must be a finite 1-D array, got shape {times.shape}")
    if len(times) > 1 and (np.diff(times) <= 0).any():
        raise MediaError("frame times are not increasing (frames must be in presentation order)")
    times = times - times[0]
    if duration is None:
        step = np.median(np.diff(times)) if len(times) > 1 else 1.0 / fps
        duration = times[-1] + step
    n_out = max(int(np.floor(duration * fps + 0.02)), 1)  # tolerate float32 timestamps
    t_out = np.arange(n_out) / fps
    after = np.clip(np.searchsorted(times, t_out, side="left"), 0, len(times) - 1)  # first time >= t
    before = np.clip(after - 1, 0, len(times) - 1)
    later = np.abs(times[after] - t_out) < np.abs(times[before] - t_out) - 1e-9
    return np.where(later, after, before)


def audio_start_offset(path: str | os.PathLike) -> float:
    """Seconds from the video stream's first presentation time to the audio stream's (0 when
    either start time is unknown): > 0 means the audio starts late."""
    with local_file(path) as p:
        try:
            with av.open(p) as c:
                v = c.streams.video[0] if c.streams.video else None
                a = c.streams.audio[0] if c.streams.audio else None
                if v is None or a is None or v.start_time is None or a.start_time is None:
                    return 0.0
                return float(a.start_time * a.time_base) - float(v.start_time * v.time_base)
        except Exception as e:
            raise MediaError(f"{path}: cannot open ({type(e).__name__}: {e})") from e


def align_audio(wav: np.ndarray, offset_s: float, sample_rate: int = 16000) -> np.ndarray:
    """Audio re-based on the video's first frame: `offset_s` of leading silence when the audio
    starts late, the first -offset_s cut when it starts early."""
    n = int(round(abs(offset_s) * sample_rate))
    if offset_s > 0:
        return np.concatenate([np.zeros(n, wav.dtype), wav])
    return wav[n:]


# ------------------------------------------------------------------------------------ encoding
def write_video(
    path: str | os.PathLike, frames: np.ndarray, fps: float = TARGET_FPS, audio: Optional[np.ndarray] = None,
    sample_rate: int = 16000, crf: int = 18, codec: str = "libx264", pix_fmt: str = "yuv420p",
) -> None:
    """Encode RGB frames (T, H, W, 3) as H.264 (+ AAC audio) into an mp4, atomically.

    yuv420p needs even sizes: odd sizes are padded by one replicated row/column."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if pix_fmt == "yuv420p" and (frames.shape[1] % 2 or frames.shape[2] % 2):
        frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)), mode="edge")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        with av.open(str(tmp), "w") as c:
            rate = Fraction(fps).limit_denominator(1001)
            vs = c.add_stream(codec, rate=rate)
            vs.width, vs.height = frames.shape[2], frames.shape[1]
            vs.pix_fmt = pix_fmt
            if codec == "libx264":
                # mbtree off: x264's macroblock-tree rate control is not reproducible run to run
                vs.options = {"crf": str(crf), "preset": "medium", "x264-params": "mbtree=0"}
            aus = None
            if audio is not None and len(audio):
                aus = c.add_stream("aac", rate=sample_rate)
                aus.layout = "mono"
            for img in frames:
                for pkt in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(pkt)
            for pkt in vs.encode():
                c.mux(pkt)
            if aus is not None:
                a = np.clip(np.asarray(audio, dtype=np.float32), -1, 1).reshape(1, -1)
                frame_size = 1024
                for i in range(0, a.shape[1], frame_size):
                    af = av.AudioFrame.from_ndarray(np.ascontiguousarray(a[:, i : i + frame_size]), format="flt",
                                                    layout="mono")
                    af.sample_rate = sample_rate
                    af.pts = i
                    for pkt in aus.encode(af):
                        c.mux(pkt)
                for pkt in aus.encode():
                    c.mux(pkt)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
