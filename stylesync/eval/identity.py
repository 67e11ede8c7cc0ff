"""D_ID: cosine similarity of ArcFace embeddings of generated and real frames (paper Sec. 4.1), with
an insightface-format ONNX model (e.g. buffalo_l's w600k_r50.onnx) read from a path."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

# insightface's 5-point template for 112x112 ArcFace crops: eyes, nose tip, mouth corners
ARCFACE_DST = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                        [70.7299, 92.2041]], dtype=np.float64)


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

    def align(self, image: np.ndarray, lm68: np.ndarray) -> np.ndarray:
        from ..face.align import similarity

        m = similarity(five_points(lm68), ARCFACE_DST)
        return cv2.warpAffine(image, m, (112, 112), borderValue=0)

    def embed(self, images: list[np.ndarray], landmarks: list[np.ndarray]) -> np.ndarray:
        """RGB uint8 images + their 68 landmarks -> L2-normalised embeddings (N, D)."""
        crops = np.stack([self.align(im, lm) for im, lm in zip(images, landmarks)]).astype(np.float32)
        x = ((crops - 127.5) / 127.5).transpose(0, 3, 1, 2)  # RGB NCHW
        emb = self.session.run(None, {self.input: x})[0].reshape(len(images), -1)
        return emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-8)

    def d_id(self, generated: list[np.ndarray], real: list[np.ndarray], landmarks: list[np.ndarray]) -> float:
        """Mean cosine similarity of generated vs real frames (aligned with the real landmarks)."""
        return float((self.embed(generated, landmarks) * self.embed(real, landmarks)).sum(1).mean())
