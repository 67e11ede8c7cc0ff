"""Speech-like audio from numpy, and the articulation track that drives the synthetic mouth.

A clip is a run of phrases separated by pauses (near-silence, 0.2-0.7 s); a phrase is a run of
(C)V(C) syllables. Vowels are a glottal pulse train (identity pitch range, declining intonation,
accents, jitter) through 3 cascaded formant resonators; consonants are filtered noise
(fricatives s, sh, f), closure + burst (t, k, p, b) or a nasal murmur (m).

The synthesizer also writes two per-sample articulatory controls, from which the audio is made:
- aperture in [0, 1]: the voiced envelope x the vowel's openness, which grows with its F1 (an
  open jaw raises F1); small for t/k/s/sh/f; exactly 0 in bilabial closures (p, b, m); `rest` in
  pauses (a speaker's lips part slightly between phrases: the real clip of docs/MODELS.md is
  never read closed);
- spread in [0, 1]: lip spreading from the vowel's F2 (/i/ spread, /u/ rounded), neutral elsewhere.
`mouth_track` turns them into per-video-frame values (anticipatory smoothing, then the mean over
the frame's samples, i.e. audio inside the frame's Wav2Lip mel window) and `apply_style` maps
them to `canonical_landmarks` units through an identity's talking style.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy import signal

# F1, F2, F3 in Hz (Peterson & Barney 1952, adult male averages)
VOWELS: dict[str, tuple[float, float, float]] = {
    "i": (270, 2290, 3010), "I": (390, 1990, 2550), "e": (530, 1840, 2480), "ae": (660, 1720, 2410),
    "a": (730, 1090, 2440), "o": (570, 840, 2410), "U": (440, 1020, 2240), "u": (300, 870, 2240),
    "uh": (640, 1190, 2390), "er": (490, 1350, 1690),
}
BANDWIDTHS = (80.0, 100.0, 150.0)  # formant bandwidths, Hz
ONSETS = ("p", "b", "m", "t", "k", "s", "sh", "f")
CODAS = ("m", "s", "t")
APERTURE = {"t": 0.12, "k": 0.12, "s": 0.1, "sh": 0.1, "f": 0.04, "p": 0.0, "b": 0.0, "m": 0.0}
NEUTRAL_SPREAD = 0.4
MAX_OPEN = 6.0  # template units (~1.5 mm each) at aperture 1 and gain 1 (the corpus sets its own: synth.max_open)
PEAK = 0.5


def vowel_openness(f1: float) -> float:
    """Jaw/lip opening of a vowel in [0.2, 1] from its (speaker-normalised) F1."""
    return 0.2 + 0.8 * float(np.clip((f1 - 270.0) / (730.0 - 270.0), 0, 1))


def vowel_spread(f2: float) -> float:
    """Lip spreading in [0, 1] from F2: 0 rounded (/u/, /o/), 1 spread (/i/)."""
    return float(np.clip((f2 - 840.0) / (2290.0 - 840.0), 0, 1))


@dataclass
class Voice:
    """An identity's voice: pitch, intonation, vocal tract length, speaking rate."""

    f0: float  # base pitch, Hz
    f0_range: float  # accent range, semitones
    declination: float  # pitch fall over a phrase, semitones
    formant_scale: float  # vocal tract length (female > 1)
    rate: float  # speaking rate factor (syllable durations / rate)
    breathiness: float  # aspiration noise mixed into voicing


@dataclass
class TalkingStyle:
    """An identity's mouth mapping: open = max_open * gain * aperture ** exponent."""

    gain: float
    exponent: float
    width_gain: float  # lip-width modulation by spread


@dataclass
class Speech:
    wav: np.ndarray  # (N,) float32, peak PEAK
    aperture: np.ndarray  # (N,) float32 in [0, 1]
    spread: np.ndarray  # (N,) float32 in [0, 1]
    phones: list = field(default_factory=list)  # [(label, t0_s, t1_s)]


