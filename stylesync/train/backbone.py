"""The `train_backbone` stage: the generalized StyleSync model on Ray Train (DDP over N workers).

Every `checkpoint_every` steps rank 0 reports a checkpoint (G, D, EMA of G, optimizers, step, RNG,
data position = batches consumed) through `ray.train.report`; a restarted run (same params -> same
run name under `paths.runs`) resumes from the last one, and `FailureConfig(max_failures)` restarts
killed workers from it. Rank 0 tracks the run in MLflow. The driver exports the final models to
`models/backbone/` and runs the demo check (`metrics/train.json`).
"""
from __future__ import annotations

import copy
import csv
import itertools
import logging
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .. import tracking
from ..config import Params, anchored, config_hash, from_dict, to_dict
from ..data.loader import make_loader, seed_everything, shard_urls, training_pipeline
from ..faults import maybe_fail
from ..io import atomic_write_bytes, join, local_dir, ray_storage, write_json
from ..models.discriminator import Discriminator
from ..models.generator import StyleSyncGenerator
from .build import build_discriminator, load_syncnet, load_vgg, mask_tensor
from .checkpointing import load_latest_intact, load_training_state, older_ray_checkpoints, save_training_state
from .step import StepModules, backbone_param_groups, make_optimizers, train_step, unwrap

log = logging.getLogger(__name__)


# settings that do not change what is learned: a rerun with other values resumes the same run
_SCHEDULE_ONLY = ("steps", "checkpoint_every", "keep_checkpoints", "max_failures", "log_every", "image_every",
                  "val_clips", "demo_check_at_checkpoints", "cpus_per_worker", "nan_policy")  # nan_policy: a stopped run resumes with "skip"


def run_name(params: Params) -> str:
    """Same training params -> same name -> a rerun resumes (also to train longer); else afresh."""
    train = {k: v for k, v in to_dict(params.train).items() if k not in _SCHEDULE_ONLY}
    key = {"train": train, "model": params.model, "face": params.face, "seed": params.seed,
           "paths": {k: getattr(params.paths, k) for k in ("shards", "vgg19_weights", "discriminator_init")}}
    return f"backbone-{config_hash(key)}"


