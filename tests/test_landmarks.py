"""Landmark backends (face-alignment through the real package with random weights in its own format;
sidecars), box interpolation and temporal smoothing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stylesync.config import FaceConfig, GateConfig, LandmarksConfig, PreprocessConfig
from stylesync.data.preprocess import process_clip
from stylesync.face.landmarks import (
    FAN_FILE, S3FD_FILE, FaceAlignmentLandmarks, interpolate_boxes, load_sidecar, smooth_landmarks,
)

from drawn_clips import make_clip


@pytest.fixture(scope="module")
def random_fa_weights(tmp_path_factory):
    """Randomly initialised FAN(4) and S3FD state dicts saved under face-alignment's own file names."""
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    home = tmp_path_factory.mktemp("torch_home")
    ckpt = home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(FAN(4).state_dict(), ckpt / FAN_FILE)
    torch.save(s3fd().state_dict(), ckpt / S3FD_FILE)
    return home


def test_missing_weights_error_says_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="2DFAN4-11f355bf06.pth.tar"):
        FaceAlignmentLandmarks(LandmarksConfig(backend="face_alignment", weights_dir=str(tmp_path)))


def test_face_alignment_backend_runs_batched(random_fa_weights, tmp_path):
    """The backend inside the per-clip pipeline, run once. With random weights S3FD fires all over every
    frame (~100 boxes of about the same size): boxes on every key frame, so FAN runs on every frame (in
    batches), and the several-faces gate rejects the clip on what the backend reported."""
    cfg = LandmarksConfig(backend="face_alignment", weights_dir=str(random_fa_weights), detect_every=5, batch_size=8)
    fa = FaceAlignmentLandmarks(cfg)
    path = make_clip(tmp_path / "c.mp4", n_frames=10)
    calls, runs = [], []
    original = fa.fa.face_alignment_net.forward
    fa.fa.face_alignment_net.forward = lambda x: calls.append(x.shape[0]) or original(x)

    def landmarker(frames, cuts):
        runs.append(fa(frames, cuts))
        return runs[-1]

    gates = GateConfig(min_frames=10)
    res = process_clip({"clip_id": "x", "path": str(path), "identity": "i", "split": "train"},  # no sidecar
                       PreprocessConfig(gates=gates), FaceConfig(crop_size=64), landmarker=landmarker)
    assert len(runs) == 1, res.failure
    track = runs[0]
    assert track.landmarks.shape == (10, 68, 2) and track.landmarks.dtype == np.float32
    keys, between = [0, 5, 9], [1, 2, 3, 4, 6, 7, 8]  # detect_every=5, and the last frame
    assert (track.n_faces[keys] > 1).all() and (track.n_faces[between] == -1).all()
    assert np.isfinite(track.landmarks).all()  # boxes interpolated between key frames: FAN ran everywhere
    assert calls == [8, 2]  # FAN ran batched over the 10 frames
    assert (track.second_face_ratio[keys] >= gates.several_faces_ratio).all() and (track.second_face_ratio[between] == 0).all()
    assert res.sample is None and (res.failure["stage"], res.failure["reason"]) == ("landmarks", "several_faces")


def test_interpolate_boxes():
    boxes = interpolate_boxes({0: np.array([0, 0, 10, 10.0]), 4: np.array([4, 4, 14, 14.0]), 20: np.array([0, 0, 1, 1.0])},
                              22, max_gap=8)
    np.testing.assert_allclose(boxes[2], [2, 2, 12, 12])
    assert np.isnan(boxes[10]).all() and np.isnan(boxes[21]).all() and np.isfinite(boxes[20]).all()


def test_smoothing_fills_short_gaps_and_reduces_jitter():
    rng = np.random.default_rng(0)
    truth = np.cumsum(rng.normal(0, 0.1, (100, 68, 2)), axis=0) + 50
    noisy = truth + rng.normal(0, 1.0, truth.shape)
    noisy[10:12] = np.nan  # short gap: filled
    noisy[50:60] = np.nan  # long gap: stays empty
    sm = smooth_landmarks(noisy, sigma=2.0, max_gap=3)
    assert np.isfinite(sm[10:12]).all() and np.isnan(sm[50:60]).all()
    ok = np.isfinite(noisy).all(axis=(1, 2))
    assert np.abs(sm[ok] - truth[ok]).mean() < 0.6 * np.abs(noisy[ok] - truth[ok]).mean()


def test_sidecar_main_face_is_the_largest(tmp_path):
    small = np.zeros((3, 68, 2), np.float32) + np.linspace(0, 10, 68)[None, :, None]
    large = np.zeros((3, 68, 2), np.float32) + np.linspace(0, 50, 68)[None, :, None]
    arr = np.stack([small, large], axis=1)  # (T, F=2, 68, 2)
    arr[2, 0] = np.nan
    np.save(tmp_path / "s.npy", arr)
    track = load_sidecar(tmp_path / "s.npy")
    np.testing.assert_array_equal(track.landmarks, large.astype(np.float32))
    np.testing.assert_array_equal(track.n_faces, [2, 2, 1])
    assert track.second_face_ratio[0] == pytest.approx(0.2) and track.second_face_ratio[2] == 0