def sample_voice(rng: np.random.Generator) -> Voice:
    female = rng.random() < 0.5
    return Voice(
        f0=float(rng.uniform(170, 240) if female else rng.uniform(90, 140)),
        f0_range=float(rng.uniform(2, 7)), declination=float(rng.uniform(1, 4)),
        formant_scale=float(rng.uniform(1.08, 1.18) if female else rng.uniform(0.95, 1.05)),
        rate=float(rng.uniform(0.85, 1.2)), breathiness=float(rng.uniform(0.02, 0.08)),
    )


def sample_style(rng: np.random.Generator) -> TalkingStyle:
    return TalkingStyle(gain=float(rng.uniform(0.6, 1.5)), exponent=float(rng.uniform(0.7, 1.4)),
                        width_gain=float(rng.uniform(0.08, 0.35)))


# ------------------------------------------------------------------------------ the plan
def _plan(rng: np.random.Generator, voice: Voice, seconds: float) -> tuple[list, list]:
    """Phones [(label, t0, t1, amp, accent)] and phrases [(t0, t1)], in seconds."""
    phones, phrases = [], []
    t = float(rng.uniform(0.05, 0.35))  # lead-in silence
    while t < seconds:
        p0 = t
        for _ in range(int(rng.integers(2, 8))):
            if rng.random() < 0.75:
                c = ONSETS[int(rng.integers(len(ONSETS)))]
                d = {"p": 0.08, "b": 0.07, "m": 0.08, "t": 0.06, "k": 0.065, "s": 0.1, "sh": 0.1, "f": 0.08}[c]
                d *= rng.uniform(0.8, 1.25) / voice.rate
                phones.append((c, t, t + d, 1.0, False))
                t += d
            v = list(VOWELS)[int(rng.integers(len(VOWELS)))]
            d = rng.uniform(0.09, 0.22) / voice.rate
            accent = rng.random() < 0.35
            phones.append((v, t, t + d, 1.0 if accent else float(rng.uniform(0.6, 0.9)), accent))
            t += d
            if rng.random() < 0.2:
                c = CODAS[int(rng.integers(len(CODAS)))]
                d = rng.uniform(0.05, 0.09) / voice.rate
                phones.append((c, t, t + d, 1.0, False))
                t += d
        phrases.append((p0, t))
        t += float(rng.uniform(0.2, 0.7))  # pause
    return phones, phrases


