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
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..config import Params, config_hash
from ..data.loader import iter_clips, make_loader, seed_everything, training_pipeline
from ..data.sample import npy_load
from ..eval.protocol import generate, mean_scores, mouth_scores, prepare_clip
from ..faults import maybe_fail
from ..io import child_path, exists, file_sha256, is_uri, join, local_dir, read_parquet, size
from ..models.checkpoint import load_into, read_model, save_model
from ..models.delta import pack_delta, packed_bytes, unpack_delta
from ..models.generator import StyleSyncGenerator, effective_scales
from .build import load_discriminator, load_generator, load_syncnet, load_vgg, mask_tensor
from .device import resolve_device
from .losses import delta_penalty
from .step import StepModules, make_optimizers, train_step

log = logging.getLogger(__name__)
KIND = "personal_delta"


class PersonalizeError(RuntimeError):
    """A failure of one identity (bad data, NaN loss, ...): recorded, the catalog goes on."""


@dataclass
class CatalogEntry:
    identity: str
    clips: list[str]  # the person's clips (their data)
    held_out: list[str] = field(default_factory=list)  # clips for the G-vs-P comparison
    seconds: Optional[float] = None  # time budget over `clips`, in order
    time_limit_s: Optional[float] = None  # overrides personalize.time_limit_s for this identity


def backbone_dir(params: Params) -> Path | str:
    """models/backbone (a URI string when paths.models is a URI)."""
    d = join(params.paths.models, "backbone")
    return d if is_uri(d) else Path(d)


def backbone_hash(params: Params) -> str:
    return file_sha256(join(backbone_dir(params), "generator", "model.safetensors"))


def output_dir(params: Params, identity: str) -> Path | str:
    return child_path(join(params.paths.models, "personal"), identity)


def fingerprint(params: Params, entry: CatalogEntry) -> str:
    cfg = {k: v for k, v in asdict(params.personalize).items()
           if k not in ("catalog", "identities", "num_cpus", "num_gpus", "max_retries", "time_limit_s")}
    data = {k: v for k, v in asdict(entry).items() if k != "time_limit_s"}
    return config_hash({"backbone": backbone_hash(params), "cfg": cfg, "entry": data, "seed": params.seed})


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


def _held_out(params: Params, entry: CatalogEntry, rows: list[dict], size: int) -> list[tuple]:
    by_id = {r["clip_id"]: r for r in rows}
    shards = sorted({join(params.paths.shards, by_id[c]["shard"]) for c in entry.held_out if c in by_id})
    keep = set(entry.held_out[: params.personalize.eval_clips])
    if not shards:  # nothing held out: the identity is personalized but not scored
        return []
    return [(meta, frames, sample) for meta, frames, sample in iter_clips(shards, size) if meta["clip_id"] in keep]


# ------------------------------------------------------------------------------ one identity
def load_personal(params_or_backbone, personal: str | Path, device: torch.device | str = "cpu") -> StyleSyncGenerator:
    """Backbone generator + a personal delta (refused if made from another backbone)."""
    bdir = backbone_dir(params_or_backbone) if isinstance(params_or_backbone, Params) else params_or_backbone
    G, _, _ = load_generator(join(bdir, "generator"), device)
    return apply_personal(G, bdir, personal, device)


def apply_personal(G: StyleSyncGenerator, backbone: str | Path, personal: str | Path,
                   device: torch.device | str = "cpu") -> StyleSyncGenerator:
    """Put a personal delta onto the loaded generator of `backbone` (refused if made from another)."""
    state, meta = read_model(personal, kind=KIND)
    actual = file_sha256(join(backbone, "generator", "model.safetensors"))
    if meta["backbone_sha256"] != actual:
        raise PersonalizeError(f"{personal} was trained from backbone {meta['backbone_sha256'][:12]}, "
                               f"but {backbone} is {actual[:12]}")
    shifts, mlp = unpack_delta(state)
    dp = G.enable_delta_p()
    load_into(dp, {f"shifts.{k}": v for k, v in shifts.items()}, f"{personal} (Delta P)")
    load_into(G.mlp_dw, mlp, f"{personal} (MLP_dw)")
    G.use_delta_w = meta["config"]["use_delta_w"]
    return G.to(device).eval()


