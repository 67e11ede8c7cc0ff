"""Paste-back region (stylesync/face/paste.py): `infer.paste: face` pastes only inside the frame's own
jaw and cheek contour, feathered inwards; `lower_face` keeps the band; colour matching."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from stylesync.config import InferConfig, MaskConfig, load_params
from stylesync.face.align import alignment_matrices
from stylesync.face.paste import (
    blend_mask, face_blend_mask, face_contour, landmarks_to_crop, match_colour, paste_back, paste_mask,
)
from stylesync.face.template import ALIGN_TEMPLATE, canonical_landmarks

CROP = 128
SIZE = 200  # frame side
FRAME_GREY, PRED_GREY = 60, 200


def face_in_frame(jaw_width: float = 0.85, angle: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """A face narrower than the template's, turned by `angle` degrees, in a SIZE x SIZE frame:
    landmarks (68, 2) in frame pixels and the frame -> crop affine (2, 3)."""
    lm = canonical_landmarks(jaw_width=jaw_width, mouth_open=6.0) * 1.4  # template units -> frame pixels
    m = cv2.getRotationMatrix2D((52.5, 70.0), angle, 1.0)
    lm = lm @ m[:, :2].T + m[:, 2] + [SIZE / 2 - 52.5, SIZE / 2 - 70.0]
    affine = alignment_matrices(lm[None], ALIGN_TEMPLATE, CROP)[0]
    return lm, affine


def pasted(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(SIZE, SIZE) bool: frame pixels the paste changed (a flat grey frame, a flat brighter prediction)."""
    frame = np.full((SIZE, SIZE, 3), FRAME_GREY, np.uint8)
    out = paste_back(frame, np.full((CROP, CROP, 3), PRED_GREY, np.uint8), affine, mask)
    return (out != frame).any(-1)


