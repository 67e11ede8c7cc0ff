"""The training stage's check on held-out clips: does the generated mouth follow the audio?

mouth PSNR of self-reconstruction vs the copy-the-reference-mouth baseline (same fixed reference
frame), and the expert SyncNet's score of the generated clips vs the same clips with shuffled audio.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch

from ..data.loader import iter_clips
from ..data.sample import npy_load
from .metrics import mouth_crop, psnr
from .reconstruct import copy_reference, frame_mels, reference_index, self_reconstruct, sync_scores, to_tensor


@torch.no_grad()
def demo_check(G, syncnet, urls: list[str], mask: torch.Tensor, n_clips: int, seed: int = 0) -> tuple[dict, list]:
    """-> (metrics, [(meta, generated (T,3,S,S), ground truth (T,3,S,S), audio int16)] per clip)."""
    size = mask.shape[-1]
    rows, clips = [], []
    for i, (meta, frames, sample) in enumerate(itertools.islice(iter_clips(urls), n_clips)):
        gt = to_tensor(frames, size)
        mel = npy_load(sample["mel.npy"]).astype(np.float32)
        ref = reference_index(meta["clip_id"], len(gt), seed)
        gen = self_reconstruct(G, gt, frame_mels(mel, len(gt)), ref, mask)
        base = copy_reference(gt, ref, mask)
        keep = torch.arange(len(gt)) != ref  # the reference frame itself is not scored (copying it is exact)
        row = {"mouth_psnr": psnr(mouth_crop(gen[keep]), mouth_crop(gt[keep])).mean().item(),
               "mouth_psnr_copy_reference": psnr(mouth_crop(base[keep]), mouth_crop(gt[keep])).mean().item()}
        if syncnet is not None:
            row["sync_score"] = sync_scores(syncnet, gen, mel)
            row["sync_score_shuffled_audio"] = sync_scores(syncnet, gen, mel, shuffle_seed=seed + i)
        rows.append(row)
        clips.append((meta, gen, gt, npy_load(sample["audio.npy"])))
    metrics = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}
    metrics["clips"] = len(rows)
    return metrics, clips
