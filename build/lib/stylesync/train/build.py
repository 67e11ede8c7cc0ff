"""Build what training needs beyond the model files (models/store.py): the discriminator, with an
optional rosinality StyleGAN2 initialisation, and the VGG19 of the perceptual loss."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch

from ..config import Params
from ..models.discriminator import Discriminator
from ..models.importers import load_rosinality_discriminator, load_vgg19_torchvision

log = logging.getLogger(__name__)


def build_discriminator(params: Params) -> Discriminator:
    d = Discriminator(params.model.discriminator)
    if params.paths.discriminator_init:
        load_rosinality_discriminator(d, params.paths.discriminator_init)
        log.info("discriminator initialised from %s (rosinality StyleGAN2 format)", params.paths.discriminator_init)
    return d


PERCEPTUAL_OFF = ("PERCEPTUAL LOSS OFF: no VGG19 ImageNet weights (set paths.vgg19_weights to torchvision's "
                  "vgg19 state dict, e.g. vgg19-dcbb9e9d.pth); training uses L1 + adversarial + sync only")


def load_vgg(params: Params, layers, warn: bool = True) -> tuple[Optional[torch.nn.Module], str]:
    """VGG19 features when `paths.vgg19_weights` is given; otherwise None and a loud note (`warn`;
    a catalog warns once, not per identity): the perceptual term is then off (never a randomly
    initialised VGG as a "perceptual" loss)."""
    path = params.paths.vgg19_weights
    if not path:
        if warn:
            log.warning(PERCEPTUAL_OFF)
        return None, "off: no paths.vgg19_weights"
    if not Path(path).exists():
        raise FileNotFoundError(f"paths.vgg19_weights = {path} does not exist")
    return load_vgg19_torchvision(path, layers).eval(), f"on: {path}"
