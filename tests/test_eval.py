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


class _IndexCodes(torch.nn.Module):
    """Stands in for the official SyncNet in `lse`: what it sees is decoded back to clip positions.
    Lip windows: the first frame's index t, painted as 8 t into the red channel of the RGB clip
    (channel 2 of the BGR input); features code[t + lead]. Audio windows: the MFCC column s where the
    (13, 20) window sits in the clip's MFCC, s = 4 v for video frame v; features code[v]. The lip
    window of frame t thus matches the audio window `lead` frames later: the audio lags by `lead`."""

    def __init__(self, mfcc: np.ndarray, lead: int, n_codes: int = 64):
        super().__init__()
        self.mfcc = torch.from_numpy(mfcc).unfold(1, 20, 1).permute(1, 0, 2)  # (columns - 19, 13, 20)
        self.code = torch.nn.functional.normalize(torch.randn(n_codes, 16, generator=torch.Generator().manual_seed(1)), dim=1)
        self.lead = lead
        self.lip_shapes, self.aud_shapes, self.lip_starts, self.aud_starts = [], [], [], []

    def forward_lip(self, video: torch.Tensor) -> torch.Tensor:
        self.lip_shapes.append(tuple(video.shape))
        t = (video[:, 2].mean((-1, -2)) / 8).round().long()  # (B, 5): the 5 frame indices of each window
        assert torch.equal(t, t[:, :1] + torch.arange(5)), t  # 5 consecutive frames
        self.lip_starts += t[:, 0].tolist()
        return self.code[t[:, 0] + self.lead]

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        self.aud_shapes.append(tuple(mfcc.shape))
        err = (mfcc[:, None, 0] - self.mfcc[None]).abs().amax((-1, -2))  # (B, positions)
        assert (err.amin(1) == 0).all()  # every window is a slice of the clip's MFCC
        s = err.argmin(1)
        assert (s % 4 == 0).all(), s  # 4 MFCC columns (10 ms) per 40 ms video frame
        self.aud_starts += (s // 4).tolist()
        return self.code[s // 4]


@pytest.mark.parametrize("lead", [0, 3])
def test_lse_finds_a_known_offset(lead):
    n = 30
    frames = np.zeros((n, 96, 96, 3), np.uint8)
    frames[..., 0] = (8 * np.arange(n))[:, None, None]  # red: the frame index
    frames[..., 2] = 255 - frames[..., 0]  # blue: something else (an RGB/BGR mix-up reads this)
    audio = (np.random.default_rng(1).standard_normal(n * 640) * 3000).astype(np.int16)
    net = _IndexCodes(mfcc_features(audio), lead)
    s = lse(net, frames, audio, vshift=6, batch_size=7)
    windows = n - 5  # 5-frame windows that start at frames 0 .. n - 6
    assert net.lip_starts == net.aud_starts == list(range(windows))  # window v: frames v..v+4, MFCC 4v..4v+19
    assert [b for b, *_ in net.lip_shapes] == [7, 7, 7, 4] and {x[1:] for x in net.lip_shapes} == {(3, 5, 224, 224)}
    assert {x[1:] for x in net.aud_shapes} == {(1, 13, 20)}
    assert s["av_offset"] == -lead  # syncnet_python's sign: the audio lags the video by `lead` frames
    # at the best shift every window matches except the last `lead`, compared with zero padding (distance 1)
    assert s["lse_d"] == pytest.approx(lead / windows, abs=1e-4)
    assert s["lse_c"] > 1.0  # other shifts pair different unit codes (distance ~ sqrt(2))


def test_official_syncnet_on_a_clip():
    """The official network through `lse`: 1024-d features, scores that do not depend on the batching."""
    torch.manual_seed(0)
    net = SyncNetOfficial().eval()
    frames = (np.random.default_rng(0).random((20, 96, 96, 3)) * 255).astype(np.uint8)
    audio = (np.random.default_rng(1).standard_normal(20 * 640) * 3000).astype(np.int16)
    seen = []
    forward_lip = net.forward_lip
    net.forward_lip = lambda v: seen.append(forward_lip(v)) or seen[-1]
    s = lse(net, frames, audio, vshift=15, batch_size=20)
    assert [tuple(f.shape) for f in seen] == [(15, 1024)] and torch.isfinite(seen[0]).all()
    assert (seen[0][1:] - seen[0][:1]).abs().amax(1).min() > 0  # a feature per window, not one for all
    t = lse(net, frames, audio, vshift=15, batch_size=4)  # 4 batches of 4, 4, 4, 3 windows
    assert [tuple(f.shape) for f in seen[1:]] == [(4, 1024)] * 3 + [(3, 1024)]
    torch.testing.assert_close(torch.cat(seen[1:]), seen[0], rtol=1e-4, atol=1e-4)
    assert t["av_offset"] == s["av_offset"]
    assert t["lse_d"] == pytest.approx(s["lse_d"], rel=1e-4) and t["lse_c"] == pytest.approx(s["lse_c"], rel=1e-3, abs=1e-5)


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
