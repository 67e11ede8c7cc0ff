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
from typing import Callable, Iterator, Optional, Sequence

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
        opened = _open_decord(p, path)
        if opened is not None:
            vr, times = opened
            return vr.get_batch(list(range(len(times)))).asnumpy(), times
        return _read_video_pyav(p, path)


@contextlib.contextmanager
def open_video(path: str | os.PathLike, window: int = 32,
               max_decoded_bytes: Optional[float] = None) -> Iterator[tuple["LazyFrames", np.ndarray]]:
    """The frames of a video decoded on demand: (frames, times (T,) s), `frames` indexable like the
    (T, H, W, 3) array `read_video` returns while holding one window of `window` decoded frames
    (`SeekingReader`, PyAV). A file whose packets carry no timestamps is decoded whole, refused when
    larger than `max_decoded_bytes` (from the container's frame count)."""
    with local_file(path) as p:
        try:
            reader = SeekingReader(p)
        except MediaError:
            raise
        except Exception as e:
            log.debug("no seekable reader for %s (%s): decoding it whole", path, e)
            reader = None
        if reader is not None:
            with reader:
                yield LazyFrames(reader.read, np.arange(len(reader.times)), window), reader.times
            return
        if max_decoded_bytes is not None:
            info = probe(p)
            size = info.n_frames * info.width * info.height * 3
            if size > max_decoded_bytes:
                raise MediaError(f"{path}: this file must be decoded whole, {info.n_frames} frames in memory "
                                 f"({size / 2**30:.1f} GiB, over infer.max_decoded_gb); re-encode it "
                                 f"(ffmpeg -i in -c:v libx264 out.mp4) or pass --start/--end")
        frames, times = _read_video_pyav(p, path)
        yield LazyFrames(lambda src: frames[src], np.arange(len(times)), window), times


class SeekingReader:
    """A video's frames by index in presentation order, decoded by PyAV only when read: reads
    continue the decoder where it is; a read behind it or far ahead seeks to the key frame before.
    Frame times come from the packets (no decoding); memory is one decoder, whatever the length.
    (decord's reader decodes ahead on a thread of its own into a queue that grows while the caller
    is slow, ~9 GB on a 5-minute 720p video; bench/infer.py --memory.)"""

    AHEAD = 64  # decode on rather than seek when the wanted frame is at most this far ahead

    def __init__(self, path: str):
        self.container = av.open(path)
        try:
            self.stream = self.container.streams.video[0]
            pts = sorted({pkt.pts for pkt in self.container.demux(self.stream) if pkt.size})
        except Exception:
            self.container.close()
            raise
        if not pts or None in pts:
            self.container.close()
            raise ValueError("packets without timestamps")
        self.pts = np.asarray(pts, np.int64)  # (T,) presentation order
        self.index = {int(p): i for i, p in enumerate(self.pts)}
        self.times = self.pts.astype(np.float64) * float(self.stream.time_base)
        self.decoder: Optional[Iterator] = None
        self.next = -1  # index of the frame the decoder gives next (-1: unknown, seek first)

    def __enter__(self) -> "SeekingReader":
        return self

    def __exit__(self, *exc) -> None:
        self.container.close()

    def _seek(self, i: int) -> None:
        self.container.seek(int(self.pts[i]), stream=self.stream, backward=True, any_frame=False)
        self.decoder = self.container.decode(self.stream)
        self.next = -1

    def read(self, src: np.ndarray) -> list[np.ndarray]:
        """Frames `src` (increasing indices) as RGB (H, W, 3) uint8."""
        out: list[np.ndarray] = []
        for i in (int(j) for j in src):
            if self.decoder is None or (self.next >= 0 and not (self.next <= i <= self.next + self.AHEAD)):
                self._seek(i)
            for frame in self.decoder:
                k = self.index.get(frame.pts, -1) if frame.pts is not None else -1
                self.next = k + 1 if k >= 0 else self.next
                if k == i:
                    out.append(frame.to_ndarray(format="rgb24"))
                    break
                if k > i:  # the seek landed past it: go back a key frame further
                    raise MediaError(f"frame {i} cannot be reached by seeking (decoder at {k})")
            else:
                raise MediaError(f"frame {i} of {len(self.pts)}: the decoder ended before it")
        return out


def _open_decord(p: str, name) -> Optional[tuple[object, np.ndarray]]:
    """(decord VideoReader, presentation times (T,) in s), or None when decord cannot read the file
    or gives non-increasing times (then PyAV decodes it)."""
    try:
        import decord

        vr = decord.VideoReader(p, ctx=decord.cpu(0), num_threads=1)
        n = len(vr)
        if n == 0:
            raise MediaError(f"{name}: no frames")
        times = vr.get_frame_timestamp(list(range(n)))[:, 0].astype(np.float64)
        if n == 1 or (np.diff(times) > 0).all():
            return vr, times
        log.debug("decord gave non-increasing frame times on %s; trying PyAV", name)
    except MediaError:
        raise
    except Exception as e:
        log.debug("decord failed on %s (%s); trying PyAV", name, e)
    return None


