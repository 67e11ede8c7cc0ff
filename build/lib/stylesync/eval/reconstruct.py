"""The paper's self-reconstruction protocol (Sec. 4.1) on aligned clips: every frame is generated
from its masked self, ONE fixed reference frame of the clip and its own audio; the same reference
frame is used for every method compared."""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
import torch

from ..audio import mel_windows
from ..runtime.device import autocast


def reference_index(clip_id: str, n_frames: int, seed: int = 0) -> int:
    """The clip's fixed random reference frame (a function of the clip id and the seed only)."""
    import hashlib

    h = int(hashlib.sha1(f"{seed}:{clip_id}".encode()).hexdigest()[:8], 16)
    return h % n_frames


def to_tensor(frames: np.ndarray, size: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, size, size) float in [0, 1]."""
    if frames.shape[1] != size:
        frames = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255)


def frame_mels(mel: np.ndarray, n_frames: int) -> torch.Tensor:
    """(80, T_mel) -> per-frame Wav2Lip windows (T, 1, 80, 16)."""
    return torch.from_numpy(mel_windows(mel.astype(np.float32), np.arange(n_frames))).unsqueeze(1)


@torch.no_grad()
def self_reconstruct(G, frames: torch.Tensor, mels: torch.Tensor, ref: int, mask: torch.Tensor,
                     batch: int = 16, amp: Optional[torch.dtype] = None) -> torch.Tensor:
    """frames (T, 3, S, S), mels (T, 1, 80, 16) -> generated (T, 3, S, S) with reference frame `ref`;
    `amp`: the autocast dtype of the forward (None = fp32)."""
    dev = mask.device
    out = []
    reference = frames[ref : ref + 1].to(dev)
    for i in range(0, len(frames), batch):
        f = frames[i : i + batch].to(dev)
        with autocast(dev, amp):
            pred = G(f * (1 - mask), reference.expand(len(f), -1, -1, -1), mels[i : i + batch].to(dev), mask)
        out.append(pred.float().cpu())
    return torch.cat(out)


def composite(pred: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What paste-back shows: the method's output inside the mask, the frame outside it (T, 3, S, S)."""
    m = mask.cpu()
    return pred * m + frames * (1 - m)


def copy_reference(frames: torch.Tensor, ref: int, mask: torch.Tensor) -> torch.Tensor:
    """Baseline: each frame outside the mask, the reference frame's lower face inside it."""
    return composite(frames[ref : ref + 1], frames, mask)


def masked_input(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Baseline: the masked input itself (what the generator is given)."""
    return frames * (1 - mask.cpu())


@torch.no_grad()
def sync_scores(syncnet, frames: torch.Tensor, mel: np.ndarray, shuffle_seed: Optional[int] = None,
                stride: int = 5) -> float:
    """Mean expert SyncNet cosine over 5-frame windows of (T, 3, S, S) frames and the clip's mel;
    with `shuffle_seed`, the audio windows are paired with frame windows in a shuffled order."""
    t = len(frames)
    starts = list(range(0, t - 4, stride))
    audio = list(mel_windows(mel.astype(np.float32), starts))  # (W,) of (80, 16)
    if shuffle_seed is not None:
        perm = np.random.default_rng(shuffle_seed).permutation(len(starts))
        if len(perm) > 1 and (perm == np.arange(len(perm))).all():
            perm = np.roll(perm, 1)
        audio = [audio[i] for i in perm]
    dev = next(syncnet.parameters()).device
    vids = torch.stack([frames[s : s + 5] for s in starts]).to(dev)  # (W, 5, 3, S, S)
    mels = torch.from_numpy(np.stack(audio)).unsqueeze(1).to(dev)  # (W, 1, 80, 16)
    return float(syncnet(vids, mels).mean())
