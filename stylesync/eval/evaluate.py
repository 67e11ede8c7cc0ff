"""The `evaluate` stage: the paper's Table 1 / Table 3 protocol, models side by side.

Self-reconstruction on the test split: every frame from its masked self, one fixed random reference
frame per clip (the same for every model) and its own audio. Models: Ours-G (the backbone), the
trained ablations, Ours-P on the held-out clips of each personalized identity (with Ours-G on the
same clips), and two baselines that need no training (copy the reference frame's lower face; the
masked input itself), plus the ground truth as the metrics' reference row.

Metrics: SSIM, PSNR (torchmetrics), LMD (face-alignment's FAN, mouth points, pixels at 256),
Sync_conf = LSE-C and LSE-D (official SyncNet), D_ID (ArcFace ONNX), own_sync (our expert). A metric
whose weights are not supplied is reported as missing, with the reason, never from something else.
"""
from __future__ import annotations

import csv
import logging
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..config import Params
from ..data.loader import iter_clips, shard_urls
from ..data.sample import npy_load
from ..io import atomic_write_bytes, exists, join, read_json, read_parquet, write_json
from ..train.build import load_generator, load_syncnet, mask_tensor
from .metrics import psnr, ssim
from .protocol import generate, prepare_clip
from .reconstruct import composite, copy_reference, masked_input, sync_scores

log = logging.getLogger(__name__)
# every metric scores the composite that paste-back shows (the method inside the mask, the frame
# outside it); *_raw_crop score the raw generator output over the whole crop
METRICS = ["ssim", "psnr", "lmd", "sync_conf", "lse_d", "av_offset", "d_id", "own_sync", "ssim_raw_crop", "psnr_raw_crop"]


class Scorers:
    """The optional metric models, each loaded from its weights or recorded as missing."""

    def __init__(self, params: Params):
        self.missing: dict[str, str] = {}
        self.fan = self.syncnet = self.arcface = None
        try:
            from ..face.landmarks import FaceAlignmentLandmarks

            self.fan = FaceAlignmentLandmarks(params.preprocess.landmarks)
        except (FileNotFoundError, ImportError) as e:
            self.missing["lmd"] = f"face-alignment weights unavailable: {e}"
        path = params.paths.syncnet_official_weights
        if path and Path(path).exists():
            from ..models.importers import load_syncnet_official

            self.syncnet = load_syncnet_official(path)
        else:
            why = (f"paths.syncnet_official_weights = {path} does not exist" if path else
                   "paths.syncnet_official_weights not set (syncnet_v2.model of joonson/syncnet_python)")
            self.missing["sync_conf"] = self.missing["lse_d"] = why
        path = params.paths.arcface_onnx
        if path and Path(path).exists():
            from .identity import ArcFace

            self.arcface = ArcFace(path)
        else:
            self.missing["d_id"] = (f"paths.arcface_onnx = {path} does not exist" if path else
                                    "paths.arcface_onnx not set (an insightface ArcFace ONNX, e.g. buffalo_l w600k_r50.onnx)")


def _uint8(x: torch.Tensor) -> np.ndarray:  # (T, 3, S, S) -> (T, S, S, 3)
    return (x.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)


