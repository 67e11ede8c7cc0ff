"""Our checkpoints (safetensors + JSON config) and safe loading of foreign weight files.

A model directory holds `model.safetensors` (tensors only) and `config.json`
(`{"kind", "config", "sha256", "format_version", ...}`). Foreign `.pt/.pth` files are read with
`torch.load(weights_only=True)`: a file that needs arbitrary pickled objects is refused.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import load_file, save_file
from torch import nn

from ..storage import atomic_dir, exists, file_sha256, is_uri, join, read_bytes

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class CheckpointError(RuntimeError):
    """A weights file that is missing, unsafe, or does not fit the model."""


def save_model(directory: str | Path, state: Mapping[str, torch.Tensor], kind: str, config: dict,
               extra: dict | None = None) -> Path:
    """Write `state` + config atomically into `directory` (replacing it as a whole; local path or
    URI: see `stylesync.storage.atomic_dir`, config.json goes last and holds the weights' sha256)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    with atomic_dir(directory) as tmp:
        # one metadata entry: safetensors writes several in a random (hash-map) order, and the file's
        # sha256 keys runs and DVC, so the same tensors must give the same bytes
        save_file(tensors, str(tmp / WEIGHTS), metadata={"stylesync": json.dumps({"format_version": FORMAT_VERSION, "kind": kind}, sort_keys=True)})
        meta = {"kind": kind, "format_version": FORMAT_VERSION, "config": config,
                "sha256": file_sha256(tmp / WEIGHTS), **(extra or {})}
        (tmp / CONFIG).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return directory if is_uri(directory) else Path(directory)


def read_model(directory: str | Path, kind: str | None = None, verify: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """-> (state dict, config.json contents). Checks kind and the weights' hash. `directory` may be
    a URI (the weights are then read into memory once, hashed and loaded from the same bytes)."""
    remote = is_uri(directory)
    directory = directory if remote else Path(directory)
    weights, cfg_path = join(directory, WEIGHTS), join(directory, CONFIG)
    for p, name in ((weights, WEIGHTS), (cfg_path, CONFIG)):
        if not exists(p):
            raise CheckpointError(f"{directory}: missing {name} (expected {WEIGHTS} + {CONFIG})")
    meta = json.loads(read_bytes(cfg_path))
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(f"{directory} holds a {meta.get('kind')!r} model, expected {kind!r}")
    blob = read_bytes(weights) if remote else None
    if verify and meta.get("sha256") and \
            (hashlib.sha256(blob).hexdigest() if remote else file_sha256(weights)) != meta["sha256"]:
        raise CheckpointError(f"{weights}: sha256 differs from {CONFIG} (corrupt or modified file)")
    try:
        state = safetensors_load(blob) if remote else load_file(str(weights))
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{weights}: not a readable safetensors file ({e})") from e
    return state, meta


def torch_load_weights(path: str | Path) -> Any:
    """torch.load restricted to tensors and plain containers (no arbitrary pickled objects)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused, the file holds pickled Python objects besides tensors "
            f"(only weights are loaded; re-save it as a plain state dict): {e}"
        ) from e


def check_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str,
                     ignore_missing: Iterable[str] = ()) -> None:
    """Raise CheckpointError naming every missing / unexpected key and every wrong shape."""
    own = module.state_dict()
    ignore = set(ignore_missing)
    missing = sorted(k for k in own if k not in state and k not in ignore)
    unexpected = sorted(k for k in state if k not in own)
    shapes = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}"
                        f"{' ...' if len(unexpected) > 20 else ''}")
    if shapes:
        problems.append(f"wrong sizes ({len(shapes)}): {'; '.join(shapes[:20])}")
    if problems:
        raise CheckpointError(f"{source} does not fit {type(module).__name__}: " + " | ".join(problems))


def load_into(module: nn.Module, state: Mapping[str, torch.Tensor], source: str,
              ignore_missing: Iterable[str] = ()) -> nn.Module:
    """Strict load with a clear error (see `check_state_dict`)."""
    check_state_dict(module, state, source, ignore_missing)
    module.load_state_dict(state, strict=False)
    return module
