"""Build, save and load the models of a run from params (shared by every training/eval stage)."""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import torch

from ..config import DiscriminatorConfig, FaceConfig, GeneratorConfig, MaskConfig, Params, SyncNetConfig, from_dict
from ..face.mask import lower_face_mask
from ..models.checkpoint import load_into, read_model, save_model
from ..models.discriminator import Discriminator
from ..models.generator import StyleSyncGenerator
from ..models.importers import load_rosinality_discriminator, load_vgg19_torchvision
from ..models.syncnet import ExpertSyncNet

log = logging.getLogger(__name__)


def mask_tensor(size: int, mask_cfg: MaskConfig, device: torch.device | str = "cpu") -> torch.Tensor:
    """The lower-face mask at the model size: (1, 1, S, S) float32, 1 = generated region."""
    return torch.from_numpy(lower_face_mask(size, mask_cfg).copy()).reshape(1, 1, size, size).to(device)


def build_discriminator(params: Params) -> Discriminator:
    d = Discriminator(params.model.discriminator)
    if params.paths.discriminator_init:
        load_rosinality_discriminator(d, params.paths.discriminator_init)
        log.info("discriminator initialised from %s (rosinality StyleGAN2 format)", params.paths.discriminator_init)
    return d


def load_vgg(params: Params, layers) -> tuple[Optional[torch.nn.Module], str]:
    """VGG19 features when `paths.vgg19_weights` is given; otherwise None and a loud note: the
    perceptual term is then off (never a randomly initialised VGG as a "perceptual" loss)."""
    path = params.paths.vgg19_weights
    if not path:
        msg = ("PERCEPTUAL LOSS OFF: no VGG19 ImageNet weights (set paths.vgg19_weights to torchvision's "
               "vgg19 state dict, e.g. vgg19-dcbb9e9d.pth); training uses L1 + adversarial + sync only")
        log.warning(msg)
        return None, "off: no paths.vgg19_weights"
    if not Path(path).exists():
        raise FileNotFoundError(f"paths.vgg19_weights = {path} does not exist")
    return load_vgg19_torchvision(path, layers).eval(), f"on: {path}"


# ------------------------------------------------------------------------------ generator files
def save_generator(directory: str | Path, g: StyleSyncGenerator, face: FaceConfig, extra: Optional[dict] = None) -> Path:
    """models/<name>/: the generator's weights (no Delta P) + config (generator and face geometry)."""
    state = {k: v for k, v in g.state_dict().items() if not k.startswith("delta_p.")}
    return save_model(directory, state, "generator", {"generator": asdict(g.cfg), "face": asdict(face)}, extra)


def load_generator(directory: str | Path, device: torch.device | str = "cpu") -> tuple[StyleSyncGenerator, FaceConfig, dict]:
    state, meta = read_model(directory, kind="generator")
    gcfg = from_dict(GeneratorConfig, meta["config"]["generator"])
    face = from_dict(FaceConfig, meta["config"]["face"])
    g = load_into(StyleSyncGenerator(gcfg), state, str(directory)).to(device).eval()
    return g, face, meta


def save_syncnet(directory: str | Path, net: ExpertSyncNet, extra: Optional[dict] = None) -> Path:
    return save_model(directory, net.state_dict(), "syncnet", {"syncnet": asdict(net.cfg)}, extra)


def load_syncnet(directory: str | Path, device: torch.device | str = "cpu") -> ExpertSyncNet:
    """The trained expert, frozen, in eval mode."""
    state, meta = read_model(directory, kind="syncnet")
    net = ExpertSyncNet(from_dict(SyncNetConfig, meta["config"]["syncnet"]))
    load_into(net, state, str(directory))
    return net.to(device).eval().requires_grad_(False)


def save_discriminator(directory: str | Path, d: Discriminator) -> Path:
    return save_model(directory, d.state_dict(), "discriminator", {"discriminator": asdict(d.cfg)})


def load_discriminator(directory: str | Path) -> Discriminator:
    state, meta = read_model(directory, kind="discriminator")
    d = Discriminator(from_dict(DiscriminatorConfig, meta["config"]["discriminator"]))
    return load_into(d, state, str(directory))