def personalize_identity(params: Params, entry: CatalogEntry, parent_run_id: Optional[str] = None) -> dict:
    """Train, evaluate and save one identity. Raises PersonalizeError for data/optimization failures."""
    t0 = time.time()
    pc = params.personalize
    limit = entry.time_limit_s if entry.time_limit_s is not None else pc.time_limit_s
    out = output_dir(params, entry.identity)
    fp = fingerprint(params, entry)
    if exists(join(out, "config.json")):
        try:
            _, meta = read_model(out, kind=KIND)
            if meta.get("fingerprint") == fp:
                return {"identity": entry.identity, "status": "skipped", "reason": "done", **meta.get("result", {})}
        except Exception:  # unreadable or partial output: redo it
            pass
    seed_everything(params.seed)
    device = resolve_device(params.device)
    base, face, _ = load_generator(join(backbone_dir(params), "generator"), device)
    G = copy.deepcopy(base)
    G.use_delta_w = pc.use_delta_w
    G.requires_grad_(False)  # E_a, E_face and the base weights stay fixed
    dp = G.enable_delta_p()
    trainable = list(dp.parameters()) + (list(G.mlp_dw.parameters()) if pc.use_delta_w else [])
    for p in trainable:
        p.requires_grad_(True)
    D = load_discriminator(join(backbone_dir(params), "discriminator")).to(device)
    syncnet = load_syncnet(join(params.paths.models, "syncnet"), device) if pc.loss.sync else None
    vgg, vgg_status = load_vgg(params, pc.loss.vgg_layers)
    opt_g, opt_d = make_optimizers(trainable, D.parameters(), pc.optim, pc.loss.d_reg_every)
    mask = mask_tensor(G.size, face.mask, device)
    m = StepModules(G, D, opt_g, opt_d, mask, syncnet, vgg)

    index = read_parquet(join(params.paths.shards, "index.parquet")).to_pylist()
    frames_of = {r["clip_id"]: r["n_frames"] for r in index}
    missing = [c for c in entry.clips if c not in frames_of]
    if missing or not entry.clips:
        raise PersonalizeError(f"no usable data: clips not in the shards: {missing[:5] or 'none given'}")
    limits = frame_limits(frames_of, entry.clips, entry.seconds)
    n_frames = sum(limits.get(c, frames_of[c]) for c in entry.clips)
    shard_of = {r["clip_id"]: join(params.paths.shards, r["shard"]) for r in index}
    personal_urls = sorted({shard_of[c] for c in entry.clips})
    general_urls = sorted({join(params.paths.shards, r["shard"]) for r in index if r["split"] == "train"})
    bs = pc.loader.batch_size
    n_personal = max(1, int(round(bs * pc.personal_fraction)))
    steps = max(1, math.ceil(pc.epochs * n_frames / (n_personal * pc.loader.window)))
    wanted = set(entry.clips)
    personal = iter(make_loader(training_pipeline(personal_urls, pc.loader, G.size, params.seed,
                                                  select=lambda meta: meta["clip_id"] in wanted, frame_limits=limits,
                                                  batch_size=n_personal), pc.loader.workers))
    general = iter(make_loader(training_pipeline(general_urls, pc.loader, G.size, params.seed + 1,
                                                 batch_size=bs - n_personal), pc.loader.workers)) if bs > n_personal else None

    scales = effective_scales(G)

    def penalty(aux: dict) -> torch.Tensor:  # Eq. 6
        return delta_penalty(aux["delta_w"], dp.squared_norm(scales), pc.lambda_p)

    history = []
    for step in range(steps):
        batch = next(personal)
        if general is not None:
            batch = _merge(batch, next(general))
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        logs = train_step(m, batch, step, pc.loss, pc.optim, penalty, nan_policy=params.train.nan_policy)
        maybe_fail(f"personalize:{entry.identity}", step + 1)
        if not all(math.isfinite(v) for v in logs.values()):
            raise PersonalizeError(f"non-finite loss at step {step}: {logs}")
        if time.time() - t0 > limit:
            raise PersonalizeError(f"time limit: over {limit:g} s at step {step} of {steps}")
        history.append(logs)

    # Ours-G vs Ours-P on the identity's held-out clips (same protocol, same reference frames)
    scores = {"g": [], "p": []}
    per_clip, grid = [], None
    G.eval()
    for meta, frames, sample in _held_out(params, entry, index, G.size):
        clip = prepare_clip(meta, frames, npy_load(sample["mel.npy"]).astype(np.float32), G.size, params.seed)
        out_g, out_p = generate(base, clip, mask), generate(G, clip, mask)
        sg, sp = mouth_scores(out_g, clip), mouth_scores(out_p, clip)
        if grid is None:
            grid = _grid(clip, out_g, out_p, mask)
        scores["g"].append(sg)
        scores["p"].append(sp)
        per_clip.append({"clip_id": meta["clip_id"], **{f"{k}_g": v for k, v in sg.items()},
                         **{f"{k}_p": v for k, v in sp.items()}})
    g_mean, p_mean = mean_scores(scores["g"]), mean_scores(scores["p"])
    comparison = {"mouth_psnr_g": g_mean.get("mouth_psnr"), "mouth_psnr_p": p_mean.get("mouth_psnr"),
                  "mouth_ssim_g": g_mean.get("mouth_ssim"), "mouth_ssim_p": p_mean.get("mouth_ssim"),
                  "held_out_clips": len(per_clip)}

    packed = pack_delta({k: v for k, v in dp.shifts.items()}, G.mlp_dw.state_dict(), pc.delta_dtype, pc.delta_rank)
    result = {"steps": steps, "personal_frames": n_frames, "wall_s": round(time.time() - t0, 2),
              "delta_bytes": packed_bytes(packed), "final_loss": history[-1]["g_total"] if history else None,
              **comparison}
    save_model(out, packed, KIND, {"use_delta_w": pc.use_delta_w, "delta_dtype": pc.delta_dtype,
                                   "delta_rank": pc.delta_rank, "personalize": asdict(pc)},
               {"identity": entry.identity, "backbone_sha256": backbone_hash(params), "fingerprint": fp,
                "data": asdict(entry) | {"frame_limits": limits, "frames": n_frames}, "perceptual": vgg_status,
                "result": result, "per_clip": per_clip})
    result["delta_file_bytes"] = size(join(out, "model.safetensors"))
    result["mlflow_run_id"] = _track(params, entry, history, result, parent_run_id, grid)
    return {"identity": entry.identity, "status": "ok", "reason": "", **result}