class LazyFrames:
    """Frames read on demand through `read(source indices) -> N frames (H, W, 3)`, indexed like an array:
    `f[k]`, `f[a:b]`, `f[index_array]`, `len(f)`, `f.take(idx)` (a re-indexed view, e.g. the
    25-fps frames). One window of `window` consecutive source frames stays decoded, read ahead in
    the direction of travel, so a forward or backward sweep decodes each frame about once and
    memory is bounded by the window, not the video."""

    def __init__(self, read: Callable[[np.ndarray], Sequence[np.ndarray]], index: np.ndarray, window: int = 32,
                 _cache: Optional[dict] = None):
        self._read, self.index, self.window = read, np.asarray(index, np.int64), max(1, int(window))
        self._cache = _cache if _cache is not None else {"frames": {}, "last": -1, "n_src": int(self.index.max()) + 1 if len(self.index) else 0}

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self._frame(int(self.index[0])).shape) if len(self) else (0,)

    def take(self, sel) -> "LazyFrames":
        return LazyFrames(self._read, self.index[sel], self.window, self._cache)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self._frame(int(self.index[key]))
        src = self.index[key]
        return np.stack([self._frame(int(s)) for s in src]) if len(src) else np.zeros((0, *self.shape[1:]), np.uint8)

    def _frame(self, s: int) -> np.ndarray:
        c = self._cache
        if s not in c["frames"]:
            back = s < c["last"]
            lo, hi = (max(0, s - self.window + 1), s + 1) if back else (s, min(c["n_src"], s + self.window))
            c["frames"] = {}  # drop the old window before decoding the next
            c["frames"] = dict(zip(range(lo, hi), self._read(np.arange(lo, hi))))
        c["last"] = s
        return c["frames"][s]


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
    """Encode RGB frames (T, H, W, 3) as H.264 (+ AAC audio) into an mp4, atomically."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    with VideoWriter(path, fps, audio, sample_rate, crf, codec, pix_fmt) as w:
        for img in frames:
            w.write(img)


class VideoWriter:
    """An mp4 written frame by frame (H.264 + AAC), atomically: the frames go to a hidden temporary
    file beside `path` (opened on entry, so an unwritable folder fails before any work), the audio
    is muxed on a clean exit, then the file is renamed to `path`; on an error it is removed.

    yuv420p needs even sizes: odd sizes are padded by one replicated row/column."""

    def __init__(self, path: str | os.PathLike, fps: float = TARGET_FPS, audio: Optional[np.ndarray] = None,
                 sample_rate: int = 16000, crf: int = 18, codec: str = "libx264", pix_fmt: str = "yuv420p",
                 preset: str = "medium"):
        self.path, self.fps, self.audio, self.sample_rate = Path(path), fps, audio, sample_rate
        self.crf, self.codec, self.pix_fmt, self.preset = crf, codec, pix_fmt, preset
        self.tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}{self.path.suffix}")
        self.frames = 0

    def __enter__(self) -> "VideoWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.tmp), "w")
        self.stream = None
        return self

    def write(self, img: np.ndarray) -> None:
        """One RGB frame (H, W, 3) uint8; every frame has the first one's size."""
        if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
            raise ValueError(f"a frame must be uint8 (H, W, 3), got {img.dtype} {img.shape}")
        if self.pix_fmt == "yuv420p" and (img.shape[0] % 2 or img.shape[1] % 2):
            img = np.pad(img, ((0, img.shape[0] % 2), (0, img.shape[1] % 2), (0, 0)), mode="edge")
        if self.stream is None:
            self._add_streams(img.shape[1], img.shape[0])
        for pkt in self.stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            self.container.mux(pkt)
        self.frames += 1

    def _add_streams(self, width: int, height: int) -> None:
        """Both streams before the first packet (the container header lists them)."""
        self.stream = self.container.add_stream(self.codec, rate=Fraction(self.fps).limit_denominator(1001))
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = self.pix_fmt
        if self.codec == "libx264":
            # mbtree off: x264's macroblock-tree rate control is not reproducible run to run
            self.stream.options = {"crf": str(self.crf), "preset": self.preset, "x264-params": "mbtree=0"}
        self.audio_stream = None
        if self.audio is not None and len(self.audio):
            self.audio_stream = self.container.add_stream("aac", rate=self.sample_rate)
            self.audio_stream.layout = "mono"

    def _finish(self) -> None:
        if self.stream is None:
            raise ValueError(f"{self.path}: no frames to write")
        for pkt in self.stream.encode():
            self.container.mux(pkt)
        aus = self.audio_stream
        if aus is not None:
            a = np.clip(np.asarray(self.audio, dtype=np.float32), -1, 1).reshape(1, -1)
            for i in range(0, a.shape[1], 1024):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(a[:, i : i + 1024]), format="flt", layout="mono")
                af.sample_rate = self.sample_rate
                af.pts = i
                for pkt in aus.encode(af):
                    self.container.mux(pkt)
            for pkt in aus.encode():
                self.container.mux(pkt)

    def __exit__(self, exc_type, exc, tb) -> None:
        done = False
        try:
            if exc_type is None:
                self._finish()
            self.container.close()
            if exc_type is None:
                os.replace(self.tmp, self.path)
                done = True
        except Exception:
            if exc_type is None:
                raise  # else: the error in flight is the one to report
        finally:
            if not done:
                with contextlib.suppress(Exception):
                    self.container.close()
                with contextlib.suppress(FileNotFoundError):
                    self.tmp.unlink()
