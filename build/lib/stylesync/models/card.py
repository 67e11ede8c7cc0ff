"""Model card: parameter counts and FLOPs per forward of the configured models."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..config import ModelConfig
from .discriminator import Discriminator
from .generator import StyleSyncGenerator
from .syncnet import ExpertSyncNet


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_flops(module: nn.Module, *inputs: torch.Tensor) -> int:
    """FLOPs (2 x multiply-adds) of one forward, counted by torch's FlopCounterMode."""
    with FlopCounterMode(display=False) as counter:  # (its module hooks fail under no_grad)
        module(*inputs)
    return int(counter.get_total_flops())


def generator_inputs(size: int, batch: int = 1) -> tuple[torch.Tensor, ...]:
    masked = torch.rand(batch, 3, size, size)
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 2 :, :] = 1
    return masked, torch.rand(batch, 3, size, size), torch.randn(batch, 1, 80, 16), mask


def model_card(cfg: ModelConfig) -> dict:
    """{model: {params, flops_per_forward (per image / per 5-frame window), ...}} at the configured sizes."""
    g = StyleSyncGenerator(cfg.generator).eval()
    d = Discriminator(cfg.discriminator).eval()
    s = ExpertSyncNet(cfg.syncnet).eval()
    size = cfg.generator.size
    parts = {"face_encoder": g.face_encoder, "audio_encoder": g.audio_encoder, "mlp_dw": g.mlp_dw,
             "synthesis": g.synthesis}
    if g.mapping is not None:
        parts["mapping"] = g.mapping
        parts["fusion"] = g.fusion
    return {
        "generator": {
            "size": size, "n_latent": g.n_latent, "styled_convs": g.synthesis.num_layers,
            "params": count_params(g), "params_by_part": {k: count_params(m) for k, m in parts.items()},
            "params_without_mlp_dw": count_params(g) - count_params(g.mlp_dw),
            "flops_per_image": count_flops(g, *generator_inputs(size)),
            "masked_noise_layers": [i for i, m in enumerate(g.mask_layers) if m],
        },
        "discriminator": {"size": cfg.discriminator.size, "params": count_params(d),
                          "flops_per_image": count_flops(d, torch.rand(1, 3, size, size))},
        "syncnet": {"size": cfg.syncnet.size, "params": count_params(s),
                    "flops_per_window": count_flops(s, torch.rand(1, cfg.syncnet.n_frames, 3, size, size),
                                                    torch.randn(1, 1, 80, 16))},
    }
