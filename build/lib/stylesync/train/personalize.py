"""Personalized optimization (paper Sec. 3.3) of one identity, reusing the backbone's training step.

From the generalized backbone, with E_a and E_face frozen, train MLP_dw (Delta W = MLP_dw(f_f)) and
Delta P (a shift of the synthesis weights) with L_p = L_g + lambda_p (sum ||Delta W||^2 +
sum ||Delta P||^2) (Eq. 6) for `epochs` passes over the person's frames, every batch mixing the
person's windows and general training windows 1:1; the discriminator keeps training (L_g's L_adv).
Output: `models/personal/<identity>/` with only what differs from the backbone (Delta P, fp16 and/or
low rank; MLP_dw), the backbone's hash and the data used.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch

from ..config import Params, config_hash, learned_settings
from ..data.av_sync import load_sync_plan
from ..data.loader import iter_clips, make_loader, seed_everything, training_pipeline
from ..data.shards import content_key
from ..face.mask import mask_tensor
from ..storage import exists, join, optional_sha256, read_parquet, size
from ..layout import Layout
from ..models.checkpoint import read_model, save_model
from ..models.delta import pack_delta, packed_bytes
from ..models.generator import StyleSyncGenerator, effective_scales
from ..models.store import PERSONAL_KIND, generator_sha256, load_discriminator, load_generator, load_syncnet, syncnet_sha256
from ..runtime.device import amp_dtype, resolve_device
from ..runtime.faults import maybe_fail
from .build import load_vgg
from .loop import drive
from .losses import delta_penalty
from .step import NonFiniteLossError, StepModules, make_optimizers, train_step

log = logging.getLogger(__name__)


class PersonalizeError(RuntimeError):
    """A failure of one identity (bad data, NaN loss, ...): recorded, the catalog goes on."""


@dataclass
class CatalogEntry:
    identity: str
    clips: list[str]  # the person's clips (their data)
    held_out: list[str] = field(default_factory=list)  # clips for the G-vs-P comparison
    seconds: Optional[float] = None  # time budget over `clips`, in order
    time_limit_s: Optional[float] = None  # overrides personalize.time_limit_s for this identity


def fingerprint(params: Params, entry: CatalogEntry, backbone_sha256: str) -> str:
    """What a personal model is made from, by content: backbone, expert and VGG19 files, learned
    settings (its own and the `train` ones it reads), data (the shards' sha256s, with the sync
    check's shifts and skips of the person's clips), seed."""
    cfg = learned_settings(params.personalize)
    data = {k: v for k, v in asdict(entry).items() if k != "time_limit_s"}
    sync = load_sync_plan(params)
    data["sync"] = [[c, sync.offsets.get(c, 0), sync.skipped.get(c)] for c in entry.clips]
    files = {"expert": syncnet_sha256(Layout(params.paths).syncnet), "vgg19": optional_sha256(params.paths.vgg19_weights)}
    return config_hash({"backbone": backbone_sha256, "files": files, "cfg": cfg, "entry": data, "seed": params.seed,
                        "train": {"amp": params.train.amp, "nan_policy": params.train.nan_policy},
                        "shards": content_key(params.paths.shards, ["train", "test"])})


def finished(out: str, fp: str) -> Optional[dict]:
    """The saved result when `out` holds a personal model of fingerprint `fp`, else None."""
    if not exists(join(out, "config.json")):
        return None
    try:
        _, meta = read_model(out, kind=PERSONAL_KIND)
    except Exception:  # unreadable or partial output: redo it
        return None
    return meta.get("result", {}) if meta.get("fingerprint") == fp else None


# ------------------------------------------------------------------------------ data
def frame_limits(index: dict[str, int], clips: list[str], seconds: Optional[float], fps: float = 25.0) -> dict[str, int]:
    """Per-clip frame limits for "the first N seconds" of the person's clips (in order)."""
    if seconds is None:
        return {}
    left, limits = int(round(seconds * fps)), {}
    for c in clips:
        limits[c] = max(0, min(index[c], left))
        left -= limits[c]
    return limits


def _merge(a: dict, b: dict) -> dict:
    return {k: torch.cat([a[k], b[k]]) if torch.is_tensor(a[k]) else a[k] + b[k] for k in a}


def held_out_clips(params: Params, entry: CatalogEntry, size: int) -> list[tuple]:
    """(meta, frames, sample) of the identity's first `eval_clips` held-out clips in the shards."""
    layout = Layout(params.paths)
    by_id = {r["clip_id"]: r for r in read_parquet(layout.shard_index).to_pylist()}
    shards = sorted({layout.shard(by_id[c]["shard"]) for c in entry.held_out if c in by_id})
    keep = set(entry.held_out[: params.personalize.eval_clips])
    if not shards:  # nothing held out: the identity is personalized but not scored
        return []
    return [(meta, frames, sample) for meta, frames, sample in iter_clips(shards, size) if meta["clip_id"] in keep]


# ------------------------------------------------------------------------------ one identity
@dataclass
class PersonalRun:
    """A trained identity: Ours-P (`G`, Delta P and MLP_dw on) beside its backbone `base`."""

    G: StyleSyncGenerator
    base: StyleSyncGenerator
    mask: torch.Tensor  # (1, 1, S, S)
    history: list[dict]
    steps: int
    n_frames: int
    limits: dict[str, int]
    perceptual: str
    backbone_sha256: str