def amp_dtype(params: Params, device: torch.device) -> Optional[torch.dtype]:
    mode = params.train.amp
    if mode == "bf16" or (mode == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def sample_grid(batch: dict, fake: torch.Tensor, mask: torch.Tensor, n: int = 4) -> np.ndarray:
    """masked input | reference | generated | ground truth, first frame of the first n windows."""
    def img(x):  # (3, S, S) -> (S, S, 3) uint8
        return (x.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)

    rows = []
    for i in range(min(n, len(fake))):
        t = batch["target"][i, 0]
        rows.append([img(t * (1 - mask[0].to(t.device))), img(batch["reference"][i, 0]), img(fake[i, 0]), img(t)])
    return tracking.image_grid(rows)


def progress_line(step: int, total: int, logs: dict, elapsed: float, done: int) -> str:
    """`backbone step 120/1000 | g_total 1.23 l1 0.045 ... | 52.1 img/s | ETA 7m12s` for the console."""
    keys = ("g_total", "l1", "g_adv", "sync", "vgg", "d_loss", "r1")
    losses = " ".join(f"{k} {logs[k]:.4g}" for k in keys if k in logs)
    eta = elapsed / max(done, 1) * (total - step)
    return (f"backbone step {step}/{total} | {losses} | {logs.get('images_per_s', 0.0):.1f} img/s | "
            f"ETA {int(eta // 60)}m{int(eta % 60):02d}s")


# ------------------------------------------------------------------------------ per worker
def backbone_loop(config: dict) -> None:
    import ray.train
    import ray.train.torch

    params = from_dict(Params, config["params"])
    tc = params.train
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    seed_everything(params.seed)
    G = StyleSyncGenerator(params.model.generator).to(device)
    D = build_discriminator(params).to(device)
    g_ema = copy.deepcopy(G).eval().requires_grad_(False)
    syncnet = load_syncnet(join(params.paths.models, "syncnet"), device) if tc.loss.sync else None
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
    m = StepModules(Gw, Dw, opt_g, opt_d, mask, syncnet, vgg, g_ema, amp_dtype(params, device), cl)
    m.extra["nonfinite_skipped"] = extra.get("nonfinite_skipped", 0)  # train.nan_policy: skip
    loader = make_loader(training_pipeline(shard_urls(params.paths.shards, "train"), tc.loader,
                                           params.model.generator.size, seed=params.seed, skip_batches=step),
                         tc.loader.workers)
    history: list = extra.get("history", [])
    curve: list = extra.get("demo_curve", [])
    checker = syncnet if syncnet is not None else load_syncnet(join(params.paths.models, "syncnet"), device)
    mlflow_run = extra.get("mlflow_run")
    images_per_step = tc.loader.batch_size * tc.loader.window * world
    with tracking.run(params.tracking, "backbone", config["run_name"], run_id=mlflow_run) if rank == 0 else _null() as active:
        import mlflow

        if active is not None and mlflow_run is None:
            tracking.log_params({**to_dict(params), "perceptual": vgg_status, "world_size": world,
                                 "device": str(device), "amp": str(m.amp_dtype), "channels_last": cl})
        mlflow_run = active.info.run_id if active is not None else mlflow_run
        it = iter(loader)
        t_last, steps_last = time.perf_counter(), step
        t_start, step_start = t_last, step
        logs: dict = {}

        def checkpoint() -> "ray.train.Checkpoint":  # rank 0: the whole training state at `step`
            tmp = tempfile.mkdtemp(prefix="stylesync-ckpt-")
            save_training_state(tmp, {"G": unwrap(Gw), "D": unwrap(Dw), "g_ema": g_ema}, {"opt_g": opt_g, "opt_d": opt_d},
                                step, {"history": history, "demo_curve": curve, "mlflow_run": mlflow_run, "perceptual": vgg_status,
                                       "nonfinite_skipped": m.extra["nonfinite_skipped"]})
            return ray.train.Checkpoint.from_directory(tmp)

        if step >= tc.steps and rank == 0:  # already trained this far: hand the checkpoint back as is
            ray.train.report({"step": step}, checkpoint=checkpoint())
        elif step >= tc.steps:
            ray.train.report({"step": step})
        while step < tc.steps:
            batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in next(it).items()}
            logs = train_step(m, batch, step, tc.loss, tc.optim, nan_policy=tc.nan_policy)
            step += 1
            maybe_fail("train", step)
            if step % tc.log_every == 0 or step == tc.steps:
                dt = time.perf_counter() - t_last
                logs["images_per_s"] = images_per_step * (step - steps_last) / max(dt, 1e-9)
                logs["lr_g"], logs["lr_d"] = opt_g.param_groups[0]["lr"], opt_d.param_groups[0]["lr"]
                t_last, steps_last = time.perf_counter(), step
                if rank == 0:
                    history.append({"step": step, **{k: round(v, 6) for k, v in logs.items()}})
                    print(progress_line(step, tc.steps, logs, time.perf_counter() - t_start, step - step_start), flush=True)
                    if active is not None:
                        mlflow.log_metrics(logs, step=step)
            if rank == 0 and active is not None and tc.image_every and step % tc.image_every == 0:
                with torch.no_grad():
                    from .step import generate

                    fake = generate(g_ema, batch, mask, cl)
                tracking.log_image(sample_grid(batch, fake, mask), "samples", step)
            if step % tc.checkpoint_every == 0 or step == tc.steps:
                report = {"step": step, **{k: v for k, v in logs.items() if isinstance(v, float)}}
                if rank == 0 and tc.demo_check_at_checkpoints:  # the learning curve on the held-out clips
                    curve.append(_curve_point(params, g_ema, checker, mask, step))
                    print(f"demo check at step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in curve[-1].items()
                                                                     if k.startswith(("mouth_psnr", "sync_score"))), flush=True)
                    if active is not None:
                        mlflow.log_metrics({f"demo_check/{k}": v for k, v in curve[-1].items() if k != "step"}, step=step)
                if rank == 0:
                    ray.train.report(report, checkpoint=checkpoint())
                else:
                    ray.train.report(report)


def _curve_point(params: Params, g_ema, syncnet, mask, step: int) -> dict:
    from ..eval.demo_check import demo_check

    check, _ = demo_check(g_ema, syncnet, shard_urls(params.paths.shards, "test"), mask, params.train.val_clips,
                          params.seed)
    return {"step": step, **check}


def _lazy(fn, *args):
    """Yield from fn(*args), called only when the first item is asked for."""
    yield from fn(*args)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


