"""The generalized StyleSync backbone on Ray Train (DDP over N workers), on the shared loop driver.

Every `checkpoint_every` steps rank 0 reports a checkpoint (G, D, EMA of G, optimizers, step, RNG,
data position = batches consumed) through `ray.train.report`; a restarted run (same params -> same
run name under `paths.runs`) resumes from the last one, and `FailureConfig(max_failures)` restarts
killed workers from it. Rank 0 runs the stage's `LoopHooks` (tracking, the demo check at
checkpoints: stages/train_backbone.py). `train` exports the final models to `models/backbone/`.
"""
from __future__ import annotations

import copy
import itertools
import logging
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

from ..config import Params, anchored, config_hash, from_dict, learned_settings, to_dict
from ..data.av_sync import load_sync_plan
from ..data.loader import make_loader, seed_everything, training_pipeline
from ..data.shards import content_key
from ..face.mask import mask_tensor
from ..storage import exists, optional_sha256, ray_storage
from ..layout import Layout
from ..models.discriminator import Discriminator
from ..models.generator import StyleSyncGenerator
from ..models.store import load_syncnet, save_discriminator, save_generator, syncnet_sha256
from ..runtime.device import amp_dtype, wants_gpu
from ..runtime.faults import maybe_fail
from .build import build_discriminator, load_vgg
from .checkpointing import load_latest_intact, load_training_state, older_ray_checkpoints, save_training_state
from .loop import LoopHooks, drive, eta
from .step import StepModules, backbone_param_groups, generate, make_optimizers, train_step, unwrap

log = logging.getLogger(__name__)


def run_key(params: Params) -> dict:
    """Everything a backbone run learns from, by content: the learned settings, the training
    shards' sha256s, the files of the expert, VGG19 and D's initialisation, the sync plan."""
    layout = Layout(params.paths)
    return {"train": learned_settings(params.train),  # schedule-only fields (steps, log rhythm, ...) resume the run
            "model": params.model, "face": params.face, "seed": params.seed,
            "shards": content_key(params.paths.shards, ["train"]),
            "files": {"expert": syncnet_sha256(layout.syncnet), "vgg19": optional_sha256(params.paths.vgg19_weights),
                      "discriminator_init": optional_sha256(params.paths.discriminator_init)},
            "sync": load_sync_plan(params).key()}  # the clips shifted and skipped


def run_name(params: Params) -> str:
    """Same inputs -> same name -> a rerun resumes (also to train longer); else afresh."""
    return f"backbone-{config_hash(run_key(params))}"


def progress_line(step: int, total: int, logs: dict, elapsed: float, done: int) -> str:
    """`backbone step 120/1000 | g_total 1.23 l1 0.045 ... | 52.1 img/s | ETA 7m12s` for the console."""
    keys = ("g_total", "l1", "g_adv", "sync", "vgg", "d_loss", "r1")
    losses = " ".join(f"{k} {logs[k]:.4g}" for k in keys if k in logs)
    return (f"backbone step {step}/{total} | {losses} | {logs.get('images_per_s', 0.0):.1f} img/s | "
            f"ETA {eta(elapsed, done, total - step)}")


