"""Importers for foreign weight formats, each an explicit key map with strict checking.

- rosinality/stylegan2-pytorch: `d` -> our Discriminator (same naming), `g_ema` -> the parts of our
  synthesis/mapping networks whose shapes match (StyleSync's concatenated noise doubles most widths).
- GPEN official (`GPEN-BFR-256/512.pth`): `ecdN.0.*`, `final_linear.0.*`, `generator.*`.
- torchvision VGG19 (`features.N.*`, `classifier.*`).
- joonson/syncnet_python `syncnet_v2.model` (`netcnnaud`, `netfcaud`, `netcnnlip`, `netfclip`).
All files are read with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from .checkpoint import CheckpointError, load_into, torch_load_weights
from .discriminator import Discriminator
from .gpen import GPEN, GPEN_CONFIGS
from .syncnet_official import SyncNetOfficial
from .vgg19 import VGG19Features, vgg19_features

StateOrPath = Mapping[str, torch.Tensor] | str | Path


def _state(src: StateOrPath, container_keys: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """A flat state dict from a path or mapping; unwraps the first present container key
    (e.g. rosinality's {'g_ema': ..., 'd': ...}) and a DDP `module.` prefix."""
    obj = torch_load_weights(src) if isinstance(src, (str, Path)) else src
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{src}: expected a state dict, got {type(obj).__name__}")
    for key in container_keys:
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    else:
        if container_keys and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            raise CheckpointError(f"{src}: none of the expected entries {list(container_keys)} found; "
                                  f"top-level keys: {sorted(obj)[:10]}")
    state = {k[7:] if k.startswith("module.") else k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{src}: no tensors found")
    return state


# ------------------------------------------------------------------------------- rosinality
def load_rosinality_discriminator(disc: Discriminator, src: StateOrPath) -> Discriminator:
    """Initialise our discriminator from a rosinality checkpoint (`d` entry) or a bare D state dict."""
    return load_into(disc, _state(src, ("d",)), f"rosinality discriminator {src if isinstance(src, (str, Path)) else ''}")


_SYNTH_PREFIXES = ("input.", "conv1.", "to_rgb1.", "convs.", "to_rgbs.")


def rosinality_generator_key(key: str) -> str | None:
    """rosinality Generator key -> our key (None: not used: the per-layer noise buffers)."""
    if key.startswith("noises."):
        return None
    if key.startswith("style."):
        return f"mapping.{key}"
    if key.startswith(_SYNTH_PREFIXES):
        return f"synthesis.{key}"
    raise CheckpointError(f"unknown rosinality generator key {key!r}")


def load_rosinality_synthesis(generator: nn.Module, src: StateOrPath) -> dict[str, list[str]]:
    """Copy `g_ema` (or `g`) weights into `generator` wherever names and shapes match.

    Returns {"loaded": [...], "shape_mismatch": [...], "not_used": [...]} (our key names)."""
    state = _state(src, ("g_ema", "g"))
    own = generator.state_dict()
    report: dict[str, list[str]] = {"loaded": [], "shape_mismatch": [], "not_used": []}
    to_load = {}
    for k, v in state.items():
        ours = rosinality_generator_key(k)
        if ours is None or ours not in own:
            report["not_used"].append(ours or k)
        elif tuple(own[ours].shape) != tuple(v.shape):
            report["shape_mismatch"].append(ours)
        else:
            to_load[ours] = v
            report["loaded"].append(ours)
    if not to_load:
        raise CheckpointError(f"{src}: no rosinality generator weight matches this generator's shapes")
    generator.load_state_dict(to_load, strict=False)
    return report


# ------------------------------------------------------------------------------- GPEN
_GPEN_ECD = re.compile(r"^ecd(\d+)\.0\.(.*)$")


def gpen_key(key: str) -> str:
    """Official GPEN FullGenerator key -> our GPEN key."""
    m = _GPEN_ECD.match(key)
    if m:
        return f"face_encoder.ecd{m.group(1)}.{m.group(2)}"
    if key.startswith("final_linear.0."):
        return "face_encoder.final_linear." + key[len("final_linear.0."):]
    if key.startswith("generator.style."):
        return "mapping." + key[len("generator."):]
    if key.startswith("generator."):
        rest = key[len("generator."):]
        if rest.startswith(_SYNTH_PREFIXES):
            return "synthesis." + rest
    raise CheckpointError(f"unknown GPEN key {key!r}")


def load_gpen(src: StateOrPath, name: str = "GPEN-BFR-512") -> GPEN:
    """Build GPEN-BFR-256/512 and load its official state dict."""
    if name not in GPEN_CONFIGS:
        raise ValueError(f"unknown GPEN model {name!r}; known: {list(GPEN_CONFIGS)}")
    model = GPEN(**GPEN_CONFIGS[name])
    state = {gpen_key(k): v for k, v in _state(src).items()}
    return load_into(model, state, f"GPEN weights {src if isinstance(src, (str, Path)) else ''}")


# ------------------------------------------------------------------------------- VGG19
def load_vgg19_torchvision(src: StateOrPath, layers: Sequence[str] | None = None) -> VGG19Features:
    """torchvision `vgg19` ImageNet state dict -> VGG19Features (classifier weights are checked, not used)."""
    state = _state(src)
    full = nn.Module()
    full.features = vgg19_features()
    classifier = {k: v for k, v in state.items() if k.startswith("classifier.")}
    expected_cls = {"classifier.0.weight": (4096, 25088), "classifier.0.bias": (4096,),
                    "classifier.3.weight": (4096, 4096), "classifier.3.bias": (4096,),
                    "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,)}
    bad = [k for k, v in classifier.items() if expected_cls.get(k) != tuple(v.shape)]
    if bad:
        raise CheckpointError(f"{src}: unexpected VGG19 classifier entries {bad}")
    feats = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    load_into(full, feats, f"VGG19 weights {src if isinstance(src, (str, Path)) else ''}")
    model = VGG19Features(layers) if layers else VGG19Features()
    model.features.load_state_dict(full.features[: len(model.features)].state_dict())
    return model


# ------------------------------------------------------------------------------- syncnet_python
def load_syncnet_official(src: StateOrPath) -> SyncNetOfficial:
    """`syncnet_v2.model` (plain state dict; `num_batches_tracked` may be absent)."""
    model = SyncNetOfficial()
    state = _state(src)
    optional = [k for k in model.state_dict() if k.endswith("num_batches_tracked")]
    return load_into(model, state, f"syncnet_python weights {src if isinstance(src, (str, Path)) else ''}",
                     ignore_missing=optional).eval()