# ------------------------------------------------------------------------------ driver
def fit(params: Params):
    """Run (or resume) the Ray Train job; returns the Ray Train result."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ..ray_session import ray_session

    tc = params.train
    name = run_name(params)
    storage, storage_fs = ray_storage(params.paths.runs)  # a local path, or a URI's filesystem
    with ray_session(params.ray):
        import ray

        cpus = tc.cpus_per_worker or max(1, int(ray.cluster_resources().get("CPU", 1)) // tc.num_workers)
        trainer = TorchTrainer(
            backbone_loop,
            train_loop_config={"params": to_dict(anchored(params)), "run_name": name},  # workers run elsewhere
            scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu,
                                         resources_per_worker={"CPU": cpus, **({"GPU": 1} if tc.use_gpu else {})}),
            run_config=RunConfig(name=name, storage_path=storage, storage_filesystem=storage_fs,
                                 failure_config=FailureConfig(max_failures=tc.max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=tc.keep_checkpoints)),
        )
        return trainer.fit()


def export(params: Params, checkpoint_dir: str | Path) -> dict:
    """Checkpoint -> models/backbone/{generator (EMA), discriminator}; returns the checkpoint extra."""
    from .build import save_discriminator, save_generator

    G = StyleSyncGenerator(params.model.generator)
    g_ema = copy.deepcopy(G)
    D = Discriminator(params.model.discriminator)
    step, extra = load_training_state(checkpoint_dir, {"G": G, "D": D, "g_ema": g_ema}, {}, restore_rng=False)
    out = join(params.paths.models, "backbone")
    save_generator(join(out, "generator"), g_ema, params.face, {"step": step, "mlflow_run_id": extra.get("mlflow_run"),
                                                           "perceptual": extra.get("perceptual")})
    save_discriminator(join(out, "discriminator"), D)
    return {**extra, "step": step}


def train_backbone(params: Params) -> dict:
    t0 = time.time()
    result = fit(params)
    if result.checkpoint is None:
        raise RuntimeError(f"training produced no checkpoint ({result.error})")
    with result.checkpoint.as_directory() as d:
        extra = export(params, d)
    from ..eval.demo_check import demo_check
    from .build import load_generator

    device = torch.device("cpu")
    G, face, _ = load_generator(join(params.paths.models, "backbone", "generator"), device)
    syncnet = load_syncnet(join(params.paths.models, "syncnet"), device)
    mask = mask_tensor(G.size, face.mask, device)
    check, clips = demo_check(G, syncnet, shard_urls(params.paths.shards, "test"), mask, params.train.val_clips,
                              params.seed)
    history = extra.get("history", [])
    final = history[-1] if history else {}
    metrics = {"steps": extra["step"], "wall_s": round(time.time() - t0, 1), "perceptual": extra.get("perceptual"),
               "mlflow_run_id": extra.get("mlflow_run"), "run_name": run_name(params),
               "nonfinite_skipped": extra.get("nonfinite_skipped", 0),
               "final": {k: v for k, v in final.items() if k != "step"}, "demo_check": check}
    write_json(Path(params.paths.metrics) / "train.json", metrics)
    _write_plots(params, history, extra.get("demo_curve", []))
    atomic_write_bytes(join(params.paths.models, "backbone", "mlflow_run_id.txt"), f"{extra.get('mlflow_run')}\n".encode())
    if params.tracking.enabled and extra.get("mlflow_run"):
        _log_final(params, extra["mlflow_run"], check, clips)
    return metrics


def _write_plots(params: Params, history: list, curve: list) -> None:
    keys = ["step", "d_loss", "g_adv", "l1", "sync", "vgg", "g_total", "images_per_s"]
    for name, rows, fields in (("train.csv", history, keys), ("demo_check.csv", curve, list(curve[0]) if curve else ["step"])):
        path = Path(params.paths.plots) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)


def _log_final(params: Params, run_id: str, check: dict, clips: list) -> None:
    """Demo-check metrics, a validation video, the model as an artifact and a registry version."""
    import mlflow

    from ..video import write_video

    with tracking.run(params.tracking, "backbone", "", run_id=run_id, system_metrics=False):
        mlflow.log_metrics({f"demo_check/{k}": v for k, v in check.items()})
        if clips:
            meta, gen, gt, audio = clips[0]
            side = torch.cat([gen, gt], dim=-1).permute(0, 2, 3, 1).clamp(0, 1).numpy()  # generated | truth
            with tempfile.TemporaryDirectory() as d:
                video = Path(d) / "validation.mp4"
                write_video(video, (side * 255).round().astype(np.uint8), 25.0, audio.astype(np.float32) / 32767)
                mlflow.log_artifact(str(video), artifact_path="validation")
        with local_dir(join(params.paths.models, "backbone")) as d:  # a download when models are on a URI
            mlflow.log_artifacts(str(d), artifact_path="model")
        version = tracking.register(run_id, "model", f"{params.tracking.experiment_prefix}-backbone", alias="current")
        log.info("registered %s-backbone version %s (alias current)", params.tracking.experiment_prefix, version)


def run(params: Params, args) -> int:
    m = train_backbone(params)
    log.info("backbone: %d steps in %.0f s; demo check %s", m["steps"], m["wall_s"], m["demo_check"])
    return 0
