"""Stage `train_syncnet`: the expert SyncNet (train/syncnet.py) -> models/syncnet, metrics/syncnet.json,
plots/syncnet.csv and its PNG reports/syncnet.png; MLflow: the run's params and validation curve, the
model and the PNG as artifacts. With `syncnet_train.first_pass_steps`, two passes: the first expert
scores the training clips' A/V offsets (the sync check's search) and the second trains on them
shifted and filtered."""
from __future__ import annotations

import logging
from dataclasses import asdict

from ..config import Params
from ..data.av_sync import SyncPlan, plan_from_rows
from ..storage import local_dir, write_json
from ..layout import Layout
from ..runtime import tracking
from ..train import syncnet as expert
from .hooks import TrackingHooks
from .outputs import write_plot
from .report_plots import write_report_plots
from .sync_check import injected_offsets, injected_recovery, score_all

log = logging.getLogger(__name__)


def train_syncnet(params: Params) -> dict:
    """Train and export the expert; write its metrics and plot. Returns the metrics."""
    layout = Layout(params.paths)
    cfg = params.syncnet_train
    hooks = TrackingHooks(params.tracking, "syncnet", "expert-syncnet",
                          {"syncnet_train": asdict(cfg), "model.syncnet": asdict(params.model.syncnet), "seed": params.seed})
    first, sync, curve = _first_pass(params) if cfg.first_pass_steps else ({}, None, [])
    init = layout.syncnet if cfg.first_pass_steps and cfg.warm_start else None  # the first pass's export
    out = expert.train_syncnet(params, hooks, sync, init=init)
    history, chosen = out["history"], out["chosen"]
    final = history[-1] if history else {}
    metrics = {"steps": out["steps"], "train_loss": final.get("train_loss"), "train_acc": final.get("train_acc"),
               "keep": out["keep"], "selected_step": chosen.get("step"),
               "averaged_snapshots": chosen.get("averaged"), "chance_acc": 0.5, "val_split": "val",
               "clear_diff": cfg.clear_diff, **reported(out),
               "best_val_acc": max((h["val_acc"] for h in history), default=None), "mlflow_run_id": out["mlflow_run_id"],
               "sync_filter": out["sync"], **({"first_pass": first} if first else {})}
    write_json(layout.metrics("syncnet.json"), metrics)
    curve += pass_curve(out, 2 if first else 1, first.get("steps", 0))  # the second pass's steps follow the first's
    write_plot(layout.plots("syncnet.csv"), curve, ["step", "pass", "train_loss", "val_loss", "train_acc", "val_acc",
                                                    "val_acc_clear", "average_val_loss", "average_val_acc"])
    pngs = write_report_plots(layout, "syncnet")
    if params.tracking.enabled and out["mlflow_run_id"]:
        import mlflow

        with tracking.run(params.tracking, "syncnet", "", run_id=out["mlflow_run_id"], system_metrics=False), \
                local_dir(layout.syncnet) as d:
            mlflow.log_artifacts(str(d), artifact_path="model")
            mlflow.log_metrics({f"exported/{k}": metrics[k] for k in ("val_acc", "val_acc_clear", "val_loss")
                                if metrics[k] is not None})
            for png in pngs:
                mlflow.log_artifact(png, artifact_path="reports")
    return metrics


def pass_curve(out: dict, n: int, offset: int) -> list[dict]:
    """One pass's rows of plots/syncnet.csv: its evaluations at `offset` + step; with an exported weight
    average, its selection-draw loss and accuracy on the last row (average_val_loss/_acc)."""
    rows = [{**h, "pass": n, "step": h["step"] + offset} for h in out["history"]]
    if rows and out["keep"] == "average":
        rows[-1] |= {"average_val_loss": out["chosen"]["val_loss"], "average_val_acc": out["chosen"]["val_acc"]}
    return rows


def reported(out: dict) -> dict:
    """The val_* numbers of metrics/syncnet.json: the exported expert on the report draw
    (`report_batches`), and the selected checkpoint's on the selection draw under "selection"; without a
    report draw, the selection draw's numbers."""
    selection = {k: out["chosen"].get(k) for k in expert.RECORD}
    rep = out.get("report")
    return {**expert.record(rep), "selection": selection} if rep else selection


def _first_pass(params: Params) -> tuple[dict, SyncPlan, list[dict]]:
    """The first of two passes: an expert of `first_pass_steps` steps on the clips as they are, whose
    offset search over the training clips gives the second pass its shifts and skips. Returns (its
    metrics, the plan, its validation curve)."""
    cfg = params.syncnet_train
    log.info("expert SyncNet, first pass (%d steps on the clips as they are): its offsets filter the second",
             cfg.first_pass_steps)
    # exported to models/syncnet, read by the scorer; judged on the selection draw (the report draw is the second's)
    out = expert.train_syncnet(params, steps=cfg.first_pass_steps, report=False)
    rows = score_all(params, "local", splits=("train",))
    plan = plan_from_rows(rows, params.sync_check, status="first pass")
    injected = injected_offsets(rows)
    chosen = out["chosen"]
    rep = reported(out)
    metrics = {"steps": out["steps"], "selected_step": chosen.get("step"), "averaged_snapshots": chosen.get("averaged"),
               "val_acc": rep["val_acc"],
               "val_acc_clear": rep["val_acc_clear"], "val_pairs": rep["val_pairs"], "clips_scored": len(rows), **plan.summary(),
               **({"injected": injected_recovery(rows, injected)} if injected else {})}
    log.info("first pass: val accuracy %.3f; %d of %d training clips shifted, %d skipped %s",
             metrics["val_acc"] or 0, len(plan.offsets), len(rows), len(plan.skipped), metrics["skipped_by_reason"])
    return metrics, plan, pass_curve(out, 1, 0)


def run(params: Params, args) -> int:
    m = train_syncnet(params)
    log.info("expert SyncNet: val accuracy %.3f over %d pairs (chance 0.5; clear pairs %.3f, %.0f%% ambiguous), val loss "
             "%.3f%s", m["val_acc"] or 0, m["val_pairs"], m["val_acc_clear"] or 0, 100 * (m["val_ambiguous_fraction"] or 0),
             m["val_loss"] or 0, f"; {m['selection']['val_acc']:.3f} on the {m['selection']['val_pairs']} pairs that "
             "selected the checkpoint" if "selection" in m else "")
    return 0
