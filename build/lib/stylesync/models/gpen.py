"""GPEN blind face restoration (docs/MODELS.md, reference R7) as a configuration of the same blocks:
E_face over the 3-channel degraded face, its 4x4 bottleneck -> final_linear -> mapping MLP as the
style, its feature maps concatenated into the synthesis network as noise. No mask, no audio.

Released weights: GPEN-BFR-256 (channel_multiplier 1, narrow 0.5) and GPEN-BFR-512 (2, 1); load
them with `importers.load_gpen`. Images are RGB in [0, 1] at the API, [-1, 1] inside (as GPEN).
"""
from __future__ import annotations

import torch
from torch import nn

from .encoders import FaceEncoder
from .synthesis import MappingNetwork, SynthesisNetwork, encoder_noises

GPEN_CONFIGS = {"GPEN-BFR-256": dict(size=256, channel_multiplier=1, narrow=0.5),
                "GPEN-BFR-512": dict(size=512, channel_multiplier=2, narrow=1.0)}


class GPEN(nn.Module):
    def __init__(self, size: int = 512, channel_multiplier: int = 2, narrow: float = 1.0, style_dim: int = 512,
                 n_mlp: int = 8):
        super().__init__()
        self.size = size
        self.face_encoder = FaceEncoder(size, 3, style_dim, channel_multiplier, narrow)
        self.mapping = MappingNetwork(style_dim, n_mlp)
        self.synthesis = SynthesisNetwork(size, style_dim, channel_multiplier, narrow, concat_noise=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, S, S) in [-1, 1] -> restored (B, 3, S, S), unbounded (GPEN's convention)."""
        f, maps = self.face_encoder(x)
        w = self.mapping(f)  # (B, style_dim)
        styles = w.unsqueeze(1).expand(-1, self.synthesis.n_latent, -1)
        return self.synthesis(styles, encoder_noises(maps, self.size))

    @torch.no_grad()
    def restore(self, img: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) RGB in [0, 1] -> restored RGB in [0, 1]."""
        return ((self(img * 2 - 1) + 1) / 2).clamp(0, 1)
