"""The expert SyncNet on the shards (Wav2Lip's color_syncnet_train).

Positives: a window of 5 aligned frames and the mel window of the same 0.2 s; negatives: a window
from another time of the same clip with the same audio (the loader's reference window, mouth-aware
with `loader.mouth_min_diff`: a negative whose lips move as the positive's is no negative). BCE on
the cosine of the embeddings, Adam. Validation on the `val` split with random negatives, the
accuracy also on the clear pairs alone (the negative's lip-gap profile >= `clear_diff` units from
the positive's) and on the ambiguous rest. With `average_from`, the exported weights are the mean of
the pass's weights after that step (SWA), their BatchNorm statistics recomputed; `amp`: bf16
autocast of the training forward. Resumes from its last checkpoint
(runs/syncnet-<config hash>/); the stage's `LoopHooks` track it (stages/train_syncnet.py).
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from typing import Optional

import torch
from torch.optim.swa_utils import AveragedModel

from ..config import Params, config_hash, learned_settings
from ..data.av_sync import SyncPlan, load_sync_plan
from ..data.loader import make_loader, seed_everything, training_pipeline
from ..data.shards import content_key
from ..storage import atomic_dir, dir_complete, exists, file_sha256, glob, join, local_dir, remove
from ..layout import Layout
from ..models.store import load_syncnet, save_syncnet
from ..models.syncnet import ExpertSyncNet
from ..runtime.device import amp_dtype, autocast, resolve_device
from .checkpointing import load_training_state, save_training_state
from .loop import LoopHooks
from .losses import syncnet_bce

log = logging.getLogger(__name__)
REPORT_SEED = 1_000_003  # the loader seed of the report draw: the same val pairs for every run and seed
BN_BATCHES = 32  # training batches that give a weight average its BatchNorm statistics


def appearance_jitter(frames: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per window: a random order of the colour channels, brightness and contrast. (N, T, 3, S, S).
    Sync is about motion; this keeps the expert from keying on the few training identities' looks."""
    n = frames.shape[0]
    perms = torch.stack([torch.randperm(3, generator=gen) for _ in range(n)])  # (N, 3)
    out = torch.stack([f[:, p] for f, p in zip(frames, perms)])
    gain = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, 1, generator=gen)
    bias = 0.2 * (torch.rand(n, 1, 1, 1, 1, generator=gen) - 0.5)
    mean = out.mean(dim=(1, 2, 3, 4), keepdim=True)
    return ((out - mean) * gain + mean + bias).clamp(0, 1)


