"""D_ID: cosine similarity of ArcFace embeddings of generated and real frames (paper Sec. 4.1), with
an insightface-format ONNX model (e.g. buffalo_l's w600k_r50.onnx) read from a path; and the aspect
restore every face network scorer (SyncNet, ArcFace, dlib's descriptor) applies first.

Aspect restore: the aligned crops of the shards are the authors' 210x280 (3:4, 75 x 100 template
units) region squashed into a square crop_size x crop_size image (face/align.py crop_scale), so a
face in them is 4/3 too wide. The networks were trained on faces at their true aspect (SyncNet on
square crops of the video frame, ArcFace / dlib on similarity-aligned chips: a similarity cannot undo
the squash), so each scorer first resizes the square crop back to 3:4 (`unsquash`, width = 0.75 x
height, at a height where its own alignment is about 1:1) and maps the crop's landmarks
(`unsquash_points`, landmarks.npy holds them in crop pixels) the same way. ArcFace then aligns the
112x112 input by a similarity from the 5 points of the real frame's landmarks (generated and real
frames alike) onto insightface's template; D_ID = mean cosine similarity.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..face.template import TEMPLATE_BOX

ASPECT = TEMPLATE_BOX[0] / TEMPLATE_BOX[1]  # width / height of the template region (0.75)
# insightface's 5-point template for 112x112 ArcFace crops: eyes, nose tip, mouth corners
ARCFACE_DST = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                        [70.7299, 92.2041]], dtype=np.float64)
ARCFACE_HEIGHT = 112  # un-squashed crop height at which the 5-point similarity onto ARCFACE_DST is ~1:1


def unsquash(crop: np.ndarray, height: int) -> np.ndarray:
    """(S, S, 3) square aligned crop -> (height, round(0.75 height), 3): the template region at its
    true 3:4 aspect (area interpolation when shrinking, bilinear when enlarging)."""
    width = int(round(ASPECT * height))
    shrink = height < crop.shape[0]
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def unsquash_points(points: np.ndarray, side: int, height: int) -> np.ndarray:
    """(..., 2) pixels of an (side, side) crop -> pixels of `unsquash(crop, height)` (cv2.resize's
    mapping: pixel centres at integers)."""
    scale = np.array([int(round(ASPECT * height)), height], np.float64) / side
    return (np.asarray(points, np.float64) + 0.5) * scale - 0.5


def five_points(lm68: np.ndarray) -> np.ndarray:
    """(68, 2) -> the 5 ArcFace points (eye centres, nose tip, mouth corners)."""
    return np.stack([lm68[36:42].mean(0), lm68[42:48].mean(0), lm68[30], lm68[48], lm68[54]])


class ArcFace:
    def __init__(self, onnx_path: str | Path):
        import onnxruntime as ort

        if not Path(onnx_path).exists():
            raise FileNotFoundError(f"ArcFace ONNX model {onnx_path} does not exist")
        self.session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def align(self, crop: np.ndarray, lm68: np.ndarray) -> np.ndarray:
        """(S, S, 3) square aligned crop + its (68, 2) landmarks -> (112, 112, 3) ArcFace input."""
        from ..face.align import similarity

        image = unsquash(crop, ARCFACE_HEIGHT)
        m = similarity(five_points(unsquash_points(lm68, crop.shape[0], ARCFACE_HEIGHT)), ARCFACE_DST)
        return cv2.warpAffine(image, m, (112, 112), borderValue=0)

    def embed(self, crops: list[np.ndarray], landmarks: list[np.ndarray]) -> np.ndarray:
        """RGB uint8 square aligned crops + their 68 landmarks (crop pixels) -> L2-normalised embeddings (N, D)."""
        x = np.stack([self.align(im, lm) for im, lm in zip(crops, landmarks)]).astype(np.float32)
        x = ((x - 127.5) / 127.5).transpose(0, 3, 1, 2)  # RGB NCHW
        emb = self.session.run(None, {self.input: x})[0].reshape(len(crops), -1)
        return emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-8)

    def d_id(self, generated: list[np.ndarray], real: list[np.ndarray], landmarks: list[np.ndarray]) -> float:
        """Mean cosine similarity of generated vs real frames (aligned with the real landmarks)."""
        return float((self.embed(generated, landmarks) * self.embed(real, landmarks)).sum(1).mean())
