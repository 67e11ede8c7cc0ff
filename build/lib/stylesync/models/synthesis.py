"""StyleGAN2 mapping MLP and synthesis network with concatenated spatial "noise" (GPEN/StyleSync)."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConstantInput, EqualLinear, PixelNorm, StyledConv, ToRGB, stylegan_channels


def log2_size(size: int) -> int:
    log = int(math.log2(size))
    if 2**log != size or size < 4:
        raise ValueError(f"size must be a power of two >= 4, got {size}")
    return log


def n_latent(size: int) -> int:
    """Number of style inputs L = 2 * log2(size) - 2 (14 at 256)."""
    return 2 * log2_size(size) - 2


def n_noise(size: int) -> int:
    """Number of styled convs / noise inputs = 2 * log2(size) - 3 (13 at 256)."""
    return 2 * log2_size(size) - 3


def noise_resolutions(size: int) -> list[int]:
    """Resolution of each styled conv's noise input, in forward order: 4, 8, 8, 16, 16, ..., size, size."""
    return [4] + [2**r for r in range(3, log2_size(size) + 1) for _ in range(2)]


def encoder_noises(
    maps: Sequence[torch.Tensor], size: int, masked: Optional[Sequence[bool]] = None,
    mask: Optional[torch.Tensor] = None,
) -> list[torch.Tensor]:
    """Encoder maps [F_S .. F_4] -> the synthesis noise inputs F4; F8, F8; ...; F_S, F_S (GPEN's order).

    masked[i] marks the noise inputs that get `(1 - M) *` (Eq. 1), with the mask M
    (B or 1, 1, S, S), 1 = masked, area-resized to each resolution."""
    by_res = {m.shape[-1]: m for m in maps}
    res = noise_resolutions(size)
    masked = masked or [False] * len(res)
    masked_maps: dict[int, torch.Tensor] = {}  # each masked map is computed once, used twice
    noises = []
    for r, is_masked in zip(res, masked):
        f = by_res[r]
        if is_masked:
            if r not in masked_maps:
                if mask is None:
                    raise ValueError("Eq. 1 masks encoder maps of this generator: pass the lower-face mask")
                m = mask if mask.shape[-1] == r else F.interpolate(mask, size=(r, r), mode="area")
                masked_maps[r] = (1 - m.to(f.dtype)) * f
            f = masked_maps[r]
        noises.append(f)
    return noises


class MappingNetwork(nn.Module):
    """PixelNorm + n_mlp EqualLinear(lr_mul) with fused leaky ReLU; keys `style.1..n_mlp`."""

    def __init__(self, style_dim: int, n_mlp: int, lr_mlp: float = 0.01):
        super().__init__()
        self.style = nn.Sequential(
            PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)]
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, D)
        return self.style(z)


class SynthesisNetwork(nn.Module):
    """StyleGAN2 synthesis: constant 4x4 -> styled convs (2 per level) with ToRGB skips.

    forward(styles (B, L, style_dim), noises [n_noise maps, (B, C_res, res, res)]) -> (B, 3, size, size).
    With `concat_noise` each styled conv's output is `cat([features, weight * noise])`, so every
    following conv and ToRGB sees twice its width.
    """

    def __init__(
        self, size: int, style_dim: int, channel_multiplier: int = 2, narrow: float = 1.0,
        blur_kernel: Sequence[int] = (1, 3, 3, 1), concat_noise: bool = True, out_channels: int = 3,
        fused_modconv: bool = True,
    ):
        super().__init__()
        self.size, self.style_dim = size, style_dim
        self.log_size = log2_size(size)
        self.n_latent = n_latent(size)
        self.num_layers = n_noise(size)
        self.channels = stylegan_channels(channel_multiplier, narrow)
        mult = 2 if concat_noise else 1
        ch = self.channels
        kw = dict(blur_kernel=blur_kernel, concat_noise=concat_noise, fused=fused_modconv)
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, style_dim, **kw)
        self.to_rgb1 = ToRGB(ch[4] * mult, style_dim, upsample=False, out_ch=out_channels, fused=fused_modconv)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_ch = ch[4]
        for i in range(3, self.log_size + 1):
            out_ch = ch[2**i]
            self.convs.append(StyledConv(in_ch * mult, out_ch, 3, style_dim, upsample=True, **kw))
            self.convs.append(StyledConv(out_ch * mult, out_ch, 3, style_dim, **kw))
            self.to_rgbs.append(ToRGB(out_ch * mult, style_dim, blur_kernel=blur_kernel, out_ch=out_channels,
                                      fused=fused_modconv))
            in_ch = out_ch

    def forward(self, styles: torch.Tensor, noises: Sequence[torch.Tensor | None]) -> torch.Tensor:
        b = styles.shape[0]
        assert styles.shape[1:] == (self.n_latent, self.style_dim), styles.shape
        assert len(noises) == self.num_layers, (len(noises), self.num_layers)
        out = self.conv1(self.input(b), styles[:, 0], noises[0])  # (B, 2*C4, 4, 4)
        skip = self.to_rgb1(out, styles[:, 1])  # (B, 3, 4, 4)
        i = 1
        for conv_up, conv, n_up, n, to_rgb in zip(
            self.convs[::2], self.convs[1::2], noises[1::2], noises[2::2], self.to_rgbs
        ):
            out = conv_up(out, styles[:, i], n_up)  # (B, 2*C, 2H, 2W)
            out = conv(out, styles[:, i + 1], n)
            skip = to_rgb(out, styles[:, i + 2], skip)  # (B, 3, 2H, 2W)
            i += 2
        return skip
