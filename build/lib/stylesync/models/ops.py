"""Pure-PyTorch StyleGAN2 primitives: FIR up/down-sampling and the fused bias + leaky ReLU.

No custom CUDA: both are exact compositions of standard ops and support double backward (R1).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def make_kernel(k: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """1-D taps -> normalised 2-D separable FIR kernel (outer product, sums to 1)."""
    k = torch.as_tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with `kernel` (true convolution), downsample.

    x: (N, C, H, W); kernel: (kh, kw). `pad` = (before, after), the same on both axes; negative
    values crop. Output: (N, C, (H*up + p0 + p1 - kh) // down + 1, same for W).
    """
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    if up > 1:
        # (N, C, H, 1, W, 1) -> zeros between samples -> (N, C, H*up, W*up)
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    p0, p1 = pad
    conv_pad = 0
    if p0 == p1 and p0 >= 0:
        conv_pad = p0  # symmetric: let the convolution pad (saves a padded copy)
    else:
        x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
        if p0 < 0 or p1 < 0:
            x = x[:, :, max(-p0, 0) : x.shape[2] - max(-p1, 0), max(-p0, 0) : x.shape[3] - max(-p1, 0)]
    # true convolution = correlation with the flipped kernel; depthwise over channels
    weight = torch.flip(kernel, [0, 1]).to(x.dtype).reshape(1, 1, kh, kw).repeat(c, 1, 1, 1)
    return F.conv2d(x, weight, stride=down, padding=conv_pad, groups=c)


def fused_leaky_relu_(x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """In-place `fused_leaky_relu` for fresh intermediates (conv/linear/cat outputs, which their
    backward does not save): three in-place passes instead of three new full-size tensors."""
    if bias is not None:
        x = x.add_(bias.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2)))
    return F.leaky_relu_(x.mul_(LRELU_GAIN), LRELU_SLOPE)  # lrelu(z) * c == lrelu(z * c) for c > 0


def fused_leaky_relu(
    x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float = LRELU_SLOPE, scale: float = LRELU_GAIN
) -> torch.Tensor:
    """leaky_relu(x + bias) * sqrt(2); bias is per channel (dim 1)."""
    if bias is not None:
        shape = [1, -1] + [1] * (x.ndim - 2)
        x = x + bias.to(x.dtype).reshape(shape)
    return F.leaky_relu(x, negative_slope) * scale