def region(poly: np.ndarray, grow: int = 0) -> np.ndarray:
    """(SIZE, SIZE) bool: pixels inside `poly` (P, 2, frame pixels), dilated by `grow` px (eroded if < 0)."""
    m = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(m, [np.round(poly * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    k = np.ones((2 * abs(grow) + 1,) * 2, np.uint8)
    return (cv2.dilate(m, k) if grow > 0 else cv2.erode(m, k) if grow < 0 else m).astype(bool)


@pytest.mark.parametrize("angle", [0.0, 12.0, -20.0])
def test_outside_the_jaw_contour_the_frame_is_untouched(angle):
    lm, affine = face_in_frame(angle=angle)
    band = blend_mask(CROP, MaskConfig())
    changed = pasted(paste_mask(band, lm, affine, InferConfig(paste="face")), affine)
    outside = ~region(face_contour(lm), grow=1)  # a pixel off the contour (bilinear warp)
    assert not changed[outside].any(), f"{changed[outside].sum()} px outside the face changed"
    # the places the band covers outside the face: the neck below the chin, beside the cheeks
    chin, centre = lm[8], lm[27:36].mean(0)
    down = (chin - centre) / np.linalg.norm(chin - centre)
    neck = np.round(chin + 4 * down).astype(int)
    cheeks = [np.round(lm[i] + 4 * (lm[i] - centre) / np.linalg.norm(lm[i] - centre)).astype(int) for i in (4, 12)]
    band_changed = pasted(band, affine)
    for x, y in [neck, *cheeks]:
        assert band_changed[y, x] and not changed[y, x], (x, y)


def test_inside_the_mouth_the_prediction_is_pasted():
    lm, affine = face_in_frame()
    frame = np.full((SIZE, SIZE, 3), FRAME_GREY, np.uint8)
    mask = paste_mask(blend_mask(CROP, MaskConfig()), lm, affine, InferConfig(paste="face"))
    out = paste_back(frame, np.full((CROP, CROP, 3), PRED_GREY, np.uint8), affine, mask)
    mouth = region(lm[48:60], grow=2)  # the lips and a little around them
    assert mouth.sum() > 100 and (out[mouth] == PRED_GREY).all()


def test_the_feather_is_monotone_and_zero_from_the_jaw_line_out():
    lm, affine = face_in_frame()
    lm_crop = landmarks_to_crop(lm, affine)
    mask = face_blend_mask(blend_mask(CROP, MaskConfig()), lm_crop, feather=0.03)
    assert mask.dtype == np.float32 and mask.shape == (CROP, CROP) and mask.min() == 0 and mask.max() == 1
    centre = lm_crop[48:68].mean(0)
    for i in range(3, 14):  # rays from the mouth through the jaw points below the cheek line
        t = np.linspace(0, 1.3, 400)[:, None]
        pts = (centre + t * (lm_crop[i] - centre)).astype(np.float32)  # (400, 2)
        prof = cv2.remap(mask, pts[:, :1], pts[:, 1:], cv2.INTER_LINEAR, borderValue=0)[:, 0]
        assert prof[0] == 1.0, i
        assert (np.diff(prof) <= 1e-6).all(), (i, np.diff(prof).max())
        beyond = t[:, 0] >= 1 + 2 / np.linalg.norm(lm_crop[i] - centre)  # 2 px past the jaw point (bilinear reads)
        assert (prof[beyond] == 0).all(), i  # nothing from the jaw line outwards
        assert ((prof > 0) & (prof < 1)).sum() > 10, i  # a soft edge, not a cut
    wider = face_blend_mask(blend_mask(CROP, MaskConfig()), lm_crop, feather=0.06)
    n_soft, n_soft_wider = (int(((m > 0) & (m < 1)).sum()) for m in (mask, wider))
    assert n_soft_wider > 1.5 * n_soft and wider.sum() < mask.sum()  # a wider feather reaches further in


def test_margin_moves_the_jaw_line():
    lm, affine = face_in_frame()
    band = blend_mask(CROP, MaskConfig())
    base = paste_mask(band, lm, affine, InferConfig(paste="face")).sum()
    assert paste_mask(band, lm, affine, InferConfig(paste="face", paste_margin=0.05)).sum() > base
    assert paste_mask(band, lm, affine, InferConfig(paste="face", paste_margin=-0.05)).sum() < base


def test_lower_face_keeps_the_band_and_missing_landmarks_fall_back_to_it():
    lm, affine = face_in_frame()
    band = blend_mask(CROP, MaskConfig())
    assert paste_mask(band, lm, affine, InferConfig(paste="lower_face")) is band
    assert paste_mask(band, np.full((68, 2), np.nan), affine, InferConfig(paste="face")) is band
    crop = blend_mask(CROP, MaskConfig(), "crop")
    assert paste_mask(crop, lm, affine, InferConfig(paste="crop")) is crop and crop.sum() > band.sum()
    # "face" cuts the band: never more than it, strictly less on a face narrower than the template
    face = paste_mask(band, lm, affine, InferConfig(paste="face"))
    assert np.array_equal(blend_mask(CROP, MaskConfig(), "face"), band)
    assert (face <= band + 1e-6).all() and face.sum() < 0.9 * band.sum()
    # the band pastes outside the face: the old behaviour, kept under lower_face
    outside = ~region(face_contour(lm), grow=1)
    assert pasted(band, affine)[outside].sum() > 200


def test_colour_match_takes_the_frame_colour_on_the_ring():
    lm, affine = face_in_frame()
    mask = paste_mask(blend_mask(CROP, MaskConfig()), lm, affine, InferConfig(paste="face"))
    rng = np.random.default_rng(0)
    crop = np.clip(rng.normal([150, 110, 90], 8, (CROP, CROP, 3)), 0, 255).astype(np.uint8)
    pred = np.clip(crop.astype(np.int16) + [-40, 10, 30], 0, 255).astype(np.uint8)  # a colour cast
    w = (mask * (1 - mask))[..., None]  # the ring match_colour weighs
    got = match_colour(pred, crop, mask)
    assert got.shape == crop.shape
    ring_got, ring_pred, ring_frame = ((im * w).sum((0, 1)) / w.sum() for im in (got, pred, crop))
    assert np.abs(ring_got - ring_frame).max() < 1.0 < np.abs(ring_pred - ring_frame).min()
    assert np.array_equal(match_colour(pred, crop, np.zeros_like(mask)), pred)  # no ring: unchanged


def test_face_is_the_default_paste():
    assert InferConfig().paste == "face" and load_params("params.yaml").infer.paste == "face"
    p = load_params("params.yaml", ["infer.paste=lower_face", "infer.paste_colour=true"])
    assert p.infer.paste == "lower_face" and p.infer.paste_colour is True