def pairs(net: ExpertSyncNet, batch: dict, device, gen: torch.Generator | None = None,
          amp: Optional[torch.dtype] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(cosines (2B,) fp32, labels (2B,)): in-sync windows, then out-of-sync windows with the same
    audio; `amp`: the autocast dtype of the forward (None = fp32)."""
    mel = batch["sync_mel"].to(device)
    frames = torch.cat([batch["target"], batch["reference"]])  # (2B, 5, 3, S, S)
    if gen is not None:
        frames = appearance_jitter(frames, gen)
    with autocast(torch.device(device), amp):
        cos = net(frames.to(device), torch.cat([mel, mel])).float()
    labels = torch.cat([torch.ones(len(mel)), torch.zeros(len(mel))]).to(device)
    return cos, labels


def clear_pairs(batch: dict, clear_diff: float) -> torch.Tensor:
    """(2B,) bool: the pairs of `pairs` (positives, then negatives) whose negative's lip-gap profile
    differs from the positive's by >= clear_diff template units (both halves of a pair alike)."""
    clear = (batch["lip_gap"] - batch["ref_lip_gap"]).abs().amax(-1) >= clear_diff  # (B,)
    return torch.cat([clear, clear])


@torch.no_grad()
def evaluate(net: ExpertSyncNet, batches: list[dict], device, clear_diff: float = 1.0) -> dict:
    """loss, acc; acc_clear / acc_ambiguous and ambiguous_fraction (see `clear_pairs`)."""
    net.eval()
    losses, right, clear = [], [], []
    for b in batches:
        cos, y = pairs(net, b, device)
        losses.append(syncnet_bce(cos, y).item())
        right.append(((cos > 0.5).float() == y).cpu())
        clear.append(clear_pairs(b, clear_diff))
    net.train()
    right, clear = torch.cat(right).float(), torch.cat(clear)
    part = lambda m: right[m].mean().item() if m.any() else float("nan")  # noqa: E731
    return {"loss": sum(losses) / len(losses), "acc": right.mean().item(), "acc_clear": part(clear),
            "acc_ambiguous": part(~clear), "ambiguous_fraction": 1 - clear.float().mean().item(), "pairs": len(right)}


@torch.no_grad()
def recompute_bn(net: ExpertSyncNet, batches: list[dict], device) -> ExpertSyncNet:
    """`net` with its BatchNorm running statistics replaced by their plain mean over `batches` (both
    halves of each batch's pairs, no jitter): what an average of weights needs (SWA's update_bn)."""
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a cumulative mean
    net.train()
    for b in batches:
        pairs(net, b, device)
    return net.eval()


# the val_* keys of a history record and of metrics/syncnet.json <- the keys of `evaluate`
RECORD = {"val_loss": "loss", "val_acc": "acc", "val_acc_clear": "acc_clear", "val_acc_ambiguous": "acc_ambiguous",
          "val_ambiguous_fraction": "ambiguous_fraction", "val_pairs": "pairs"}


def record(ev: dict) -> dict:
    """`evaluate`'s result under the val_* names of RECORD."""
    return {k: ev[v] for k, v in RECORD.items()}


def val_batches(params: Params, n: int, seed: int) -> list[dict]:
    """`n` batches of the val split with random negatives (the ambiguity measured), loader seed `seed`."""
    cfg = params.syncnet_train
    loader = dataclasses.replace(cfg.loader, mouth_min_diff=0.0)
    pipeline = training_pipeline(Layout(params.paths).shard_urls("val"), loader, params.model.syncnet.size, seed)
    return list(itertools.islice(iter(make_loader(pipeline, 0)), n))


def _train_pipeline(params: Params, sync: SyncPlan, seed: int, skip_batches: int = 0):
    """The training split's pairs (the sync plan's shifts and skips applied), loader seed `seed`."""
    cfg = params.syncnet_train
    return training_pipeline(Layout(params.paths).shard_urls("train"), cfg.loader, params.model.syncnet.size, seed,
                             skip_batches=skip_batches, select=sync.select, av_offsets=sync.offsets)


def _checkpoints(run_dir: str) -> list[str]:
    """Finished checkpoint directories of a run (local path or URI), oldest first."""
    found = [p for p in glob(run_dir, "step-*") if p.rstrip("/").rsplit("-", 1)[-1].isdigit()]
    return sorted((p for p in found if dir_complete(p)), key=lambda p: int(p.rstrip("/").rsplit("-", 1)[-1]))


def _latest(run_dir: str) -> str | None:
    ckpts = _checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def train_syncnet(params: Params, hooks: Optional[LoopHooks] = None, sync: Optional[SyncPlan] = None,
                  steps: Optional[int] = None, init: Optional[str] = None, report: bool = True) -> dict:
    """Train (or resume) the expert and export it to models/syncnet; returns {"steps", "history"
    (one record per evaluation), "chosen" (the exported record, on the selection draw), "keep" (what was
    exported: average | best | last), "report" (the exported weights on `report_batches` val batches;
    None without them or with `report` false), "mlflow_run_id", "sync"}. `sync`: the
    training clips' shifts and skips (default: the sync check's table under `sync_filter`, else none);
    `steps`: the run's length (default `syncnet_train.steps`; the first of two passes is shorter);
    `init`: an exported expert whose weights a fresh run starts from (the first pass's)."""
    cfg, mcfg = params.syncnet_train, params.model.syncnet
    steps = cfg.steps if steps is None else steps
    hooks = hooks or LoopHooks()
    layout = Layout(params.paths)
    device = resolve_device(params.device)
    seed_everything(params.seed)
    learned = learned_settings(cfg)
    learned.pop("warm_start")  # what it changes is `init`, keyed below: a first pass is the same run either way
    if sync is None and cfg.sync_filter:  # a second pass on the sync check's filtered, shifted data
        sync = load_sync_plan(params)
        if sync.status != "applied":
            raise FileNotFoundError(f"syncnet_train.sync_filter needs the sync check's table ({sync.status}): run "
                                    "`stylesync sync-check` first (with sync_check.apply: true)")
    sync = sync or SyncPlan()
    if sync.status != "off":
        sync.check_split(layout, "train", "train_syncnet (filtered)")
    extra_key = {"sync": sync.key()} if sync.status != "off" else {}
    if init is not None:
        extra_key["init"] = file_sha256(join(init, "model.safetensors"))  # the weights it starts from
    shards = content_key(params.paths.shards, ["train", "val"])  # by content: other bytes at the same path, a fresh run
    run_dir = layout.run(f"syncnet-{config_hash({'t': learned, 'm': mcfg, 'seed': params.seed, 'shards': shards, **extra_key})}")
    net = ExpertSyncNet(mcfg).to(device)
    amp = amp_dtype(cfg.amp, device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    average = AveragedModel(net) if cfg.average_from is not None else None  # parameters; BN recomputed at export
    modules = {"syncnet": net, **({"average": average} if average is not None else {})}
    step, history, run_id = 0, [], None
    latest = _latest(run_dir)
    if latest is None and init is not None:
        net.load_state_dict(load_syncnet(init).state_dict())
        log.info("the expert SyncNet starts from %s", init)
    if latest is not None:
        with local_dir(latest) as d:  # a download when runs are on a URI
            step, extra = load_training_state(d, modules, {"adam": opt})
        history, run_id = extra.get("history", []), extra.get("mlflow_run")
        log.info("resuming the expert SyncNet from %s (step %d): a run of the same settings, seed and shard "
                 "contents", latest, step)
    train = make_loader(_train_pipeline(params, sync, params.seed, skip_batches=step), cfg.loader.workers)
    val = val_batches(params, cfg.eval_batches, params.seed + 1)  # the selection draw
    it = iter(train)
    gen = torch.Generator() if cfg.augment else None
    t0, seen = time.time(), 0
    run_id = hooks.start(run_id, {})
    try:
        while step < steps:
            batch = next(it)
            if gen is not None:
                gen.manual_seed(params.seed * 1_000_003 + step)  # a function of the step: exact on resume
            cos, y = pairs(net, batch, device, gen, amp)
            loss = syncnet_bce(cos, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += len(y)
            if average is not None and step > cfg.average_from and (step - cfg.average_from) % cfg.average_every == 0:
                average.update_parameters(net)
            if step % cfg.eval_every == 0 or step == steps:  # the only host syncs
                train_acc = ((cos > 0.5).float() == y).float().mean().item()
                ev = evaluate(net, val, device, cfg.clear_diff)
                rec = {"step": step, "train_loss": loss.item(), "train_acc": train_acc, **record(ev),
                       "pairs_per_s": seen / (time.time() - t0)}
                history.append(rec)
                log.info("syncnet step %d/%d: train loss %.3f acc %.2f | val loss %.3f acc %.2f (clear pairs %.2f, "
                         "ambiguous %.2f of %.0f%%)", step, steps, rec["train_loss"], train_acc, ev["loss"],
                         ev["acc"], ev["acc_clear"], ev["acc_ambiguous"], 100 * ev["ambiguous_fraction"])
                hooks.log(step, rec)
                if average is None and ev["loss"] <= min(h["val_loss"] for h in history):  # `keep` without an average
                    save_syncnet(join(run_dir, "best"), net, {"step": step})  # atomic; survives a restart
            if step % cfg.checkpoint_every == 0 or step == steps:
                with atomic_dir(join(run_dir, f"step-{step:08d}")) as tmp:
                    save_training_state(tmp, modules, {"adam": opt}, step,
                                        {"history": history, "mlflow_run": run_id})
                for old in _checkpoints(run_dir)[:-2]:
                    remove(old, recursive=True)
    finally:
        hooks.close()
    chosen, keep = (history[-1] if history else {}), "last"
    if average is not None and int(average.n_averaged):
        bn = list(itertools.islice(iter(make_loader(_train_pipeline(params, sync, params.seed + 2), 0)), BN_BATCHES))
        net, keep = recompute_bn(average.module, bn, device), "average"
        chosen = {"step": step, "averaged": int(average.n_averaged), **record(evaluate(net, val, device, cfg.clear_diff))}
        log.info("the expert's weights averaged over %d snapshots (steps %d-%d), BatchNorm statistics recomputed: "
                 "val accuracy %.3f on the selection draw", chosen["averaged"], cfg.average_from + cfg.average_every,
                 step, chosen["val_acc"])
    elif cfg.keep == "best" and history and exists(join(run_dir, "best", "config.json")):
        chosen, keep = min(history, key=lambda h: h["val_loss"]), "best"
        net = load_syncnet(join(run_dir, "best"))
    elif cfg.keep == "best" and history:
        log.warning("no best-validation weights in %s (a run made before `keep` existed): exporting the last "
                    "weights; delete the run directory to retrain", run_dir)
    rep = None
    if report and cfg.report_batches:
        rep = evaluate(net.to(device), val_batches(params, cfg.report_batches, REPORT_SEED), device, cfg.clear_diff)
    save_syncnet(layout.syncnet, net.cpu(), {"mlflow_run_id": run_id, "steps": step, "selected_step": chosen.get("step")})
    return {"steps": step, "history": history, "chosen": chosen, "keep": keep, "report": rep, "mlflow_run_id": run_id,
            "sync": sync.summary()}
