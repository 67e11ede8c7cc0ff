"""Scoring generated clips against the ground truth under the self-reconstruction protocol."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .metrics import mouth_crop, mouth_psnr, ssim
from .reconstruct import frame_mels, reference_index, self_reconstruct, to_tensor


def prepare_clip(meta: dict, frames: np.ndarray, mel: np.ndarray, size: int, seed: int = 0) -> dict:
    """Ground truth at the model size, per-frame mels, the clip's fixed reference frame."""
    gt = to_tensor(frames, size)
    return {"meta": meta, "gt": gt, "mels": frame_mels(mel, len(gt)), "mel": mel,
            "ref": reference_index(meta["clip_id"], len(gt), seed)}


def generate(G, clip: dict, mask: torch.Tensor, amp: Optional[torch.dtype] = None) -> torch.Tensor:
    return self_reconstruct(G, clip["gt"], clip["mels"], clip["ref"], mask, amp=amp)


def mouth_scores(pred: torch.Tensor, clip: dict) -> dict:
    """Mouth-region PSNR and SSIM over the clip's frames, the reference frame excluded."""
    keep = torch.arange(len(pred)) != clip["ref"]
    return {"mouth_psnr": mouth_psnr(pred, clip["gt"], keep),
            "mouth_ssim": ssim(mouth_crop(pred[keep]), mouth_crop(clip["gt"][keep])).mean().item()}


def mean_scores(rows: list[dict], skip_nan: bool = False) -> dict:
    """Mean of each key over the rows ({} without rows); `skip_nan`: over the rows where it is defined."""
    if not rows:
        return {}
    mean = np.nanmean if skip_nan else np.mean
    return {k: float(mean([r[k] for r in rows])) for k in rows[0]}