def score_clip(raw: torch.Tensor, clip: dict, sample: dict, scorers: Scorers, expert, vshift: int,
               mask: torch.Tensor) -> dict:
    """All available metrics of one generated clip (the reference frame excluded), on the composite
    (see METRICS); the raw output's whole-crop SSIM/PSNR as their own columns."""
    gt = clip["gt"]
    keep = torch.arange(len(gt)) != clip["ref"]
    pred = composite(raw, gt, mask)
    row = {"ssim": ssim(pred[keep], gt[keep]).mean().item(), "psnr": psnr(pred[keep], gt[keep]).mean().item(),
           "ssim_raw_crop": ssim(raw[keep], gt[keep]).mean().item(), "psnr_raw_crop": psnr(raw[keep], gt[keep]).mean().item()}
    if expert is not None:
        row["own_sync"] = sync_scores(expert, pred, clip["mel"])
    gen_u8, gt_u8 = _uint8(pred), _uint8(gt)
    if scorers.fan is not None:
        from .lmd import lmd

        row["lmd"] = lmd(scorers.fan, gen_u8[keep.numpy()], gt_u8[keep.numpy()])
    if scorers.syncnet is not None:
        from .lse import lse

        s = lse(scorers.syncnet, gen_u8, npy_load(sample["audio.npy"]), vshift=vshift)
        row["sync_conf"], row["lse_d"], row["av_offset"] = s["lse_c"], s["lse_d"], s["av_offset"]
    if scorers.arcface is not None:
        scale = gt.shape[-1] / clip["meta"]["crop_size"]
        lms = list(npy_load(sample["landmarks.npy"]) * scale)
        k = keep.numpy()
        row["d_id"] = scorers.arcface.d_id(list(gen_u8[k]), list(gt_u8[k]), [lm for lm, kk in zip(lms, k) if kk])
    return row


def _models(params: Params, device) -> tuple[dict[str, Callable], torch.nn.Module, object]:
    """(name -> function(clip, mask) -> predicted frames, the backbone generator, its face config)."""
    G, face, _ = load_generator(join(params.paths.models, "backbone", "generator"), device)
    models: dict[str, Callable] = {"ours_g": lambda clip, mask: generate(G, clip, mask)}
    for name, path in params.evaluate.ablations.items():
        A, _, _ = load_generator(path, device)
        models[name] = (lambda A: lambda clip, mask: generate(A, clip, mask))(A)
    models["copy_reference"] = lambda clip, mask: copy_reference(clip["gt"], clip["ref"], mask)
    models["masked_input"] = lambda clip, mask: masked_input(clip["gt"], mask)
    models["ground_truth"] = lambda clip, mask: clip["gt"]
    return models, G, face


def _personal_models(params: Params, device) -> dict[str, tuple[Callable, list[str]]]:
    """identity -> (Ours-P generator function, its held-out clip ids)."""
    from ..train.personalize import load_personal

    root = join(params.paths.models, "personal")
    out = {}
    if not params.evaluate.personal or not exists(join(root, "catalog.parquet")):
        return out
    for row in read_parquet(join(root, "catalog.parquet")).to_pylist():
        if row["status"] not in ("ok", "skipped"):
            continue
        from ..train.personalize import output_dir

        d = output_dir(params, row["identity"])
        meta = read_json(join(d, "config.json"))
        P = load_personal(params, d, device)
        out[row["identity"]] = ((lambda P: lambda clip, mask: generate(P, clip, mask))(P), meta["data"]["held_out"])
    return out


