"""Expert SyncNet (Wav2Lip's SyncNet_color; docs/MODELS.md, reference R3), input resolution a parameter.

Visual: the lower half of 5 consecutive aligned faces, stacked on channels (B, 15, S/2, S).
Audio: the mel window of the same 0.2 s (B, 1, 80, 16). Both -> L2-normalised embeddings; the
cosine of the pair is the sync probability (BCE in training, -cos as L_sync in Eq. 4).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import SyncNetConfig
from .encoders import wav2lip_audio_tower


class ConvBN(nn.Module):
    """Conv2d -> BatchNorm [-> + x] -> ReLU (Wav2Lip's `Conv2d` block)."""

    def __init__(self, in_ch: int, out_ch: int, kernel, stride, padding, residual: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding)
        self.norm = nn.BatchNorm2d(out_ch)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm(self.conv(x))
        if self.residual:
            out = out + x
        return F.relu(out)


def face_tower(size: int, n_frames: int = 5, base: int = 32) -> nn.Sequential:
    """(B, 3*n_frames, size/2, size) -> (B, 512, 1, 1). At size 96 this is Wav2Lip's face encoder
    (48x96 -> 46x47 -> 23x24 -> 12x12 -> 6x6 -> 3x3 -> 1x1); other sizes add or drop stride-2
    stages (one per factor of two) and end in a global average pool."""
    n_down = max(1, round(4 + math.log2(size / 96)))
    stages = [(4 * base, 3), (8 * base, 2), (16 * base, 2)] + [(16 * base, 1)] * max(0, n_down - 4)
    stages = stages[: n_down - 1] + [(16 * base, 0)] if n_down >= 4 else stages[:n_down]
    layers: list[nn.Module] = [ConvBN(3 * n_frames, base, 7, 1, 3), ConvBN(base, 2 * base, 5, (1, 2), 1)]
    layers += [ConvBN(2 * base, 2 * base, 3, 1, 1, residual=True) for _ in range(2)]
    in_ch = 2 * base
    for out_ch, n_res in stages:
        layers.append(ConvBN(in_ch, out_ch, 3, 2, 1))
        layers += [ConvBN(out_ch, out_ch, 3, 1, 1, residual=True) for _ in range(n_res)]
        in_ch = out_ch
    layers += [ConvBN(in_ch, 16 * base, 3, 1, 0), ConvBN(16 * base, 16 * base, 1, 1, 0), nn.AdaptiveAvgPool2d(1)]
    return nn.Sequential(*layers)


class ExpertSyncNet(nn.Module):
    def __init__(self, cfg: SyncNetConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.embed_dim != 16 * cfg.base_channels:
            raise ValueError(f"syncnet.embed_dim must be 16 * base_channels ({16 * cfg.base_channels})")
        self.face_encoder = face_tower(cfg.size, cfg.n_frames, cfg.base_channels)
        self.audio_encoder = wav2lip_audio_tower(ConvBN, n_res_256=2, base=cfg.base_channels)

    def visual_input(self, frames: torch.Tensor) -> torch.Tensor:
        """Aligned faces (B, T=n_frames, 3, H, W) in [0, 1] -> lower halves stacked (B, 3T, S/2, S)."""
        b, t, c, h, w = frames.shape
        x = frames.reshape(b * t, c, h, w)
        if h != self.cfg.size or w != self.cfg.size:
            x = F.interpolate(x, size=(self.cfg.size, self.cfg.size), mode="bilinear", align_corners=False,
                              antialias=True)
        x = x[:, :, self.cfg.size // 2 :]
        return x.reshape(b, t * c, self.cfg.size // 2, self.cfg.size)

    def embed_face(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, D) unit vectors."""
        return F.normalize(self.face_encoder(self.visual_input(frames)).flatten(1), dim=1)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, 1, 80, 16) -> (B, D) unit vectors."""
        return F.normalize(self.audio_encoder(mel).flatten(1), dim=1)

    def forward(self, frames: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """Cosine similarity in [0, 1] (both embeddings are non-negative after ReLU). (B,)"""
        return (self.embed_face(frames) * self.embed_audio(mel)).sum(1)
