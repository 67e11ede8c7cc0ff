"""The `evaluate` stage: the paper's Table 1 / Table 3 protocol, models side by side.

Self-reconstruction on the test split: every frame from its masked self, one fixed random reference
frame per clip (the same for every model) and its own audio. Models: Ours-G (the backbone), the
trained ablations, Ours-P on the held-out clips of each personalized identity (with Ours-G on the
same clips), and two baselines that need no training (copy the reference frame's lower face; the
masked input itself), plus the ground truth as the metrics' reference row.

Metrics: SSIM, PSNR (torchmetrics), LMD (mouth points of face-alignment's FAN, or dlib's predictor without FAN weights; pixels at 256),
Sync_conf = LSE-C and LSE-D (official SyncNet), D_ID (ArcFace ONNX), own_sync (our expert). A metric
whose weights are not supplied is reported as missing, with the reason, never from something else.
"""
from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..config import Params
from ..data.loader import iter_clips
from ..data.sample import npy_load
from ..face.mask import mask_tensor
from ..io import exists, join, read_json, read_parquet
from ..layout import Layout
from ..models.store import load_generator, load_personal, load_syncnet
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
        self.lmd_landmarks: Optional[str] = None  # the landmark model behind LMD
        lm = params.preprocess.landmarks
        if lm.backend == "precomputed":  # sidecar files do not score generated frames: a real model does
            lm = dataclasses.replace(lm, backend="auto")
        try:
            from ..face.landmarks import make_landmarker

            self.fan = make_landmarker(lm)
            self.lmd_landmarks = self.fan.name
        except (FileNotFoundError, ImportError) as e:
            self.missing["lmd"] = f"no landmark model: {e}"
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
    G, face, _ = load_generator(Layout(params.paths).generator, device)
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
    layout = Layout(params.paths)
    out = {}
    if not params.evaluate.personal or not exists(layout.catalog):
        return out
    for row in read_parquet(layout.catalog).to_pylist():
        if row["status"] not in ("ok", "skipped"):
            continue
        d = layout.personal(row["identity"])
        meta = read_json(join(d, "config.json"))
        P = load_personal(layout.backbone, d, device)
        out[row["identity"]] = ((lambda P: lambda clip, mask: generate(P, clip, mask))(P), meta["data"]["held_out"])
    return out


def evaluate(params: Params) -> dict:
    """{"models": name -> mean of each metric (None where missing) and "clips", "missing": metric ->
    why, "split", "protocol"}."""
    device = torch.device("cpu")
    ec = params.evaluate
    models, G, face = _models(params, device)
    mask = mask_tensor(G.size, face.mask, device)
    layout = Layout(params.paths)
    expert = load_syncnet(layout.syncnet, device) if exists(join(layout.syncnet, "config.json")) else None
    scorers = Scorers(params)
    if expert is None:
        scorers.missing["own_sync"] = "no trained expert SyncNet in models/syncnet"
    personal = _personal_models(params, device)
    held_out = {c: ident for ident, (_, clips) in personal.items() for c in clips}
    rows: dict[str, list[dict]] = defaultdict(list)
    n = 0
    for meta, frames, sample in iter_clips(layout.shard_urls(ec.split), G.size):
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
    result = {"models": table, "missing": scorers.missing, "split": ec.split, "lmd_landmarks": scorers.lmd_landmarks,
              "protocol": "self-reconstruction; one fixed random reference frame per clip for every model "
                          "(the reference frame itself is not scored); every method scored on the composite that paste-back "
                          "shows (its mask region, the frame elsewhere), the raw output over the whole crop in *_raw_crop; model size "
                          f"{G.size}x{G.size}; LMD in pixels at 256, mouth points of the {scorers.lmd_landmarks or 'missing'} landmark model"}
    return result
