"""A/V offset search of a clip (the `sync_check` stage's scorer).

Convention: `offset` k means video frame t is heard at audio frame t + k (k > 0: the audio is late).
Scorers: the official SyncNet (syncnet_v2, lse.py's computation; its AV offset is -k), or the
project's expert (`expert_offset`): embeddings of every 5-frame window and of every 0.2 s mel
window, the mean L2 distance (unit vectors) of frame windows to the audio shifted by each candidate
offset, offset = argmin, confidence = median - min of that curve (as LSE-C).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..audio import mel_windows
from ..layout import Layout
from ..models.store import load_syncnet
from ..runtime.device import resolve_device


@torch.no_grad()
def expert_offset(net, frames: torch.Tensor, mel: np.ndarray, max_offset: int = 15, batch: int = 64) -> dict:
    """frames (T, 3, S, S) in [0, 1], mel (80, M) of the clip's audio -> {offset, confidence,
    min_dist, curve (2 max_offset + 1,)}; candidate k is scored on the windows where t + k is inside the audio."""
    dev = next(net.parameters()).device
    t_video = len(frames) - 4  # 5-frame windows
    t_audio = max(0, int((mel.shape[1] - 16) * 25 / 80) + 1)  # windows fully inside the mel
    if t_video <= 0 or t_audio <= 0:
        raise ValueError(f"clip too short for the offset search ({len(frames)} frames)")
    starts = np.arange(t_video)
    faces = torch.cat([net.embed_face(torch.stack([frames[s : s + 5] for s in starts[i : i + batch]]).to(dev))
                       for i in range(0, t_video, batch)])  # (Wv, D)
    wins = torch.from_numpy(mel_windows(mel.astype(np.float32), np.arange(t_audio))).unsqueeze(1)  # (Wa, 1, 80, 16)
    audio = torch.cat([net.embed_audio(wins[i : i + batch].to(dev)) for i in range(0, t_audio, batch)])  # (Wa, D)
    dist = torch.cdist(faces, audio).cpu().numpy()  # (Wv, Wa)
    curve = np.full(2 * max_offset + 1, np.nan)
    for j, k in enumerate(range(-max_offset, max_offset + 1)):
        s = starts[(starts + k >= 0) & (starts + k < t_audio)]
        if len(s) >= 5:
            curve[j] = dist[s, s + k].mean()
    j = int(np.nanargmin(curve))
    return {"offset": j - max_offset, "confidence": float(np.nanmedian(curve) - curve[j]),
            "min_dist": float(curve[j]), "curve": curve}


def official_offset(model, frames_rgb: np.ndarray, audio_int16: np.ndarray, max_offset: int = 15) -> dict:
    """The official SyncNet's offset search (syncnet_python's; its AV offset is -k)."""
    from .lse import lse

    s = lse(model, frames_rgb, audio_int16, vshift=max_offset)
    return {"offset": -s["av_offset"], "confidence": s["lse_c"], "min_dist": s["lse_d"]}


class SyncScorer:
    """The `sync_check` scorer of `params.sync_check.scorer`: the official SyncNet when its weights
    are given (auto) or asked for (official), else the project's expert."""

    def __init__(self, params, device: str | torch.device = "cpu"):
        cfg, path = params.sync_check, params.paths.syncnet_official_weights
        want = str(cfg.scorer)
        if want == "official" and not (path and Path(path).exists()):
            raise FileNotFoundError(f"sync_check.scorer: official needs paths.syncnet_official_weights (syncnet_v2.model "
                                    f"of joonson/syncnet_python); it is {path!r}")
        self.name = "official" if want == "official" or (want == "auto" and path and Path(path).exists()) else "expert"
        self.search = cfg.search
        if self.name == "official":
            from ..models.importers import load_syncnet_official

            self.net = load_syncnet_official(path)
            self.frame_size = None  # the stored crop (un-squashed to 224 for the net)
        else:
            self.net = load_syncnet(Layout(params.paths).syncnet, device).eval()
            self.frame_size = self.net.cfg.size  # through the training decode path, as the expert learnt

    def __call__(self, frames_u8: np.ndarray, mel: np.ndarray, audio_int16: np.ndarray) -> dict:
        """A clip's aligned crops (T, S, S, 3) uint8, its mel and 16 kHz PCM -> offset, confidence, min_dist."""
        if self.name == "official":
            from .lse import syncnet_faces

            return official_offset(self.net, syncnet_faces(frames_u8), audio_int16, self.search)
        frames = torch.from_numpy(frames_u8).permute(0, 3, 1, 2).float().div(255)  # (T, 3, S, S)
        out = expert_offset(self.net, frames, mel, self.search)
        out.pop("curve")
        return out


def check_shard(params, url: str) -> list[dict]:
    """Every clip of one shard scored: {clip_id, split, offset, confidence, min_dist, scorer, frames}."""
    from ..data.loader import iter_clips
    from ..data.sample import npy_load

    scorer = SyncScorer(params, resolve_device(params.device))
    rows = []
    for meta, frames, sample in iter_clips([url], scorer.frame_size):
        s = scorer(frames, npy_load(sample["mel.npy"]).astype(np.float32), npy_load(sample["audio.npy"]))
        rows.append({"clip_id": meta["clip_id"], "split": meta.get("split"), "offset": int(s["offset"]),
                     "confidence": float(s["confidence"]), "min_dist": float(s["min_dist"]), "scorer": scorer.name,
                     "frames": len(frames), "source": meta["source"]})
    return rows