def _grid(clip: dict, out_g: torch.Tensor, out_p: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Rows of: masked input | reference | Ours-G | Ours-P | ground truth (3 frames of the clip)."""
    from .. import tracking

    def img(x):
        return (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)

    gt, ref = clip["gt"], clip["gt"][clip["ref"]]
    idx = np.linspace(0, len(gt) - 1, 3).astype(int)
    return tracking.image_grid([[img(gt[i] * (1 - mask[0].cpu())), img(ref), img(out_g[i]), img(out_p[i]), img(gt[i])]
                                for i in idx])


def _track(params: Params, entry: CatalogEntry, history: list, result: dict, parent_run_id: Optional[str],
           grid: Optional[np.ndarray]) -> Optional[str]:
    """A child MLflow run per identity: params, losses, before/after grid, delta size, registry alias."""
    if not params.tracking.enabled:
        return None
    import mlflow

    from .. import tracking
    from ..io import safe_name

    tracking.setup(params.tracking, "personalize")
    tags = {"identity": entry.identity}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    with mlflow.start_run(run_name=f"personal-{safe_name(entry.identity)}", tags=tags) as run:
        tracking.log_params({"identity": entry.identity, "clips": ",".join(entry.clips), "seconds": entry.seconds,
                             "personalize": asdict(params.personalize)})
        for i, h in enumerate(history):
            mlflow.log_metrics({k: v for k, v in h.items() if math.isfinite(v)}, step=i)
        mlflow.log_metrics({k: v for k, v in result.items() if isinstance(v, (int, float)) and v is not None})
        if grid is not None:
            mlflow.log_image(grid, key="before_after", step=0)
        with local_dir(output_dir(params, entry.identity)) as out:  # a download when models are on a URI
            mlflow.log_artifacts(str(out), artifact_path="personal")
        alias = safe_name(entry.identity).replace(".", "_")
        if alias.lower() != "latest" and not (alias[0] in "vV" and alias[1:].isdigit()):
            tracking.register(run.info.run_id, "personal", f"{params.tracking.experiment_prefix}-personal",
                              alias=alias, tags={"identity": entry.identity})
        return run.info.run_id
