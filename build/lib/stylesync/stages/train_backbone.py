"""Stage `train_backbone`: train the backbone (train/backbone.py), then the demo check on held-out
clips -> metrics/train.json, plots/train.csv and plots/demo_check.csv (the learning curve) with their
PNGs reports/train.png and reports/demo_check.png, and in MLflow: the run's params and losses, sample
grids, the demo check at every checkpoint, a validation video, the PNGs, the model as an artifact and
a registry version (alias `current`)."""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..config import Params, anchored, to_dict
from ..data.av_sync import load_sync_plan
from ..eval.demo_check import demo_check, lip_sync_criteria
from ..face.mask import mask_tensor
from ..storage import atomic_write_bytes, join, local_dir, write_json
from ..layout import Layout
from ..models.store import load_generator, load_syncnet
from ..runtime import tracking
from ..runtime.device import resolve_device
from ..train.backbone import run_name, train
from ..video import write_video
from .hooks import TrackingHooks
from .outputs import write_plot
from .report_plots import write_report_plots

log = logging.getLogger(__name__)
LOSS_FIELDS = ["step", "d_loss", "g_adv", "l1", "sync", "vgg", "g_total", "images_per_s"]


def sample_grid(batch: dict, fake: torch.Tensor, mask: torch.Tensor, n: int = 4) -> np.ndarray:
    """masked input | reference | generated | ground truth, first frame of the first n windows."""
    def img(x):  # (3, S, S) -> (S, S, 3) uint8
        return (x.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)

    rows = []
    for i in range(min(n, len(fake))):
        t = batch["target"][i, 0]
        rows.append([img(t * (1 - mask[0].to(t.device))), img(batch["reference"][i, 0]), img(fake[i, 0]), img(t)])
    return tracking.image_grid(rows)


class BackboneHooks(TrackingHooks):
    """Rank 0 of the training loop: MLflow tracking, sample grids, the demo check at every checkpoint."""

    def __init__(self, params: Params, name: str):
        self.params = anchored(params)  # runs in a Ray Train worker, in its own directory
        super().__init__(self.params.tracking, "backbone", name, to_dict(self.params))

    def images(self, step: int, batch: dict, fake: torch.Tensor, mask: torch.Tensor) -> None:
        tracking.log_image(sample_grid(batch, fake, mask), "samples", step)

    def checkpoint(self, step: int, g_ema, syncnet, mask: torch.Tensor) -> dict:
        """A point of the learning curve: the demo check of the EMA generator at this step."""
        p = self.params
        point, _ = demo_check(g_ema, syncnet, Layout(p.paths).shard_urls("val"), mask, p.train.val_clips, p.seed)
        print(f"demo check at step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in point.items()
                                                         if k.startswith(("mouth_psnr", "sync_score", "mouth_opening_c",
                                                                          "mouth_opening_g"))), flush=True)
        self.log(step, {f"demo_check/{k}": v for k, v in point.items()})
        return point


def train_backbone(params: Params) -> dict:
    t0 = time.time()
    layout = Layout(params.paths)
    name = run_name(params)
    extra = train(params, BackboneHooks(params, name))
    device = resolve_device(params.device)
    G, face, _ = load_generator(layout.generator, device)
    mask = mask_tensor(G.size, face.mask, device)
    check, clips = demo_check(G, load_syncnet(layout.syncnet, device), layout.shard_urls("val"), mask,
                              params.train.val_clips, params.seed)
    criteria = lip_sync_criteria(check)
    for criterion, ok in criteria.items():
        print(f"demo check (val): {'pass' if ok else 'FAIL'}  {criterion}", flush=True)
    history = extra.get("history", [])
    final = history[-1] if history else {}
    metrics = {"steps": extra["step"], "wall_s": round(time.time() - t0, 1), "perceptual": extra.get("perceptual"),
               "mlflow_run_id": extra.get("mlflow_run"), "run_name": name,
               "nonfinite_skipped": extra.get("nonfinite_skipped", 0),
               "final": {k: v for k, v in final.items() if k != "step"}, "demo_check": check, "demo_check_split": "val",
               "demo_check_failed": sum(not ok for ok in criteria.values()),
               "sync": load_sync_plan(params).summary()}  # what the loader shifted and skipped
    write_json(layout.metrics("train.json"), metrics)
    write_plot(layout.plots("train.csv"), history, LOSS_FIELDS)
    write_plot(layout.plots("demo_check.csv"), extra.get("demo_curve", []))
    pngs = write_report_plots(layout, "train", "demo_check")
    atomic_write_bytes(join(layout.backbone, "mlflow_run_id.txt"), f"{extra.get('mlflow_run')}\n".encode())
    if params.tracking.enabled and extra.get("mlflow_run"):
        _log_final(params, extra["mlflow_run"], check, clips, pngs)
    return metrics


def _log_final(params: Params, run_id: str, check: dict, clips: list, pngs: list[str]) -> None:
    """Demo-check metrics, a validation video, the curves' PNGs, the model as an artifact and a registry version."""
    import mlflow

    with tracking.run(params.tracking, "backbone", "", run_id=run_id, system_metrics=False):
        mlflow.log_metrics({f"demo_check/{k}": v for k, v in check.items()})
        if clips:
            meta, gen, gt, audio = clips[0]
            side = torch.cat([gen, gt], dim=-1).permute(0, 2, 3, 1).clamp(0, 1).numpy()  # generated | truth
            with tempfile.TemporaryDirectory() as d:
                video = Path(d) / "validation.mp4"
                write_video(video, (side * 255).round().astype(np.uint8), 25.0, audio.astype(np.float32) / 32767)
                mlflow.log_artifact(str(video), artifact_path="validation")
        for png in pngs:
            mlflow.log_artifact(png, artifact_path="reports")
        with local_dir(Layout(params.paths).backbone) as d:  # a download when models are on a URI
            mlflow.log_artifacts(str(d), artifact_path="model")
        version = tracking.register(run_id, "model", f"{params.tracking.experiment_prefix}-backbone", alias="current")
        log.info("registered %s-backbone version %s (alias current)", params.tracking.experiment_prefix, version)


def run(params: Params, args) -> int:
    m = train_backbone(params)
    log.info("backbone: %d steps in %.0f s; demo check %s", m["steps"], m["wall_s"], m["demo_check"])
    return 0
