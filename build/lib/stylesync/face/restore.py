"""GPEN cleanup of aligned face crops (the paper applies GPEN to the VoxCeleb2 test set)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from ..config import GPENConfig
from ..models.gpen import GPEN_CONFIGS
from ..models.importers import load_gpen


class GPENRestorer:
    """(T, S, S, 3) uint8 crops -> restored crops, batched, at GPEN's own resolution."""

    def __init__(self, cfg: GPENConfig, device: str = "cpu"):
        if not cfg.weights:
            raise FileNotFoundError("preprocess.gpen.enabled is true but preprocess.gpen.weights is not set "
                                    "(the path of the official GPEN-BFR-256.pth or GPEN-BFR-512.pth)")
        if not Path(cfg.weights).exists():
            raise FileNotFoundError(f"GPEN weights {cfg.weights} do not exist")
        self.cfg = cfg
        self.size = GPEN_CONFIGS[cfg.model]["size"]
        self.device = torch.device(device)
        self.model = load_gpen(cfg.weights, cfg.model).to(self.device).eval()

    @torch.no_grad()
    def __call__(self, crops: np.ndarray) -> np.ndarray:
        t, s = len(crops), crops.shape[1]
        out = np.empty_like(crops)
        for i in range(0, t, self.cfg.batch_size):
            batch = crops[i : i + self.cfg.batch_size]
            if s != self.size:
                batch = np.stack([cv2.resize(f, (self.size, self.size), interpolation=cv2.INTER_CUBIC) for f in batch])
            x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float() / 255  # (B, 3, G, G)
            y = self.model.restore(x)
            y = self.cfg.alpha * y + (1 - self.cfg.alpha) * x
            res = (y.permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
            if s != self.size:
                res = np.stack([cv2.resize(f, (s, s), interpolation=cv2.INTER_AREA) for f in res])
            out[i : i + len(res)] = res
        return out
