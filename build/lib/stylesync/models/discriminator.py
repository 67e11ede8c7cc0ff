"""StyleGAN2 residual discriminator (rosinality naming: `convs.N`, `final_conv`, `final_linear`)."""
from __future__ import annotations

from torch import Tensor, nn

from ..config import DiscriminatorConfig
from .layers import ConvLayer, EqualLinear, ResBlock, minibatch_stddev, stylegan_channels
from .synthesis import log2_size


class Discriminator(nn.Module):
    """x (B, 3, S, S) in [0, 1] -> logits (B, 1). Images are mapped to [-1, 1] first, the range
    StyleGAN2 discriminators are trained on, so that a pre-trained one can initialise it."""

    INPUT_GAIN = 2.0  # d(first layer's input) / d(image): R1 is taken w.r.t. what the first layer sees

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.cfg = cfg
        size = cfg.size
        ch = stylegan_channels(cfg.channel_multiplier, cfg.narrow)
        log_size = log2_size(size)
        convs: list[nn.Module] = [ConvLayer(3, ch[size], 1)]
        in_ch = ch[size]
        for i in range(log_size, 2, -1):
            out_ch = ch[2 ** (i - 1)]
            convs.append(ResBlock(in_ch, out_ch, cfg.blur_kernel))
            in_ch = out_ch
        self.convs = nn.Sequential(*convs)
        self.final_conv = ConvLayer(in_ch + cfg.stddev_feat, ch[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(ch[4] * 4 * 4, ch[4], activation="fused_lrelu"), EqualLinear(ch[4], 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.convs(x * self.INPUT_GAIN - 1)  # (B, C4, 4, 4)
        out = minibatch_stddev(out, self.cfg.stddev_group, self.cfg.stddev_feat)
        out = self.final_conv(out)
        return self.final_linear(out.flatten(1))  # (B, 1)