# ------------------------------------------------------------------------------ per worker
def backbone_loop(config: dict) -> None:
    """Ray Train worker: {"params": plain params, "hooks": the stage's LoopHooks (rank 0 runs them)}."""
    import ray.train
    import ray.train.torch

    params = from_dict(Params, config["params"])
    layout = Layout(params.paths)
    tc = params.train
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    hooks: LoopHooks = (config.get("hooks") or LoopHooks()) if rank == 0 else LoopHooks()
    device = ray.train.torch.get_device()
    seed_everything(params.seed)
    G = StyleSyncGenerator(params.model.generator).to(device)
    D = build_discriminator(params).to(device)
    g_ema = copy.deepcopy(G).eval().requires_grad_(False)
    syncnet = load_syncnet(layout.syncnet, device) if tc.loss.sync else None
    vgg, vgg_status = load_vgg(params, tc.loss.vgg_layers)
    vgg = vgg.to(device) if vgg is not None else None
    opt_g, opt_d = make_optimizers(backbone_param_groups(G, tc.optim), D.parameters(), tc.optim, tc.loss.d_reg_every)
    step, extra = 0, {}
    ckpt = ray.train.get_checkpoint()
    if ckpt:  # the newest checkpoint; an older one kept by Ray Train if it fails its manifest
        candidates = itertools.chain([ckpt], _lazy(older_ray_checkpoints, ckpt))  # older: listed only if needed
        step, extra, _ = load_latest_intact(candidates, {"G": G, "D": D, "g_ema": g_ema}, {"opt_g": opt_g, "opt_d": opt_d})
        log.info("rank %d resumes at step %d", rank, step)
    # channels_last applies to activations (the step converts inputs; modulated conv weights are 5-D)
    cl = tc.channels_last == "on" or (tc.channels_last == "auto" and device.type == "cuda")
    Gw = ray.train.torch.prepare_model(G, move_to_device=False)
    Dw = ray.train.torch.prepare_model(D, move_to_device=False)
    if tc.compile:
        Gw, Dw = torch.compile(Gw), torch.compile(Dw)
    mask = mask_tensor(params.model.generator.size, params.face.mask, device)
    m = StepModules(Gw, Dw, opt_g, opt_d, mask, syncnet, vgg, g_ema, amp_dtype(params.train.amp, device), cl)
    m.extra["nonfinite_skipped"] = extra.get("nonfinite_skipped", 0)  # train.nan_policy: skip
    sync = load_sync_plan(params)  # shift / skip clips by the sync check
    loader = make_loader(training_pipeline(layout.shard_urls("train"), tc.loader, params.model.generator.size,
                                           seed=params.seed, skip_batches=step, select=sync.select,
                                           av_offsets=sync.offsets), tc.loader.workers)
    history: list = extra.get("history", [])
    curve: list = extra.get("demo_curve", [])
    checker = syncnet if syncnet is not None else load_syncnet(layout.syncnet, device)
    images_per_step = tc.loader.batch_size * tc.loader.window * world
    run_id = hooks.start(extra.get("mlflow_run"), {"perceptual": vgg_status, "world_size": world, "device": str(device),
                                                   "amp": str(m.amp_dtype), "channels_last": cl})
    it = iter(loader)
    t_start, step_start = time.perf_counter(), step

    def checkpoint(step: int) -> "ray.train.Checkpoint":  # rank 0: the whole training state at `step`
        tmp = tempfile.mkdtemp(prefix="stylesync-ckpt-")
        save_training_state(tmp, {"G": unwrap(Gw), "D": unwrap(Dw), "g_ema": g_ema}, {"opt_g": opt_g, "opt_d": opt_d},
                            step, {"history": history, "demo_curve": curve, "mlflow_run": run_id, "perceptual": vgg_status,
                                   "nonfinite_skipped": m.extra["nonfinite_skipped"]})
        return ray.train.Checkpoint.from_directory(tmp)

    def one_step(step: int) -> dict:
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in next(it).items()}
        logs = train_step(m, batch, step, tc.loss, tc.optim, nan_policy=tc.nan_policy)
        maybe_fail("train", step + 1)
        if hooks.tracks and tc.image_every and (step + 1) % tc.image_every == 0:
            with torch.no_grad():
                hooks.images(step + 1, batch, generate(g_ema, batch, mask, cl), mask)
        return logs

    def on_log(step: int, record: dict) -> None:
        record["images_per_s"] = images_per_step * record.pop("steps_per_s")
        record["lr_g"], record["lr_d"] = opt_g.param_groups[0]["lr"], opt_d.param_groups[0]["lr"]
        if rank == 0:
            print(progress_line(step, tc.steps, record, time.perf_counter() - t_start, step - step_start), flush=True)
            hooks.log(step, record)

    def on_checkpoint(step: int) -> None:
        report = {k: v for k, v in history[-1].items() if isinstance(v, float)} if history else {}
        report["step"] = step
        if rank == 0:
            point = hooks.checkpoint(step, g_ema, checker, mask) if tc.demo_check_at_checkpoints else None
            if point is not None:
                curve.append({"step": step, **point})
            ray.train.report(report, checkpoint=checkpoint(step))
        else:
            ray.train.report(report)

    try:
        if step >= tc.steps:  # already trained this far: hand the checkpoint back as is
            ray.train.report({"step": step}, checkpoint=checkpoint(step) if rank == 0 else None)
        drive(step, tc.steps, one_step, history, log_every=tc.log_every, checkpoint_every=tc.checkpoint_every,
              on_log=on_log, on_checkpoint=on_checkpoint)
    finally:
        hooks.close()


