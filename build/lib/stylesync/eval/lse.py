"""LSE-D / LSE-C (Sync_conf) exactly as joonson/syncnet_python computes them (docs/MODELS.md, reference R6).

Video: 224x224 BGR frames in 0-255 stacked (1, 3, T, 224, 224), 5-frame windows; audio: MFCC of the
16-bit PCM (python_speech_features defaults: 13 coefficients at 100 Hz), 20 MFCC frames per window.
For every window the L2 distances to the audio windows shifted by -vshift..+vshift (zero-padded),
averaged over windows -> mdist; LSE-D = min(mdist), LSE-C = median(mdist) - min(mdist),
AV offset = vshift - argmin.

Input faces (`syncnet_faces`): syncnet_python scores square crops of the video frame around the
detected face (the face at its true aspect, background at the sides). Our aligned crops are the
3:4 template region squashed into a square, so the crop is first un-squashed (identity.py
`unsquash`) to 168x224 (w x h) and centred on a 224x224 canvas, the 28 px side bands replicating its
edge columns (as the aligned crops replicate the frame's border), then handed to `lse` unchanged.
Its scale matches syncnet_python's crop (about 100 template units high), its framing starts higher
(our crop has 20 units above the brows, theirs starts near the top of the face box).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .identity import unsquash

SYNCNET_SIZE = 224


def mfcc_features(audio_int16: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """(N,) int16 PCM -> (13, T_mfcc) as SyncNetInstance builds it."""
    import python_speech_features

    return np.stack(list(zip(*python_speech_features.mfcc(audio_int16, sample_rate)))).astype(np.float32)


def calc_pdist(feat1: torch.Tensor, feat2: torch.Tensor, vshift: int = 10) -> list[torch.Tensor]:
    """syncnet_python's calc_pdist: distances of each video feature to audio features i-vshift..i+vshift."""
    win_size = vshift * 2 + 1
    feat2p = F.pad(feat2, (0, 0, vshift, vshift))
    return [F.pairwise_distance(feat1[[i], :].repeat(win_size, 1), feat2p[i : i + win_size, :]) for i in range(len(feat1))]


def scores_from_dists(dists: list[torch.Tensor], vshift: int) -> dict:
    """(offset, LSE-C = conf, LSE-D = min dist) from the per-window distance rows."""
    mdist = torch.mean(torch.stack(dists, 1), 1)
    minval, minidx = torch.min(mdist, 0)
    offset = vshift - minidx
    conf = torch.median(mdist) - minval
    return {"av_offset": int(offset), "lse_c": float(conf), "lse_d": float(minval)}


def syncnet_faces(crops: np.ndarray) -> np.ndarray:
    """(T, S, S, 3) square aligned crops -> (T, 224, 224, 3): un-squashed to 3:4, centred, sides padded."""
    faces = [unsquash(c, SYNCNET_SIZE) for c in crops]  # (224, 168, 3) each
    pad = SYNCNET_SIZE - faces[0].shape[1]  # 56
    return np.stack([cv2.copyMakeBorder(f, 0, 0, pad // 2, pad - pad // 2, cv2.BORDER_REPLICATE) for f in faces])


@torch.no_grad()
def lse(model, frames_rgb: np.ndarray, audio_int16: np.ndarray, vshift: int = 15, batch_size: int = 20,
        device: str | torch.device = "cpu") -> dict:
    """frames (T, H, W, 3) RGB uint8 (square face crops, resized to 224: aligned crops go through
    `syncnet_faces` first), audio 16 kHz int16."""
    frames = np.stack([cv2.resize(f, (224, 224)) for f in frames_rgb])[..., ::-1].astype(np.float32)  # -> BGR
    im = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).unsqueeze(0)  # (1, 3, T, 224, 224)
    cc = torch.from_numpy(mfcc_features(audio_int16)).unsqueeze(0).unsqueeze(0)  # (1, 1, 13, T_mfcc)
    min_length = min(len(frames), int(np.floor(len(audio_int16) / 640)))
    lastframe = min_length - 5
    if lastframe <= 0:
        raise ValueError(f"clip too short for SyncNet scoring ({min_length} frames)")
    im_feat, cc_feat = [], []
    for i in range(0, lastframe, batch_size):
        idx = range(i, min(lastframe, i + batch_size))
        im_in = torch.cat([im[:, :, v : v + 5] for v in idx], 0).to(device)
        cc_in = torch.cat([cc[:, :, :, v * 4 : v * 4 + 20] for v in idx], 0).to(device)
        im_feat.append(model.forward_lip(im_in).cpu())
        cc_feat.append(model.forward_aud(cc_in).cpu())
    return scores_from_dists(calc_pdist(torch.cat(im_feat), torch.cat(cc_feat), vshift), vshift)
