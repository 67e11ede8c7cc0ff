"""Wav2Lip mel spectrogram (docs/MODELS.md, reference R4) and per-video-frame mel windows.

Numerically Wav2Lip's `audio.melspectrogram` (16 kHz, pre-emphasis 0.97, |STFT| n_fft 800 hop 200
Hann, 80 Slaney mel bands 55-7600 Hz, 20*log10(max(1e-5, S)) - 20, symmetric clip to [-4, 4]).
The STFT is computed with numpy (centred, reflect padding as in the librosa 0.7 that Wav2Lip pins)
instead of `librosa.stft`, whose numba JIT costs ~15-50 s in a fresh process.
"""
from __future__ import annotations

import functools

import numpy as np
from scipy import signal

SAMPLE_RATE = 16000
N_FFT = 800
HOP = 200
WIN = 800
N_MELS = 80
FMIN, FMAX = 55.0, 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0
MEL_FPS = SAMPLE_RATE / HOP  # 80 mel frames per second
MEL_STEP = 16  # mel frames per video-frame window (0.2 s)


@functools.lru_cache(maxsize=4)
def mel_basis(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    import librosa  # imported lazily: slow to import, and only the filterbank is used

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=FMIN, fmax=FMAX).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _window(win: int, n_fft: int) -> np.ndarray:
    w = signal.get_window("hann", win, fftbins=True)  # periodic Hann, as librosa
    pad = (n_fft - win) // 2
    return np.pad(w, (pad, n_fft - win - pad))


def stft_magnitude(y: np.ndarray, n_fft: int = N_FFT, hop: int = HOP, win: int = WIN, pad_mode: str = "reflect") -> np.ndarray:
    """|STFT| of a 1-D signal, centred frames: (1 + n_fft // 2, 1 + len(y) // hop)."""
    y = np.asarray(y, dtype=np.float64)
    if pad_mode == "reflect" and len(y) <= n_fft // 2:
        pad_mode = "constant"  # reflect padding needs more samples than the pad
    y = np.pad(y, n_fft // 2, mode=pad_mode)
    n_frames = 1 + (len(y) - n_fft) // hop
    frames = np.lib.stride_tricks.as_strided(
        y, shape=(n_frames, n_fft), strides=(y.strides[0] * hop, y.strides[0]), writeable=False
    )
    return np.abs(np.fft.rfft(frames * _window(win, n_fft), axis=1)).T


def melspectrogram(wav: np.ndarray, pad_mode: str = "reflect") -> np.ndarray:
    """16 kHz mono waveform (N,) -> normalised log-mel (80, 1 + N // 200) float32 in [-4, 4].

    `pad_mode="constant"` reproduces Wav2Lip's code run under librosa >= 0.10 instead."""
    wav = np.asarray(wav, dtype=np.float64)
    if wav.ndim != 1:
        raise ValueError(f"melspectrogram expects a mono 1-D waveform, got shape {wav.shape}")
    emphasized = signal.lfilter([1.0, -PREEMPHASIS], [1.0], wav)
    mag = stft_magnitude(emphasized, pad_mode=pad_mode)
    mel = mel_basis().astype(np.float64) @ mag
    min_level = np.exp(MIN_LEVEL_DB / 20 * np.log(10))
    s = 20 * np.log10(np.maximum(min_level, mel)) - REF_LEVEL_DB
    s = np.clip((2 * MAX_ABS_VALUE) * ((s - MIN_LEVEL_DB) / (-MIN_LEVEL_DB)) - MAX_ABS_VALUE, -MAX_ABS_VALUE, MAX_ABS_VALUE)
    return s.astype(np.float32)


def mel_start(frame: int, fps: float = 25.0) -> int:
    """First mel frame of video frame `frame`'s window (Wav2Lip: int(80 * frame / fps))."""
    return int(MEL_FPS * (frame / float(fps)))


def pad_mel_for_frames(mel: np.ndarray, n_frames: int, fps: float = 25.0) -> np.ndarray:
    """Pad (80, T) at the end (edge values) so that every one of `n_frames` frames has a full window."""
    need = mel_start(n_frames - 1, fps) + MEL_STEP if n_frames > 0 else 0
    if mel.shape[1] >= need:
        return mel
    return np.pad(mel, ((0, 0), (0, need - mel.shape[1])), mode="edge")


def mel_windows(mel: np.ndarray, frames: np.ndarray | list[int], fps: float = 25.0) -> np.ndarray:
    """(80, T) -> (len(frames), 80, 16): the window of each video frame (mel padded as needed)."""
    frames = np.asarray(frames, dtype=np.int64)
    mel = pad_mel_for_frames(mel, int(frames.max()) + 1 if len(frames) else 0, fps)
    return np.stack([mel[:, mel_start(int(i), fps) : mel_start(int(i), fps) + MEL_STEP] for i in frames])
