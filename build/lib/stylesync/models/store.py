"""The model files of a run: save and load the generator, discriminator, expert SyncNet and the
personal deltas (`models/<name>/`: model.safetensors + config.json, see models/checkpoint.py).

Used by training, evaluation and inference alike; a personal delta is refused on another backbone.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional

import torch

from ..config import DiscriminatorConfig, FaceConfig, GeneratorConfig, SyncNetConfig, from_dict
from ..storage import exists, file_sha256, join
from .checkpoint import load_into, read_model, save_model
from .delta import unpack_delta
from .discriminator import Discriminator
from .generator import StyleSyncGenerator
from .syncnet import ExpertSyncNet

PERSONAL_KIND = "personal_delta"


class BackboneMismatch(ValueError):
    """A personal delta made from another backbone than the one it is put on."""


# ------------------------------------------------------------------------------ generator
def save_generator(directory: str | Path, g: StyleSyncGenerator, face: FaceConfig, extra: Optional[dict] = None) -> Path:
    """The generator's weights (no Delta P) + config (generator and face geometry)."""
    state = {k: v for k, v in g.state_dict().items() if not k.startswith("delta_p.")}
    return save_model(directory, state, "generator", {"generator": asdict(g.cfg), "face": asdict(face)}, extra)


def load_generator(directory: str | Path, device: torch.device | str = "cpu") -> tuple[StyleSyncGenerator, FaceConfig, dict]:
    state, meta = read_model(directory, kind="generator")
    gcfg = from_dict(GeneratorConfig, meta["config"]["generator"])
    face = from_dict(FaceConfig, meta["config"]["face"])
    g = load_into(StyleSyncGenerator(gcfg), state, str(directory)).to(device).eval()
    return g, face, meta


def generator_sha256(backbone: str | Path) -> str:
    """The identity of a backbone: the hash of its generator weights."""
    return file_sha256(join(backbone, "generator", "model.safetensors"))


def syncnet_sha256(directory: str | Path) -> Optional[str]:
    """The identity of an exported expert: the hash of its weights (None when there is none)."""
    path = join(directory, "model.safetensors")
    return file_sha256(path) if exists(path) else None


# ------------------------------------------------------------------------------ expert SyncNet, D
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


# ------------------------------------------------------------------------------ personal deltas
def apply_personal(G: StyleSyncGenerator, backbone: str | Path, personal: str | Path,
                   device: torch.device | str = "cpu") -> StyleSyncGenerator:
    """Put a personal delta (Delta P, MLP_dw) onto the loaded generator of `backbone`."""
    state, meta = read_model(personal, kind=PERSONAL_KIND)
    actual = generator_sha256(backbone)
    if meta["backbone_sha256"] != actual:
        raise BackboneMismatch(f"{personal} was trained from backbone {meta['backbone_sha256'][:12]}, "
                               f"but {backbone} is {actual[:12]}")
    shifts, mlp = unpack_delta(state)
    dp = G.enable_delta_p()
    load_into(dp, {f"shifts.{k}": v for k, v in shifts.items()}, f"{personal} (Delta P)")
    load_into(G.mlp_dw, mlp, f"{personal} (MLP_dw)")
    G.use_delta_w = meta["config"]["use_delta_w"]
    return G.to(device).eval()


def load_personal(backbone: str | Path, personal: str | Path, device: torch.device | str = "cpu") -> StyleSyncGenerator:
    """The backbone's generator with a personal delta on it (Ours-P)."""
    G, _, _ = load_generator(join(backbone, "generator"), device)
    return apply_personal(G, backbone, personal, device)
