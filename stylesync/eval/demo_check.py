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
from .protocol import generate, mean_scores, mouth_scores, prepare_clip
from .reconstruct import copy_reference, sync_scores


@torch.no_grad()
def demo_check(G, syncnet, urls: list[str], mask: torch.Tensor, n_clips: int, seed: int = 0) -> tuple[dict, list]:
    """-> (metrics, [(meta, generated (T,3,S,S), ground truth (T,3,S,S), audio int16)] per clip)."""
    rows, clips = [], []
    for i, (meta, frames, sample) in enumerate(itertools.islice(iter_clips(urls), n_clips)):
        clip = prepare_clip(meta, frames, npy_load(sample["mel.npy"]).astype(np.float32), mask.shape[-1], seed)
        gen = generate(G, clip, mask)
        base = copy_reference(clip["gt"], clip["ref"], mask)
        row = {"mouth_psnr": mouth_scores(gen, clip)["mouth_psnr"],
               "mouth_psnr_copy_reference": mouth_scores(base, clip)["mouth_psnr"]}
        if syncnet is not None:
            row["sync_score"] = sync_scores(syncnet, gen, clip["mel"])
            row["sync_score_shuffled_audio"] = sync_scores(syncnet, gen, clip["mel"], shuffle_seed=seed + i)
        rows.append(row)
        clips.append((meta, gen, clip["gt"], npy_load(sample["audio.npy"])))
    return {**mean_scores(rows), "clips": len(rows)}, clips