def evaluate(params: Params) -> dict:
    device = torch.device("cpu")
    ec = params.evaluate
    models, G, face = _models(params, device)
    mask = mask_tensor(G.size, face.mask, device)
    expert = load_syncnet(join(params.paths.models, "syncnet"), device) \
        if exists(join(params.paths.models, "syncnet", "config.json")) else None
    scorers = Scorers(params)
    if expert is None:
        scorers.missing["own_sync"] = "no trained expert SyncNet in models/syncnet"
    personal = _personal_models(params, device)
    held_out = {c: ident for ident, (_, clips) in personal.items() for c in clips}
    rows: dict[str, list[dict]] = defaultdict(list)
    n = 0
    for meta, frames, sample in iter_clips(shard_urls(params.paths.shards, ec.split), G.size):
        if ec.max_clips is not None and n >= ec.max_clips and meta["clip_id"] not in held_out:
            continue
        clip = prepare_clip(meta, frames, npy_load(sample["mel.npy"]).astype(np.float32), G.size, params.seed)
        for name, fn in models.items():
            if ec.max_clips is None or n < ec.max_clips:
                rows[name].append(score_clip(fn(clip, mask), clip, sample, scorers, expert, ec.vshift, mask))
        if meta["clip_id"] in held_out:  # Ours-P and Ours-G on the personalized identities' held-out clips
            fn_p, _ = personal[held_out[meta["clip_id"]]]
            rows["ours_p"].append(score_clip(fn_p(clip, mask), clip, sample, scorers, expert, ec.vshift, mask))
            rows["ours_g_on_personal_clips"].append(score_clip(models["ours_g"](clip, mask), clip, sample, scorers,
                                                               expert, ec.vshift, mask))
        n += 1
        log.info("evaluated %s (%d)", meta["clip_id"], n)
    table = {name: {m: (float(np.mean([r[m] for r in rs])) if rs and m in rs[0] else None) for m in METRICS}
             | {"clips": len(rs)} for name, rs in rows.items()}
    result = {"models": table, "missing": scorers.missing, "split": ec.split,
              "protocol": "self-reconstruction; one fixed random reference frame per clip for every model "
                          "(the reference frame itself is not scored); every method scored on the composite that paste-back "
                          "shows (its mask region, the frame elsewhere), the raw output over the whole crop in *_raw_crop; model size "
                          f"{G.size}x{G.size}; LMD in pixels at 256"}
    write_json(Path(params.paths.metrics) / "eval.json", result)
    _report(params, result)
    _log(params, result)
    return result


def table_markdown(result: dict) -> str:
    names = {"ssim": "SSIM ↑", "psnr": "PSNR ↑", "lmd": "LMD ↓", "sync_conf": "Sync_conf ↑", "lse_d": "LSE-D ↓",
             "av_offset": "AV offset", "d_id": "D_ID ↑", "own_sync": "own sync ↑",
             "ssim_raw_crop": "SSIM raw crop", "psnr_raw_crop": "PSNR raw crop"}
    lines = ["| Method | " + " | ".join(names[m] for m in METRICS) + " | clips |",
             "|---" * (len(METRICS) + 2) + "|"]
    for model, vals in result["models"].items():
        cells = [("—" if vals.get(m) is None else f"{vals[m]:.3f}" if m in ("ssim", "ssim_raw_crop", "d_id", "own_sync") else f"{vals[m]:.2f}")
                 for m in METRICS]
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {vals['clips']} |")
    if result["missing"]:
        lines += ["", "Missing metrics (— in the table):", ""] + [f"- {k}: {v}" for k, v in sorted(result["missing"].items())]
    return "\n".join(lines) + "\n"


def _report(params: Params, result: dict) -> None:
    body = ("# Self-reconstruction results (paper Table 1 / Table 3 protocol)\n\n"
            f"Split: {result['split']}. {result['protocol']}.\n\n" + table_markdown(result))
    atomic_write_bytes(Path(params.paths.reports) / "table1.md", body.encode())
    plot = Path(params.paths.plots) / "eval.csv"
    plot.parent.mkdir(parents=True, exist_ok=True)
    with open(plot, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", *METRICS])
        for model, vals in result["models"].items():
            w.writerow([model, *("" if vals.get(m) is None else round(vals[m], 5) for m in METRICS)])


def _log(params: Params, result: dict) -> None:
    from .. import tracking

    with tracking.run(params.tracking, "evaluate", "table1", system_metrics=False) as active:
        if active is None:
            return
        import mlflow

        for model, vals in result["models"].items():
            mlflow.log_metrics({f"{model}/{m}": v for m, v in vals.items() if isinstance(v, (int, float)) and v is not None})
        mlflow.log_dict(result, "eval.json")
        mlflow.log_artifact(str(Path(params.paths.reports) / "table1.md"))
        for k, v in result["missing"].items():
            mlflow.set_tag(f"missing.{k}", v[:250])


def run(params: Params, args) -> int:
    r = evaluate(params)
    print(table_markdown(r))
    return 0
