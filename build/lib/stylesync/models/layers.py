"""StyleGAN2 building blocks with the rosinality/GPEN state-dict naming.

Equalized learning rate (weights scaled at run time), modulated convolution with demodulation,
FIR blur on up/down-sampling, concatenated "noise" injection (GPEN, StyleSync), minibatch stddev.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .ops import LRELU_GAIN, LRELU_SLOPE, fused_leaky_relu_, make_kernel, upfirdn2d


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D)
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: a fresh intermediate (modified in place)
        return fused_leaky_relu_(x, self.bias)


class ScaledLeakyReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: a fresh intermediate (modified in place)
        return fused_leaky_relu_(x, None)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate and an optional fused leaky ReLU."""

    def __init__(
        self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
        lr_mul: float = 1.0, activation: Optional[str] = None, zero_init: bool = False,
    ):
        super().__init__()
        init = torch.zeros(out_dim, in_dim) if zero_init else torch.randn(out_dim, in_dim).div_(lr_mul)
        self.weight = nn.Parameter(init)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out)
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu_(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)


class EqualConv2d(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_ch * kernel_size**2)
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class Blur(nn.Module):
    """FIR low-pass (upfirdn2d with up = down = 1); `upsample_factor` rescales the kernel gain."""

    def __init__(self, kernel: Sequence[int], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * upsample_factor**2
        self.register_buffer("kernel", k)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling (ToRGB skip path)."""

    def __init__(self, kernel: Sequence[int], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution (StyleGAN2). x: (B, in, H, W), style: (B, style_dim).

    `fused=True` folds the per-sample weights into one grouped convolution (the reference form);
    `fused=False` scales activations instead and runs one shared-weight convolution (same result).
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int, demodulate: bool = True,
        upsample: bool = False, blur_kernel: Sequence[int] = (1, 3, 3, 1), fused: bool = True,
    ):
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_ch, out_ch, kernel_size
        self.upsample, self.demodulate, self.fused = upsample, demodulate, fused
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_ch * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.modulation(style)  # (B, in)
        weight = self.scale * self.weight  # (1, out, in, k, k)
        if self.fused:
            weight = weight * s.reshape(b, 1, c, 1, 1)  # (B, out, in, k, k)
            if self.demodulate:
                demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)  # (B, out)
                weight = weight * demod.reshape(b, self.out_channel, 1, 1, 1)
            x = x.reshape(1, b * c, h, w)
            if self.upsample:
                # grouped transposed conv wants (B*in, out, k, k)
                weight = weight.transpose(1, 2).reshape(b * c, self.out_channel, self.kernel_size, self.kernel_size)
                out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=b)
            else:
                weight = weight.reshape(b * self.out_channel, c, self.kernel_size, self.kernel_size)
                out = F.conv2d(x, weight, padding=self.padding, groups=b)
            out = out.reshape(b, self.out_channel, out.shape[-2], out.shape[-1])
        else:
            x = x * s.reshape(b, c, 1, 1)
            w0 = weight[0]  # (out, in, k, k)
            if self.upsample:
                out = F.conv_transpose2d(x, w0.transpose(0, 1), padding=0, stride=2)
            else:
                out = F.conv2d(x, w0, padding=self.padding)
            if self.demodulate:
                # sum_i,k (w_oik * s_bi)^2 = (s_b^2) @ (sum_k w_oik^2)^T
                demod = torch.rsqrt(s.pow(2) @ w0.pow(2).sum([2, 3]).t() + 1e-8)  # (B, out)
                out = out.mul_(demod.reshape(b, self.out_channel, 1, 1))  # fresh conv output: in place
        if self.upsample:
            out = self.blur(out)  # (B, out, 2H, 2W)
        return out


class NoiseInjection(nn.Module):
    """StyleGAN2 noise; with `concat=True` (GPEN, StyleSync) the map is concatenated on channels
    as `cat([x, weight * noise])`, with `weight` a learnable scalar initialised to zero."""

    def __init__(self, concat: bool = True):
        super().__init__()
        self.concat = concat
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        if noise is None:
            b, _, h, w = x.shape
            noise = x.new_empty(b, x.shape[1] if self.concat else 1, h, w).normal_()
        if not self.concat:
            return x + self.weight * noise
        if torch.is_grad_enabled():
            return torch.cat([x, self.weight * noise], dim=1)
        # inference: write both halves into one buffer (one full-size allocation instead of two)
        b, c, h, w = x.shape
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and c > 1 else torch.contiguous_format
        out = torch.empty((b, c + noise.shape[1], h, w), dtype=x.dtype, device=x.device, memory_format=fmt)
        out[:, :c].copy_(x)
        torch.mul(noise, self.weight.to(x.dtype), out=out[:, c:])
        return out


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated conv -> noise injection -> fused bias + leaky ReLU. With concatenated noise the
    output has 2 * out_ch channels (and the activation's bias covers both halves)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int, upsample: bool = False,
        blur_kernel: Sequence[int] = (1, 3, 3, 1), demodulate: bool = True, concat_noise: bool = True,
        fused: bool = True,
    ):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel_size, style_dim, demodulate, upsample, blur_kernel, fused)
        self.noise = NoiseInjection(concat_noise)
        self.activate = FusedLeakyReLU(out_ch * (2 if concat_noise else 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) to RGB, plus the upsampled skip from the last level."""

    def __init__(self, in_ch: int, style_dim: int, upsample: bool = True, blur_kernel: Sequence[int] = (1, 3, 3, 1),
                 out_ch: int = 3, fused: bool = True):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_ch, out_ch, 1, style_dim, demodulate=False, fused=fused)
        self.bias = nn.Parameter(torch.zeros(1, out_ch, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConvLayer(nn.Sequential):
    """[Blur] -> EqualConv2d -> [FusedLeakyReLU]; a Sequential so keys read `N.0.weight`, `N.1.bias`."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, downsample: bool = False,
        blur_kernel: Sequence[int] = (1, 3, 3, 1), bias: bool = True, activate: bool = True,
    ):
        layers: list[nn.Module] = []
        if downsample:
            factor = 2
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_ch, out_ch, kernel_size, stride, padding, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_ch) if bias else ScaledLeakyReLU())
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Discriminator residual block: two convs (the second downsamples) + 1x1 skip, / sqrt(2)."""

    def __init__(self, in_ch: int, out_ch: int, blur_kernel: Sequence[int] = (1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=True, blur_kernel=blur_kernel, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in, H, W) -> (B, out, H/2, W/2)
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, n_feat: int = 1) -> torch.Tensor:
    """Append the per-group feature stddev as extra channels. x: (B, C, H, W) -> (B, C + n_feat, H, W).

    The group is the largest divisor of B that is <= group_size (rosinality fails when B is not a
    multiple of min(B, group_size); this keeps the same statistics whenever it does not)."""
    b, c, h, w = x.shape
    group = max(g for g in range(1, min(b, group_size) + 1) if b % g == 0)
    y = x.reshape(group, -1, n_feat, c // n_feat, h, w)
    y = torch.sqrt(y.var(0, unbiased=False) + 1e-8)  # (B/g, F, C/F, H, W)
    y = y.mean([2, 3, 4], keepdim=True).squeeze(2)  # (B/g, F, 1, 1)
    y = y.repeat(group, 1, h, w)  # (B, F, H, W)
    return torch.cat([x, y], dim=1)


def stylegan_channels(channel_multiplier: int = 2, narrow: float = 1.0) -> dict[int, int]:
    """Feature width per resolution (docs/MODELS.md, reference R1; GPEN's `narrow`)."""
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
            256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    return {res: max(1, int(ch * narrow)) for res, ch in base.items()}
