"""E_face (GPEN-style spatial encoder) and E_a (Wav2Lip audio tower with GroupNorm)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .layers import ConvLayer, EqualLinear, stylegan_channels
from .synthesis import log2_size


class FaceEncoder(nn.Module):
    """x (B, in_ch, S, S) -> (f_f (B, out_dim), maps [F_S, F_S/2, ..., F_4]).

    `ecd0` is a 1x1 conv to channels[S]; `ecd1..` each halve the resolution (blur + stride-2 3x3
    conv + fused leaky ReLU) down to 4x4; `final_linear` maps the flattened 4x4 bottleneck to f_f.
    Keys follow GPEN's FullGenerator (`ecd{i}`, `final_linear`).
    """

    def __init__(self, size: int, in_ch: int, out_dim: int, channel_multiplier: int = 2, narrow: float = 1.0,
                 blur_kernel: Sequence[int] = (1, 3, 3, 1)):
        super().__init__()
        self.log_size = log2_size(size)
        ch = stylegan_channels(channel_multiplier, narrow)
        self.n_maps = self.log_size - 1
        self.ecd0 = ConvLayer(in_ch, ch[size], 1)
        in_c = ch[size]
        for n, i in enumerate(range(self.log_size - 1, 1, -1), start=1):
            out_c = ch[2**i]
            setattr(self, f"ecd{n}", ConvLayer(in_c, out_c, 3, downsample=True, blur_kernel=blur_kernel))
            in_c = out_c
        self.final_linear = EqualLinear(ch[4] * 4 * 4, out_dim, activation="fused_lrelu")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        maps = []
        for n in range(self.n_maps):
            x = getattr(self, f"ecd{n}")(x)
            maps.append(x)  # (B, C_r, r, r), r = S / 2**n
        return self.final_linear(x.flatten(1)), maps


class AudioConv(nn.Module):
    """Conv2d -> GroupNorm [-> + x] -> LeakyReLU(0.01): Wav2Lip's block with BatchNorm/ReLU swapped."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride, padding: int, residual: bool = False,
                 groups: int = 32):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding)
        self.norm = nn.GroupNorm(min(groups, out_ch), out_ch)
        self.act = nn.LeakyReLU(0.01)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm(self.conv(x))
        if self.residual:
            out = out + x
        return self.act(out)


def wav2lip_audio_tower(block: type[nn.Module], n_res_256: int = 1, base: int = 32, **kw) -> nn.Sequential:
    """Wav2Lip's audio tower: (B, 1, 80, 16) mel window -> (B, 16 * base, 1, 1) (512 at base 32).
    Shapes: 80x16 -> 27x16 -> 9x6 -> 3x3 -> 1x1. The generator's tower has one residual block at
    8 * base channels (`n_res_256=1`), the expert SyncNet's has two."""
    c1, c2, c3, c4, c5 = base, 2 * base, 4 * base, 8 * base, 16 * base
    return nn.Sequential(
        block(1, c1, 3, 1, 1, **kw),
        block(c1, c1, 3, 1, 1, residual=True, **kw),
        block(c1, c1, 3, 1, 1, residual=True, **kw),
        block(c1, c2, 3, (3, 1), 1, **kw),
        block(c2, c2, 3, 1, 1, residual=True, **kw),
        block(c2, c2, 3, 1, 1, residual=True, **kw),
        block(c2, c3, 3, 3, 1, **kw),
        block(c3, c3, 3, 1, 1, residual=True, **kw),
        block(c3, c3, 3, 1, 1, residual=True, **kw),
        block(c3, c4, 3, (3, 2), 1, **kw),
        *[block(c4, c4, 3, 1, 1, residual=True, **kw) for _ in range(n_res_256)],
        block(c4, c5, 3, 1, 0, **kw),
        block(c5, c5, 1, 1, 0, **kw),
    )


class AudioEncoder(nn.Module):
    """E_a: mel window (B, 1, 80, 16) -> f_a (B, out_dim)."""

    def __init__(self, out_dim: int = 512, base: int = 32, groups: int = 32):
        super().__init__()
        self.audio_encoder = wav2lip_audio_tower(AudioConv, base=base, groups=groups)
        self.fc = EqualLinear(16 * base, out_dim, activation="fused_lrelu")

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        assert mel.shape[1:] == (1, 80, 16), mel.shape
        return self.fc(self.audio_encoder(mel).flatten(1))
