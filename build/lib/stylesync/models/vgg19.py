"""VGG19 feature extractor for the perceptual loss (paper Eq. 2), torchvision layout, no torchvision.

`features.N` indices match torchvision's `vgg19().features`, so its ImageNet state dict loads
directly (see `checkpoint.load_vgg19_torchvision`). Never used with random weights as "perceptual".
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
# torchvision `features` index of the ReLU after each named conv
VGG19_LAYERS = {
    "relu1_1": 1, "relu1_2": 3, "relu2_1": 6, "relu2_2": 8, "relu3_1": 11, "relu3_2": 13, "relu3_3": 15,
    "relu3_4": 17, "relu4_1": 20, "relu4_2": 22, "relu4_3": 24, "relu4_4": 26, "relu5_1": 29, "relu5_2": 31,
    "relu5_3": 33, "relu5_4": 35,
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for v in VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_ch, v, 3, padding=1), nn.ReLU(inplace=False)]
            in_ch = v
    return nn.Sequential(*layers)


class VGG19Features(nn.Module):
    """x (B, 3, H, W) RGB in [0, 1] -> list of feature maps at `layers` (ImageNet-normalised input)."""

    def __init__(self, layers: Sequence[str] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")):
        super().__init__()
        unknown = [name for name in layers if name not in VGG19_LAYERS]
        if unknown:
            raise ValueError(f"unknown VGG19 layer(s) {unknown}; known: {list(VGG19_LAYERS)}")
        self.layer_names = list(layers)
        self.indices = [VGG19_LAYERS[name] for name in layers]
        self.features = vgg19_features()[: max(self.indices) + 1]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean) / self.std
        out = []
        wanted = set(self.indices)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                out.append(x)
        return out
