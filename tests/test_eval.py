"""Metric code against references: SSIM/PSNR vs scikit-image, LSE-C/LSE-D on a known distance
matrix, the official SyncNet on a clip, ArcFace D_ID through ONNX, missing metrics."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from stylesync.eval.lse import calc_pdist, lse, mfcc_features, scores_from_dists
from stylesync.eval.metrics import mouth_box, psnr, ssim
from stylesync.models.syncnet_official import SyncNetOfficial


def test_psnr_ssim_match_scikit_image():
    rng = np.random.default_rng(0)
    a = rng.random((3, 3, 48, 48)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1).astype(np.float32)
    p = psnr(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    s = ssim(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    for i in range(3):
        assert p[i] == pytest.approx(sk_psnr(b[i], a[i], data_range=1.0), rel=1e-4)
        ref = sk_ssim(b[i].transpose(1, 2, 0), a[i].transpose(1, 2, 0), data_range=1.0, channel_axis=2,
                      gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert s[i] == pytest.approx(ref, abs=2e-3)
    assert psnr(torch.from_numpy(a), torch.from_numpy(a)).max() == 100.0  # capped, as the paper's GT row


def test_lse_from_a_known_distance_matrix():
    # video features v_i, audio features a_j = v_{j - 2}: the audio lags the video by 2 windows
    torch.manual_seed(0)
    v = torch.randn(30, 8)
    a = torch.roll(v, shifts=2, dims=0)
    dists = calc_pdist(v, a, vshift=5)
    assert len(dists) == 30 and dists[10].shape == (11,)
    assert dists[10][7].item() == pytest.approx(1e-6 * np.sqrt(8), abs=1e-5)  # column vshift+2 matches
    s = scores_from_dists(dists, vshift=5)
    assert s["av_offset"] == -2
    mdist = torch.stack(dists, 1).mean(1)
    assert s["lse_d"] == pytest.approx(mdist.min().item())
    assert s["lse_c"] == pytest.approx((mdist.median() - mdist.min()).item())


def test_mfcc_matches_python_speech_features_layout():
    audio = (np.random.default_rng(0).standard_normal(16000) * 3000).astype(np.int16)
    m = mfcc_features(audio)
    assert m.shape == (13, 99) and m.dtype == np.float32  # 1 + ceil((16000 - 400) / 160) frames


def test_official_syncnet_on_a_clip():
    torch.manual_seed(0)
    net = SyncNetOfficial().eval()
    frames = (np.random.default_rng(0).random((30, 96, 96, 3)) * 255).astype(np.uint8)
    audio = (np.random.default_rng(1).standard_normal(30 * 640) * 3000).astype(np.int16)
    s = lse(net, frames, audio, vshift=15, batch_size=20)
    assert -15 <= s["av_offset"] <= 15 and s["lse_d"] > 0 and s["lse_c"] >= 0


def test_arcface_d_id_with_an_onnx_model(tmp_path):
    from stylesync.eval.identity import ArcFace
    from stylesync.face.template import canonical_landmarks, template_to_pixels

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 512))
    path = tmp_path / "w600k_random.onnx"
    torch.onnx.export(net, torch.randn(1, 3, 112, 112), str(path), input_names=["input.1"], output_names=["embedding"],
                      dynamic_axes={"input.1": {0: "n"}}, dynamo=False)
    arc = ArcFace(path)
    rng = np.random.default_rng(0)
    img = (rng.random((128, 128, 3)) * 255).astype(np.uint8)
    lm = template_to_pixels(canonical_landmarks(), 128)
    assert arc.d_id([img], [img], [lm]) == pytest.approx(1.0, abs=1e-5)
    other = (rng.random((128, 128, 3)) * 255).astype(np.uint8)
    assert arc.d_id([img], [other], [lm]) < 1.0


def test_mouth_box_contains_the_mouth():
    from stylesync.face.template import canonical_landmarks, template_to_pixels

    y0, y1, x0, x1 = mouth_box(256)
    lm = template_to_pixels(canonical_landmarks(mouth_open=4.0), 256)[48:68]
    assert (lm[:, 0] >= x0).all() and (lm[:, 0] <= x1).all() and (lm[:, 1] >= y0).all() and (lm[:, 1] <= y1).all()
