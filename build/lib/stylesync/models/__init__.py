"""StyleSync model library: pure PyTorch, any device. See docs/MODELS.md."""
from .discriminator import Discriminator
from .generator import DeltaP, StyleSyncGenerator, masked_noise_layers
from .gpen import GPEN
from .syncnet import ExpertSyncNet
from .syncnet_official import SyncNetOfficial
from .vgg19 import VGG19Features

__all__ = ["DeltaP", "Discriminator", "ExpertSyncNet", "GPEN", "StyleSyncGenerator", "SyncNetOfficial",
           "VGG19Features", "masked_noise_layers"]
