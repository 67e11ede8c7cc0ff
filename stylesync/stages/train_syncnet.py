"""Stage `train_syncnet`: the expert SyncNet (train/syncnet.py) -> models/syncnet, metrics/syncnet.json,
plots/syncnet.csv and its PNG reports/syncnet.png; MLflow: the run's params and validation curve, the
model and the PNG as artifacts."""
from __future__ import annotations

import logging
from dataclasses import asdict

from ..config import Params
from ..storage import local_dir, write_json
from ..layout import Layout
from ..runtime import tracking
from ..train import syncnet as expert
from .hooks import TrackingHooks
from .outputs import write_plot
from .report_plots import write_report_plots

log = logging.getLogger(__name__)


def train_syncnet(params: Params) -> dict:
    """Train and export the expert; write its metrics and plot. Returns the metrics."""
    layout = Layout(params.paths)
    cfg = params.syncnet_train
    hooks = TrackingHooks(params.tracking, "syncnet", "expert-syncnet",
                          {"syncnet_train": asdict(cfg), "model.syncnet": asdict(params.model.syncnet), "seed": params.seed})
    out = expert.train_syncnet(params, hooks)
    history, chosen = out["history"], out["chosen"]
    final = history[-1] if history else {}
    metrics = {"steps": out["steps"], "train_loss": final.get("train_loss"), "train_acc": final.get("train_acc"),
               "keep": cfg.keep, "selected_step": chosen.get("step"),
               "val_loss": chosen.get("val_loss"), "val_acc": chosen.get("val_acc"), "chance_acc": 0.5,
               "val_split": "val", "val_acc_clear": chosen.get("val_acc_clear"),
               "val_acc_ambiguous": chosen.get("val_acc_ambiguous"), "clear_diff": cfg.clear_diff,
               "val_ambiguous_fraction": chosen.get("val_ambiguous_fraction"),
               "best_val_acc": max((h["val_acc"] for h in history), default=None), "mlflow_run_id": out["mlflow_run_id"],
               "sync_filter": out["sync"]}
    write_json(layout.metrics("syncnet.json"), metrics)
    write_plot(layout.plots("syncnet.csv"), history, ["step", "train_loss", "val_loss", "train_acc", "val_acc",
                                                            "val_acc_clear"])
    pngs = write_report_plots(layout, "syncnet")
    if params.tracking.enabled and out["mlflow_run_id"]:
        import mlflow

        with tracking.run(params.tracking, "syncnet", "", run_id=out["mlflow_run_id"], system_metrics=False), \
                local_dir(layout.syncnet) as d:
            mlflow.log_artifacts(str(d), artifact_path="model")
            for png in pngs:
                mlflow.log_artifact(png, artifact_path="reports")
    return metrics


def run(params: Params, args) -> int:
    m = train_syncnet(params)
    log.info("expert SyncNet: val accuracy %.3f (chance 0.5; clear pairs %.3f, %.0f%% ambiguous), val loss %.3f",
             m["val_acc"] or 0, m["val_acc_clear"] or 0, 100 * (m["val_ambiguous_fraction"] or 0), m["val_loss"] or 0)
    return 0