def train_personal(params: Params, entry: CatalogEntry) -> PersonalRun:
    """Sec. 3.3 for one identity. Raises PersonalizeError for data/optimization failures."""
    t0 = time.time()
    pc = params.personalize
    layout = Layout(params.paths)
    limit = entry.time_limit_s if entry.time_limit_s is not None else pc.time_limit_s
    seed_everything(params.seed)
    device = resolve_device(params.device)
    base, face, _ = load_generator(layout.generator, device)
    G = copy.deepcopy(base)
    G.use_delta_w = pc.use_delta_w
    G.requires_grad_(False)  # E_a, E_face and the base weights stay fixed
    dp = G.enable_delta_p()
    trainable = list(dp.parameters()) + (list(G.mlp_dw.parameters()) if pc.use_delta_w else [])
    for p in trainable:
        p.requires_grad_(True)
    D = load_discriminator(layout.discriminator).to(device)
    syncnet = load_syncnet(layout.syncnet, device) if pc.loss.sync else None
    vgg, vgg_status = load_vgg(params, pc.loss.vgg_layers, warn=False)  # the stage warns once for the catalog
    opt_g, opt_d = make_optimizers(trainable, D.parameters(), pc.optim, pc.loss.d_reg_every)
    mask = mask_tensor(G.size, face.mask, device)
    m = StepModules(G, D, opt_g, opt_d, mask, syncnet, vgg, amp_dtype=amp_dtype(params.train.amp, device))  # bf16 on CUDA

    index = read_parquet(layout.shard_index).to_pylist()
    frames_of = {r["clip_id"]: r["n_frames"] for r in index}
    missing = [c for c in entry.clips if c not in frames_of]
    if missing or not entry.clips:
        raise PersonalizeError(f"no usable data: clips not in the shards: {missing[:5] or 'none given'}")
    limits = frame_limits(frames_of, entry.clips, entry.seconds)
    n_frames = sum(limits.get(c, frames_of[c]) for c in entry.clips)
    shard_of = {r["clip_id"]: layout.shard(r["shard"]) for r in index}
    personal_urls = sorted({shard_of[c] for c in entry.clips})
    general_urls = sorted({layout.shard(r["shard"]) for r in index if r["split"] == "train"})
    bs = pc.loader.batch_size
    n_personal = max(1, int(round(bs * pc.personal_fraction)))
    steps = max(1, math.ceil(pc.epochs * n_frames / (n_personal * pc.loader.window)))
    sync = load_sync_plan(params)  # shift / skip clips by the sync check
    try:
        sync.check_left(list(entry.clips), f"identity {entry.identity}")
    except ValueError as e:
        raise PersonalizeError(f"no usable data: {e}") from None
    wanted = set(entry.clips) - set(sync.skipped)
    personal = iter(make_loader(training_pipeline(personal_urls, pc.loader, G.size, params.seed,
                                                  select=lambda meta: meta["clip_id"] in wanted, frame_limits=limits,
                                                  batch_size=n_personal, av_offsets=sync.offsets), pc.loader.workers))
    general = iter(make_loader(training_pipeline(general_urls, pc.loader, G.size, params.seed + 1, select=sync.select,
                                                 batch_size=bs - n_personal, av_offsets=sync.offsets),
                               pc.loader.workers)) if bs > n_personal else None

    scales = effective_scales(G)

    def penalty(aux: dict) -> torch.Tensor:  # Eq. 6
        return delta_penalty(aux["delta_w"], dp.squared_norm(scales), pc.lambda_p)

    def one_step(step: int) -> dict:
        batch = next(personal)
        if general is not None:
            batch = _merge(batch, next(general))
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        try:
            logs = train_step(m, batch, step, pc.loss, pc.optim, penalty, nan_policy=params.train.nan_policy)
        except NonFiniteLossError as e:
            raise PersonalizeError(str(e)) from None
        maybe_fail(f"personalize:{entry.identity}", step + 1)
        if time.time() - t0 > limit:
            raise PersonalizeError(f"time limit: over {limit:g} s at step {step} of {steps}")
        return logs

    history: list[dict] = []
    drive(0, steps, one_step, history, log_every=pc.log_every)
    G.eval()
    return PersonalRun(G, base, mask, history, steps, n_frames, limits, vgg_status, generator_sha256(layout.backbone))


def save_personal(out: str, run: PersonalRun, params: Params, entry: CatalogEntry, fp: str, result: dict,
                  per_clip: list[dict]) -> dict:
    """models/personal/<identity>: only what differs from the backbone (Delta P, MLP_dw), packed as
    `personalize.delta_dtype` / `delta_rank`, with the backbone's hash, the data and the result.
    Returns the packed sizes."""
    pc = params.personalize
    G = run.G
    packed = pack_delta({k: v for k, v in G.delta_p.shifts.items()}, G.mlp_dw.state_dict(), pc.delta_dtype, pc.delta_rank)
    result = {**result, "delta_bytes": packed_bytes(packed)}
    save_model(out, packed, PERSONAL_KIND, {"use_delta_w": pc.use_delta_w, "delta_dtype": pc.delta_dtype,
                                            "delta_rank": pc.delta_rank, "personalize": asdict(pc)},
               {"identity": entry.identity, "backbone_sha256": run.backbone_sha256, "fingerprint": fp,
                "data": asdict(entry) | {"frame_limits": run.limits, "frames": run.n_frames}, "perceptual": run.perceptual,
                "result": result, "per_clip": per_clip})
    return {"delta_bytes": result["delta_bytes"], "delta_file_bytes": size(join(out, "model.safetensors"))}
