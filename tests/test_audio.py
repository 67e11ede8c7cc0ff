"""Wav2Lip mel: numerically the reference (computed by Wav2Lip's own audio.py) and frame windows."""
from pathlib import Path

import numpy as np
import pytest

from stylesync.audio import MEL_STEP, mel_start, mel_windows, melspectrogram, pad_mel_for_frames

FIXTURES = Path(__file__).parent / "fixtures"


def reference_signal() -> np.ndarray:
    return np.random.RandomState(0).randn(32000).astype(np.float32) * 0.1 + 0.3 * np.sin(2 * np.pi * 220 * np.arange(32000) / 16000)


def test_mel_matches_wav2lip_reference():
    # fixture: Wav2Lip's audio.melspectrogram on this signal with the STFT defaults of the librosa 0.7.0
    # it pins (reflect padding); see tests/fixtures/README.md
    ref = np.load(FIXTURES / "wav2lip_mel_ref.npy")
    mel = melspectrogram(reference_signal())
    assert mel.shape == ref.shape == (80, 161) and mel.dtype == np.float32
    np.testing.assert_allclose(mel, ref, atol=1e-5)


def test_constant_padding_only_changes_edges():
    a = melspectrogram(reference_signal())
    b = melspectrogram(reference_signal(), pad_mode="constant")
    np.testing.assert_allclose(a[:, 3:-3], b[:, 3:-3], atol=1e-5)
    assert np.abs(a[:, :2] - b[:, :2]).max() > 0.1


def test_mel_range_and_silence():
    mel = melspectrogram(np.zeros(16000))
    assert mel.shape == (80, 81)
    assert np.all(mel == -4.0)
    with pytest.raises(ValueError):
        melspectrogram(np.zeros((2, 100)))


def test_windows_per_video_frame():
    assert [mel_start(i) for i in range(6)] == [0, 3, 6, 9, 12, 16]
    mel = np.arange(80 * 20, dtype=np.float32).reshape(80, 20)
    w = mel_windows(mel, [0, 1, 5])
    assert w.shape == (3, 80, MEL_STEP)
    np.testing.assert_array_equal(w[1], mel[:, 3:19])
    # the last frames get a full window by edge padding
    padded = pad_mel_for_frames(mel, 10)
    assert padded.shape[1] == mel_start(9) + MEL_STEP
    np.testing.assert_array_equal(padded[:, -1], mel[:, -1])