def _lazy(fn, *args):
    """Yield from fn(*args), called only when the first item is asked for."""
    yield from fn(*args)


# ------------------------------------------------------------------------------ driver
def fit(params: Params, hooks: Optional[LoopHooks] = None):
    """Run (or resume) the Ray Train job; returns the Ray Train result. `hooks` run on rank 0."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ..runtime.ray_session import ray_session

    tc = params.train
    name = run_name(params)
    if exists(Layout(params.paths).run(name)):
        log.info("backbone run %s exists: resuming it (the same learned settings, seed, training-shard contents, "
                 "expert / VGG19 / D-init files and sync plan)", name)
    else:
        log.info("backbone run %s: a fresh run (no run of these inputs under %s)", name, params.paths.runs)
    load_sync_plan(params).check_split(Layout(params.paths), "train", "train_backbone")  # else the loader waits forever
    storage, storage_fs = ray_storage(params.paths.runs)  # a local path, or a URI's filesystem
    with ray_session(params.ray):
        import ray

        res = ray.cluster_resources()
        cpus = tc.cpus_per_worker or max(1, int(res.get("CPU", 1)) // tc.num_workers)
        use_gpu = tc.use_gpu if tc.use_gpu is not None else wants_gpu(params.device, res.get("GPU", 0))
        trainer = TorchTrainer(
            backbone_loop,
            train_loop_config={"params": to_dict(anchored(params)), "hooks": hooks},  # workers run elsewhere
            scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=use_gpu,
                                         resources_per_worker={"CPU": cpus, **({"GPU": 1} if use_gpu else {})}),
            run_config=RunConfig(name=name, storage_path=storage, storage_filesystem=storage_fs,
                                 failure_config=FailureConfig(max_failures=tc.max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=tc.keep_checkpoints)),
        )
        return trainer.fit()


def export(params: Params, checkpoint_dir: str | Path) -> dict:
    """Checkpoint -> models/backbone/{generator (EMA), discriminator}; returns the checkpoint extra
    with its step."""
    G = StyleSyncGenerator(params.model.generator)
    g_ema = copy.deepcopy(G)
    D = Discriminator(params.model.discriminator)
    step, extra = load_training_state(checkpoint_dir, {"G": G, "D": D, "g_ema": g_ema}, {}, restore_rng=False)
    layout = Layout(params.paths)
    save_generator(layout.generator, g_ema, params.face, {"step": step, "mlflow_run_id": extra.get("mlflow_run"),
                                                         "perceptual": extra.get("perceptual")})
    save_discriminator(layout.discriminator, D)
    return {**extra, "step": step}


def train(params: Params, hooks: Optional[LoopHooks] = None) -> dict:
    """Train (or resume) and export the backbone; returns the checkpoint extra (history, demo
    curve, MLflow run id, step)."""
    result = fit(params, hooks)
    if result.checkpoint is None:
        raise RuntimeError(f"training produced no checkpoint ({result.error})")
    with result.checkpoint.as_directory() as d:
        return export(params, d)
