"""Training checkpoints: models as safetensors, optimizers + step + RNG + data position in a
`torch.load(weights_only=True)`-loadable file; written into a fresh directory (atomic by rename)."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..models.checkpoint import CheckpointError, check_state_dict, torch_load_weights

STATE = "state.pt"


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": [list(random.getstate()[1]), random.getstate()[0]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    keys, version = state["python"]
    random.setstate((version, tuple(keys), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(directory: str | Path, modules: Mapping[str, nn.Module],
                        optimizers: Mapping[str, torch.optim.Optimizer], step: int, extra: dict | None = None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, m in modules.items():
        save_file({k: v.detach().cpu().contiguous() for k, v in m.state_dict().items()},
                  str(directory / f"{name}.safetensors"))
    torch.save({"step": step, "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                "rng": rng_state(), "extra": extra or {}}, directory / STATE)
    return directory


def load_training_state(directory: str | Path, modules: Mapping[str, nn.Module],
                        optimizers: Mapping[str, torch.optim.Optimizer], restore_rng: bool = True) -> tuple[int, dict]:
    """Load into `modules` / `optimizers` in place; returns (step, extra)."""
    directory = Path(directory)
    for name, m in modules.items():
        f = directory / f"{name}.safetensors"
        if not f.exists():
            raise CheckpointError(f"{directory}: missing {f.name}")
        state = load_file(str(f))
        check_state_dict(m, state, str(f))
        m.load_state_dict(state)
    blob = torch_load_weights(directory / STATE)
    for name, opt in optimizers.items():
        opt.load_state_dict(blob["optimizers"][name])
    if restore_rng:
        set_rng_state(blob["rng"])
    return int(blob["step"]), blob.get("extra", {})
