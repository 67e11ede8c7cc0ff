"""One identity of the `personalize` stage: train (train/personalize.py), score Ours-G vs Ours-P on
the identity's held-out clips (same protocol and reference frames as evaluation), save the personal
model, and track it as a child MLflow run (losses, before/after grid, delta size, registry alias)."""
from __future__ import annotations

import math
import time
from dataclasses import asdict
from typing import Optional

import numpy as np
import torch

from ..config import Params
from ..data.sample import npy_load
from ..eval.protocol import generate, mean_scores, mouth_scores, prepare_clip
from ..storage import local_dir, safe_name
from ..layout import Layout
from ..models.store import generator_sha256
from ..runtime import tracking
from ..train.personalize import (
    CatalogEntry, PersonalRun, finished, fingerprint, held_out_clips, save_personal, train_personal,
)


def personalize_identity(params: Params, entry: CatalogEntry, parent_run_id: Optional[str] = None) -> dict:
    """Train, score and save one identity (skipped when done with the same fingerprint). Raises
    PersonalizeError for data/optimization failures."""
    t0 = time.time()
    layout = Layout(params.paths)
    out = layout.personal(entry.identity)
    fp = fingerprint(params, entry, generator_sha256(layout.backbone))
    done = finished(out, fp)
    if done is not None:
        return {"identity": entry.identity, "status": "skipped", "reason": "done", **done}
    run = train_personal(params, entry)
    comparison, per_clip, grid = score_g_vs_p(params, entry, run)
    result = {"steps": run.steps, "personal_frames": run.n_frames, "wall_s": round(time.time() - t0, 2),
              "final_loss": run.history[-1]["g_total"] if run.history else None, **comparison}
    result.update(save_personal(out, run, params, entry, fp, result, per_clip))
    result["mlflow_run_id"] = _track(params, entry, run.history, result, parent_run_id, grid)
    return {"identity": entry.identity, "status": "ok", "reason": "", **result}


def score_g_vs_p(params: Params, entry: CatalogEntry, run: PersonalRun) -> tuple[dict, list[dict], Optional[np.ndarray]]:
    """Mouth PSNR/SSIM of Ours-G and Ours-P on the held-out clips -> (means, per clip, grid)."""
    scores: dict[str, list] = {"g": [], "p": []}
    per_clip, grid = [], None
    for meta, frames, sample in held_out_clips(params, entry, run.G.size):
        clip = prepare_clip(meta, frames, npy_load(sample["mel.npy"]).astype(np.float32), run.G.size, params.seed)
        out_g, out_p = generate(run.base, clip, run.mask), generate(run.G, clip, run.mask)
        sg, sp = mouth_scores(out_g, clip), mouth_scores(out_p, clip)
        if grid is None:
            grid = _grid(clip, out_g, out_p, run.mask)
        scores["g"].append(sg)
        scores["p"].append(sp)
        per_clip.append({"clip_id": meta["clip_id"], **{f"{k}_g": v for k, v in sg.items()},
                         **{f"{k}_p": v for k, v in sp.items()}})
    g_mean, p_mean = mean_scores(scores["g"]), mean_scores(scores["p"])
    comparison = {"mouth_psnr_g": g_mean.get("mouth_psnr"), "mouth_psnr_p": p_mean.get("mouth_psnr"),
                  "mouth_ssim_g": g_mean.get("mouth_ssim"), "mouth_ssim_p": p_mean.get("mouth_ssim"),
                  "held_out_clips": len(per_clip)}
    return comparison, per_clip, grid


def _grid(clip: dict, out_g: torch.Tensor, out_p: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Rows of: masked input | reference | Ours-G | Ours-P | ground truth (3 frames of the clip)."""
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

    tags = {"identity": entry.identity}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    nested = mlflow.active_run() is not None  # the local executor runs inside the catalog's run
    with tracking.run(params.tracking, "personalize", f"personal-{safe_name(entry.identity)}", tags=tags,
                      nested=nested, system_metrics=False) as run:
        tracking.log_params({"identity": entry.identity, "clips": ",".join(entry.clips), "seconds": entry.seconds,
                             "personalize": asdict(params.personalize)})
        for h in history:
            mlflow.log_metrics({k: v for k, v in h.items() if k != "step" and math.isfinite(v)}, step=h["step"])
        mlflow.log_metrics({k: v for k, v in result.items() if isinstance(v, (int, float)) and v is not None})
        if grid is not None:
            mlflow.log_image(grid, key="before_after", step=0)
        with local_dir(Layout(params.paths).personal(entry.identity)) as out:  # a download when models are on a URI
            mlflow.log_artifacts(str(out), artifact_path="personal")
        alias = safe_name(entry.identity).replace(".", "_")
        if alias.lower() != "latest" and not (alias[0] in "vV" and alias[1:].isdigit()):
            tracking.register(run.info.run_id, "personal", f"{params.tracking.experiment_prefix}-personal",
                              alias=alias, tags={"identity": entry.identity})
        return run.info.run_id
