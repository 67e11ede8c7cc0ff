"""Training checkpoints: models as safetensors, optimizers + step + RNG + data position in a
`torch.load(weights_only=True)`-loadable file; written into a fresh directory (atomic by rename).

Every checkpoint ends with `manifest.json` (written last): the size and sha256 of each file. Loading
verifies it before anything is read, so a truncated or altered file (a copy cut short, a disk
error, bytes flipped) is refused with a `CheckpointError` naming the file; `load_latest_intact`
then falls back to the next older checkpoint. A checkpoint without a manifest (written before
manifests existed) is loaded unverified, with a warning.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import random
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..storage import file_sha256
from ..models.checkpoint import CheckpointError, check_state_dict, torch_load_weights

log = logging.getLogger(__name__)

STATE = "state.pt"
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


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
    write_manifest(directory, [f"{name}.safetensors" for name in modules] + [STATE], step)
    return directory


def write_manifest(directory: str | Path, files: Sequence[str], step: int | None = None) -> Path:
    """`manifest.json` with the size and sha256 of `files` (names in `directory`); written last."""
    directory = Path(directory)
    entries = {}
    for name in files:
        f = directory / name
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())  # the data is on disk before the manifest vouches for it
        entries[name] = {"bytes": f.stat().st_size, "sha256": file_sha256(f)}
    body = json.dumps({"format_version": MANIFEST_VERSION, "step": step, "files": entries}, indent=2, sort_keys=True)
    tmp = directory / f".{MANIFEST}.tmp"
    with open(tmp, "w") as fh:
        fh.write(body + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / MANIFEST)
    return directory / MANIFEST


def verify_checkpoint(directory: str | Path, required: Sequence[str] = ()) -> bool:
    """Check every file of `manifest.json` (size, then sha256) and that `required` files are listed.
    Returns False for a checkpoint without a manifest (older format); raises CheckpointError naming
    the first bad file otherwise."""
    directory = Path(directory)
    mf = directory / MANIFEST
    if not mf.exists():
        return False
    try:
        manifest = json.loads(mf.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{mf}: unreadable checkpoint manifest ({e})") from e
    unlisted = [r for r in required if r not in files]
    if unlisted:
        raise CheckpointError(f"{directory}: {', '.join(unlisted)} not in {MANIFEST} (incomplete checkpoint)")
    for name, want in files.items():
        f = directory / name
        if not f.exists():
            raise CheckpointError(f"{directory}: {name} is missing (listed in {MANIFEST})")
        size = f.stat().st_size
        if size != want["bytes"]:
            raise CheckpointError(f"{f}: {size} bytes, {MANIFEST} says {want['bytes']} (truncated or altered file)")
        if file_sha256(f) != want["sha256"]:
            raise CheckpointError(f"{f}: sha256 differs from {MANIFEST} (corrupt or altered file)")
    return True


def load_training_state(directory: str | Path, modules: Mapping[str, nn.Module],
                        optimizers: Mapping[str, torch.optim.Optimizer], restore_rng: bool = True) -> tuple[int, dict]:
    """Load into `modules` / `optimizers` in place; returns (step, extra). The manifest is verified
    first (nothing is loaded from a checkpoint that fails it)."""
    directory = Path(directory)
    names = [f"{name}.safetensors" for name in modules] + [STATE]
    if not verify_checkpoint(directory, names):
        log.warning("%s has no %s (written by an older version): loading it unverified", directory, MANIFEST)
    for name, m in modules.items():
        f = directory / f"{name}.safetensors"
        if not f.exists():
            raise CheckpointError(f"{directory}: missing {f.name}")
        try:
            state = load_file(str(f))
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"{f}: not a readable safetensors file ({e})") from e
        check_state_dict(m, state, str(f))
        m.load_state_dict(state)
    try:
        blob = torch_load_weights(directory / STATE)
    except CheckpointError:
        raise
    except Exception as e:  # a truncated zip, ...
        raise CheckpointError(f"{directory / STATE}: unreadable ({type(e).__name__}: {e})") from e
    for name, opt in optimizers.items():
        if name not in blob.get("optimizers", {}):
            raise CheckpointError(f"{directory / STATE}: no state for optimizer {name!r}")
        opt.load_state_dict(blob["optimizers"][name])
    if restore_rng:
        set_rng_state(blob["rng"])
    return int(blob["step"]), blob.get("extra", {})


@contextlib.contextmanager
def _as_directory(candidate: Any) -> Iterator[Path]:
    if hasattr(candidate, "as_directory"):  # a ray.train.Checkpoint
        with candidate.as_directory() as d:
            yield Path(d)
    else:
        yield Path(candidate)


def load_latest_intact(candidates: Iterable[Any], modules: Mapping[str, nn.Module],
                       optimizers: Mapping[str, torch.optim.Optimizer],
                       restore_rng: bool = True) -> tuple[int, dict, Any]:
    """Load the first checkpoint of `candidates` (newest first: directories or ray.train.Checkpoints;
    an iterable, consumed only as far as needed, so that older ones are listed only when a newer one
    is refused) that verifies and loads; each refused one is logged with its reason. Returns (step, extra, the
    candidate used); raises CheckpointError with every reason if none loads."""
    reasons = []
    for i, cand in enumerate(candidates):
        try:
            with _as_directory(cand) as d:
                step, extra = load_training_state(d, modules, optimizers, restore_rng)
        except CheckpointError as e:
            reasons.append(str(e))
            log.warning("checkpoint refused: %s; falling back to an older checkpoint, if any", e)
            continue
        if i:
            log.warning("resuming from an older checkpoint (step %d): %d newer one(s) refused", step, i)
        return step, extra, cand
    raise CheckpointError("no intact checkpoint to resume from: " + (" | ".join(reasons) or "none given"))


def older_ray_checkpoints(latest: Any) -> list:
    """Inside a Ray Train worker: the other checkpoints Ray Train keeps for this run
    (train.keep_checkpoints; restored from its snapshot after a driver restart), newest first."""
    try:
        import ray.train

        reported = ray.train.get_all_reported_checkpoints(
            consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED, timeout_s=60)
    except Exception as e:  # an older Ray, or no controller to ask: no fallback
        log.warning("cannot list the older checkpoints of this run (%s: %s)", type(e).__name__, e)
        return []
    latest_path = getattr(latest, "path", None)
    return [r.checkpoint for r in reversed(reported) if getattr(r.checkpoint, "path", None) != latest_path]
