"""The demo check's measurements: the image-read mouth opening on ground-truth synthetic frames, and
the keys of the check itself."""
from __future__ import annotations

import numpy as np
import torch

from stylesync.config import MaskConfig, SynthConfig
from stylesync.data.synthetic import ClipJob, make_clip
from stylesync.eval.metrics import mouth_opening, opening_agreement
from stylesync.eval.reconstruct import copy_reference
from stylesync.face.mask import mask_tensor
from stylesync.face.mouth import lip_gap
from stylesync.face.align import alignment_matrices, transform_points, warp_faces
from stylesync.face.template import ALIGN_TEMPLATE


def aligned_synthetic_clip(identity: int, crop: int = 256, size: int = 64):
    """A rendered synthetic clip, aligned as preprocessing does: frames (T, 3, size, size), landmarks in crop px."""
    clip = make_clip(SynthConfig(seconds=2.0, yaw=0.0, exposure=0.0), ClipJob("test", identity, 0, 0))
    mats = alignment_matrices(clip.landmarks.astype(np.float64), ALIGN_TEMPLATE, crop)
    faces = warp_faces(clip.frames, mats, crop)  # (T, crop, crop, 3)
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float().div(255)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="area")
    return x, transform_points(clip.landmarks.astype(np.float64), mats)


def test_mouth_opening_read_from_ground_truth_frames_follows_the_lip_gap():
    for identity in (0, 3):
        frames, lm = aligned_synthetic_clip(identity)
        gap = lip_gap(lm, 256)
        opening = mouth_opening(frames).numpy()
        assert np.corrcoef(opening, gap)[0, 1] > 0.8
        closed, wide = gap <= np.percentile(gap, 5), gap > np.percentile(gap, 75)
        assert closed.any() and wide.any()
        assert opening[wide].mean() > 0.1  # a wide mouth reads open ...
        assert opening[closed].mean() < 0.25 * opening[wide].mean()  # ... a closed one (nearly) shut


def test_mouth_opening_is_zero_on_a_uniform_face_and_grows_with_a_dark_gap():
    img = torch.full((2, 3, 64, 64), 0.7)
    y = int(64 * 0.62)
    img[1, :, y : y + 3, 24:40] = 0.05  # a dark 3-px gap across the mouth
    o = mouth_opening(img)
    assert o[0] == 0 and o[1] > 1.0


def test_opening_agreement_is_one_on_real_frames_and_zero_gain_for_copy_reference():
    frames, _ = aligned_synthetic_clip(0)
    real = mouth_opening(frames)
    corr, gain = opening_agreement(real, real)
    assert corr > 0.999 and abs(gain - 1) < 1e-6
    copied = copy_reference(frames, 10, mask_tensor(64, MaskConfig()))  # one mouth on every frame
    corr, gain = opening_agreement(mouth_opening(copied), real)
    assert corr == 0.0 and gain < 0.05  # a flat track where the real mouth moves counts 0
    other, _ = aligned_synthetic_clip(3)  # another clip's mouth: moves, but not with this one
    corr, gain = opening_agreement(mouth_opening(other), real)
    assert abs(corr) < 0.5 and gain > 0.3
    assert np.isnan(opening_agreement(real, torch.full_like(real, 2.0))[0])  # the real mouth does not move