def _pitch(voice: Voice, phones: list, phrases: list, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """f0 contour (n,) in Hz: per-phrase declination, raised-cosine accents, slow jitter."""
    t = np.arange(n) / sr
    semis = np.zeros(n)
    for p0, p1 in phrases:
        m = (t >= p0) & (t < p1)
        semis[m] = voice.declination * (0.5 - (t[m] - p0) / max(p1 - p0, 1e-3)) + rng.uniform(-1, 1)
    for label, t0, t1, _, accent in phones:
        if accent:
            m = (t >= t0 - 0.05) & (t < t1 + 0.05)
            semis[m] += voice.f0_range * np.sin(np.pi * (t[m] - t0 + 0.05) / (t1 - t0 + 0.1))
    jitter = signal.sosfiltfilt(signal.butter(2, 8, fs=sr, output="sos"), rng.standard_normal(n)) * 8
    return voice.f0 * 2 ** ((semis + jitter) / 12)


def _glottal_source(f0: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Pulse train at f0 (shimmer), glottal tilt (-12 dB/oct), lip radiation (+6 dB/oct)."""
    phase = np.cumsum(f0 / sr)  # (n,) cycles
    src = np.zeros_like(f0)
    idx = np.flatnonzero(np.diff(np.floor(phase)) > 0) + 1
    src[idx] = rng.uniform(0.85, 1.0, len(idx))
    src = signal.lfilter([1.0], [1.0, -1.9, 0.9025], src)  # double pole at 0.95
    return np.diff(src, prepend=0.0)


def _formants(x: np.ndarray, freqs, sr: int) -> np.ndarray:
    """Cascade of 2-pole resonators (Klatt), unit gain at DC."""
    for f, bw in zip(freqs, BANDWIDTHS):
        c = -np.exp(-2 * np.pi * bw / sr)
        b = 2 * np.exp(-np.pi * bw / sr) * np.cos(2 * np.pi * f / sr)
        x = signal.lfilter([1 - b - c], [1, -b, -c], x)
    return x


def _envelope(n: int, sr: int, attack: float, release: float) -> np.ndarray:
    """(n,) raised-cosine attack/release, 1 in between."""
    env = np.ones(n)
    a, r = min(int(attack * sr), n // 2), min(int(release * sr), n // 2)
    if a:
        env[:a] = 0.5 - 0.5 * np.cos(np.pi * np.arange(a) / a)
    if r:
        env[n - r:] = 0.5 + 0.5 * np.cos(np.pi * (np.arange(r) + 1) / r)
    return env


def _noise(rng: np.random.Generator, n: int, band: tuple[float, float], sr: int) -> np.ndarray:
    """Band-passed white noise (n,) with unit RMS."""
    lo, hi = band[0], min(band[1], 0.45 * sr)
    sos = signal.butter(4, (lo, hi), btype="band", fs=sr, output="sos")
    y = signal.sosfilt(sos, rng.standard_normal(n + 256))[256:]  # drop the filter's start-up
    return y / (np.sqrt(np.mean(y ** 2)) + 1e-9)


FRICATIVE_BANDS = {"s": (3800, 7800), "sh": (2000, 5000), "f": (1200, 7500)}
BURST_BANDS = {"t": (2500, 6000), "k": (1200, 3200), "p": (500, 3000), "b": (400, 2500)}


def synthesize(rng: np.random.Generator, voice: Voice, seconds: float, sr: int = 16000,
               rest: float = 0.0) -> Speech:
    """A clip of speech-like audio (N = round(seconds * sr)) with its articulatory controls;
    `rest`: the aperture between phrases (0 = lips shut in pauses)."""
    n = int(round(seconds * sr))
    phones, phrases = _plan(rng, voice, seconds)
    src = _glottal_source(_pitch(voice, phones, phrases, n, sr, rng), sr, rng)  # (n,)
    wav, ap, spread = np.zeros(n), np.full(n, float(rest)), np.full(n, NEUTRAL_SPREAD)
    for p0, p1 in phrases:  # inside a phrase the phones set the aperture
        ap[int(p0 * sr):min(int(p1 * sr), n)] = 0.0
    pad = int(0.02 * sr)  # resonator warm-up
    for label, t0, t1, amp, _ in phones:
        i0, i1 = int(t0 * sr), min(int(t1 * sr), n)
        if i1 - i0 < 8:
            continue
        m = i1 - i0
        if label in VOWELS:
            f1, f2, f3 = VOWELS[label]
            seg = src[max(i0 - pad, 0):i1]
            seg = seg + voice.breathiness * rng.standard_normal(len(seg)) * np.std(seg)
            y = _formants(seg, np.array([f1, f2, f3]) * voice.formant_scale, sr)[-m:]
            env = _envelope(m, sr, 0.025, 0.04)
            y = y / (np.sqrt(np.mean(y ** 2)) + 1e-9) * env * amp * (0.5 + 0.5 * vowel_openness(f1))
            wav[i0:i1] += y
            ap[i0:i1] = np.maximum(ap[i0:i1], env * amp * vowel_openness(f1))
            spread[i0:i1] += env * (vowel_spread(f2) - NEUTRAL_SPREAD)
        elif label in FRICATIVE_BANDS:
            env = _envelope(m, sr, 0.02, 0.02)
            wav[i0:i1] += _noise(rng, m, FRICATIVE_BANDS[label], sr) * env * (0.2 if label != "f" else 0.08)
            ap[i0:i1] = np.maximum(ap[i0:i1], env * APERTURE[label])
            if label == "sh":
                spread[i0:i1] -= env * 0.3  # rounded
        elif label == "m":  # voiced nasal murmur, lips shut
            y = _formants(src[max(i0 - pad, 0):i1], (250, 1100, 2300), sr)[-m:]
            wav[i0:i1] += y / (np.sqrt(np.mean(y ** 2)) + 1e-9) * _envelope(m, sr, 0.015, 0.015) * 0.12
        else:  # stops: closure (silence; b: voice bar) then a burst over the last 25 ms
            b = min(int(0.025 * sr), m)
            if label == "b":
                wav[i0:i1 - b] += signal.lfilter([0.05], [1, -0.97], src[i0:i1 - b])
            wav[i1 - b:i1] += _noise(rng, b, BURST_BANDS[label], sr) * _envelope(b, sr, 0.002, 0.018) * 0.35
            ap[i0:i1] = np.maximum(ap[i0:i1], APERTURE[label])
    wav *= PEAK / (np.abs(wav).max() + 1e-9)
    wav[-int(0.01 * sr):] *= np.linspace(1, 0, int(0.01 * sr))
    wav += 2e-4 * rng.standard_normal(n)  # near-silence floor
    return Speech(wav.astype(np.float32), ap.astype(np.float32), np.clip(spread, 0, 1).astype(np.float32),
                  [(p[0], round(p[1], 4), round(min(p[2], seconds), 4)) for p in phones if p[1] < seconds])


# ------------------------------------------------------------------------------ audio -> mouth
def _anticipate(x: np.ndarray, tau_s: float, sr: int) -> np.ndarray:
    """One-pole smoothing run backwards in time: the articulators move ahead of the sound."""
    a = np.exp(-1.0 / (tau_s * sr))
    y, _ = signal.lfilter([1 - a], [1, -a], x[::-1], zi=[a * x[-1]])
    return y[::-1]


def frame_means(x: np.ndarray, n_frames: int, fps: float, sr: int) -> np.ndarray:
    """(N,) -> (n_frames,): the mean over each video frame's samples [t/fps, (t+1)/fps)."""
    edges = np.minimum((np.arange(n_frames + 1) * sr / fps).round().astype(np.int64), len(x))
    sums = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    return (sums[edges[1:]] - sums[edges[:-1]]) / np.maximum(edges[1:] - edges[:-1], 1)


def mouth_track(speech: Speech, n_frames: int, fps: float, sr: int,
                tau_s: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (aperture (T,) in [0, 1], spread (T,) in [0, 1]) from the articulatory controls."""
    ap = frame_means(_anticipate(speech.aperture.astype(np.float64), tau_s, sr), n_frames, fps, sr)
    sp = frame_means(_anticipate(speech.spread.astype(np.float64), tau_s, sr), n_frames, fps, sr)
    return np.clip(ap, 0, 1), np.clip(sp, 0, 1)


def apply_style(style: TalkingStyle, aperture: np.ndarray, spread: np.ndarray, base_width: float,
                max_open: float = MAX_OPEN, open_cap: Optional[float] = None) -> tuple[np.ndarray, np.ndarray]:
    """(mouth_open (T,) in template units, mouth_width (T,) relative) for `canonical_landmarks`;
    `max_open`: the lip gap (units) at aperture 1 and gain 1; `open_cap`: the reach of the jaw,
    approached smoothly (cap * tanh(open / cap)); None = no limit."""
    mouth_open = max_open * style.gain * np.power(aperture, style.exponent)
    if open_cap:
        mouth_open = open_cap * np.tanh(mouth_open / open_cap)
    mouth_width = base_width * (1 + style.width_gain * (spread - NEUTRAL_SPREAD)) * (1 - 0.04 * aperture)
    return mouth_open, mouth_width
