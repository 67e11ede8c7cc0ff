"""The `evaluate` stage: the paper's Table 1 / Table 3 protocol, models side by side.

Self-reconstruction on the test split: every frame from its masked self, one fixed random reference
frame per clip (the same for every model) and its own audio; `ours_g_swapped_audio` is Ours-G driven
by the previous clip's audio (the first clip: its own, half a clip later), the check that the mouth
follows the audio. Models: Ours-G (the backbone), the
trained ablations, Ours-P on the held-out clips of each personalized identity (with Ours-G on the
same clips), and two baselines that need no training (copy the reference frame's lower face; the
masked input itself), plus the ground truth as the metrics' reference row.

Metrics: SSIM, PSNR (torchmetrics), LMD (mouth points of face-alignment's FAN, or dlib's predictor without FAN weights; pixels at 256),
Sync_conf = LSE-C and LSE-D (official SyncNet), D_ID (ArcFace ONNX), id_dlib_cos / id_dlib_l2 /
id_dlib_same (dlib's 128-d face descriptor: mean cosine, mean L2, fraction of frames with L2 < 0.6;
not D_ID), mouth_psnr (the mouth box), mouth_opening_corr / mouth_opening_gain (the image-read opening track against
the real one: mean per-clip Pearson, median per-clip std ratio; eval/metrics.py opening_agreement; the
expert never sees them), own_sync (our expert's mean cosine) and own_abs_offset (the mean |A/V offset| in frames
that our expert's offset search finds, as the sync check does; LSE's own is av_offset). A metric whose weights are not supplied is reported as missing,
with the reason, never from something else. SyncNet, ArcFace and dlib see the aligned crop at its
true 3:4 aspect (eval/identity.py `unsquash`; the shards store it squashed into a square), the
identity models with the real frame's landmarks mapped alike; SSIM, PSNR and LMD use the crop as is.
"""
from __future__ import annotations

import dataclasses
import hashlib
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
from ..storage import exists, join, read_json, read_parquet
from ..layout import Layout
from ..models.store import load_generator, load_personal, load_syncnet
from ..runtime.device import amp_dtype, resolve_device
from .av_offset import expert_offset
from .id_dlib import COLUMNS as ID_DLIB_COLUMNS
from .id_dlib import DlibFaceId, descriptor_scores
from .metrics import mouth_opening, mouth_psnr, opening_agreement, psnr, ssim
from .protocol import generate, prepare_clip
from .reconstruct import composite, copy_reference, masked_input, sync_scores

log = logging.getLogger(__name__)
# every metric scores the composite that paste-back shows (the method inside the mask, the frame
# outside it); *_raw_crop score the raw generator output over the whole crop
METRICS = ["ssim", "psnr", "lmd", "sync_conf", "lse_d", "av_offset", "d_id", "id_dlib_cos", "id_dlib_l2", "id_dlib_same",
           "own_sync", "own_abs_offset", "mouth_psnr", "mouth_opening_corr", "mouth_opening_gain",
           "ssim_raw_crop", "psnr_raw_crop"]
# clips whose real mouth does not move have no opening agreement (NaN): a mean / median over the others
NAN_AWARE = {"mouth_opening_corr": np.nanmean, "mouth_opening_gain": np.nanmedian}


class Scorers:
    """The optional metric models, each loaded from its weights or recorded as missing."""

    id_dlib = None  # dlib's face descriptor (DlibFaceId), when dlib and its model are installed
    identity_frames: Optional[int] = None  # identity scorers' frames per clip (None: all)

    def __init__(self, params: Params):
        self.missing: dict[str, str] = {}
        self.identity_frames = params.evaluate.identity_frames
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
        self._load_id_dlib()

    def _load_id_dlib(self) -> None:
        try:
            self.id_dlib = DlibFaceId()
        except (FileNotFoundError, ImportError, RuntimeError) as e:  # RuntimeError: dlib cannot read the file
            self.missing.update({c: f"no dlib face descriptor: {e}" for c in ID_DLIB_COLUMNS})


def _uint8(x: torch.Tensor) -> np.ndarray:  # (T, 3, S, S) -> (T, S, S, 3)
    return (x.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)


def _crop_landmarks(clip: dict, sample: dict, keep: np.ndarray) -> list[np.ndarray]:
    """The real frames' aligned landmarks (crop pixels of crop_size) -> (68, 2) each in pixels of
    the (S, S) scored frames (a square resize: one scale, pixel centres at integers), kept frames."""
    s = clip["gt"].shape[-1] / clip["meta"]["crop_size"]
    lms = (npy_load(sample["landmarks.npy"]).astype(np.float64) + 0.5) * s - 0.5  # (T, 68, 2)
    return list(lms[keep])


def score_clip(raw: torch.Tensor, clip: dict, sample: dict, scorers: Scorers, expert, vshift: int,
               mask: torch.Tensor) -> dict:
    """All available metrics of one generated clip (the reference frame excluded), on the composite
    (see METRICS); the raw output's whole-crop SSIM/PSNR as their own columns."""
    gt = clip["gt"]
    keep = torch.arange(len(gt)) != clip["ref"]
    pred = composite(raw, gt, mask)
    row = {"ssim": ssim(pred[keep], gt[keep]).mean().item(), "psnr": psnr(pred[keep], gt[keep]).mean().item(),
           "ssim_raw_crop": ssim(raw[keep], gt[keep]).mean().item(), "psnr_raw_crop": psnr(raw[keep], gt[keep]).mean().item(),
           "mouth_psnr": mouth_psnr(pred, gt, keep)}
    row["mouth_opening_corr"], row["mouth_opening_gain"] = opening_agreement(mouth_opening(pred[keep]),
                                                                             mouth_opening(gt[keep]))
    if expert is not None:
        row["own_sync"] = sync_scores(expert, pred, clip["mel"])
        row["own_abs_offset"] = abs(expert_offset(expert, pred, clip["mel"])["offset"])  # frames, the sync check's search
    gen_u8, gt_u8 = _uint8(pred), _uint8(gt)
    if scorers.fan is not None:
        from .lmd import mouth_distance, mouth_landmarks

        k = keep.numpy()
        row["lmd"] = mouth_distance(*(once_per_clip(clip, "lmd", x[k], lambda x=x: mouth_landmarks(scorers.fan, x[k]))
                                      for x in (gen_u8, gt_u8)))
    if scorers.syncnet is not None:
        from .lse import lse, syncnet_faces

        s = lse(scorers.syncnet, syncnet_faces(gen_u8), npy_load(sample["audio.npy"]), vshift=vshift)
        row["sync_conf"], row["lse_d"], row["av_offset"] = s["lse_c"], s["lse_d"], s["av_offset"]
    k = identity_frames(keep.numpy(), scorers.identity_frames)
    if scorers.arcface is not None:
        row["d_id"] = scorers.arcface.d_id(list(gen_u8[k]), list(gt_u8[k]), _crop_landmarks(clip, sample, k))
    if scorers.id_dlib is not None:
        row |= id_dlib_scores(scorers.id_dlib, gen_u8[k], gt_u8[k], clip, sample, k)
    return row


def identity_frames(keep: np.ndarray, n: Optional[int]) -> np.ndarray:
    """The kept frames (bool (T,)) thinned to `n` evenly spaced ones (None: all) for the identity scorers."""
    idx = np.flatnonzero(keep)
    if n is not None and len(idx) > n:
        idx = idx[np.linspace(0, len(idx) - 1, n).round().astype(int)]
    out = np.zeros_like(keep)
    out[idx] = True
    return out


def once_per_clip(clip: dict, kind: str, frames: np.ndarray, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """`compute()` of these frames, computed once per clip and kind (kept in the clip under "memo"): every
    model is scored against the same real frames, and the ground-truth row is those frames again."""
    memo = clip.setdefault("memo", {})
    key = (kind, frames.shape, hashlib.blake2b(np.ascontiguousarray(frames).data, digest_size=16).digest())
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def id_dlib_scores(model, gen_u8: np.ndarray, gt_u8: np.ndarray, clip: dict, sample: dict, keep: np.ndarray) -> dict:
    """The id_dlib columns of the kept (N, S, S, 3) frames (descriptors once per clip and frames)."""
    lms = _crop_landmarks(clip, sample, keep)
    gen, real = (once_per_clip(clip, "id_dlib", x, lambda x=x: model.descriptors(list(x), lms))  # (N, 128) each
                 for x in (gen_u8, gt_u8))
    return descriptor_scores(gen, real)


def _generator_fn(G, params: Params, device) -> Callable:
    """function(clip, mask) -> G's frames, under `evaluate.amp`."""
    amp = amp_dtype(params.evaluate.amp, device)
    return lambda clip, mask: generate(G, clip, mask, amp)


def _models(params: Params, device) -> tuple[dict[str, Callable], torch.nn.Module, object]:
    """(name -> function(clip, mask) -> predicted frames, the backbone generator, its face config)."""
    G, face, _ = load_generator(Layout(params.paths).generator, device)
    models: dict[str, Callable] = {"ours_g": _generator_fn(G, params, device)}
    models["ours_g_swapped_audio"] = lambda clip, mask: models["ours_g"]({**clip, "mels": clip["swapped_mels"]}, mask)
    for name, path in params.evaluate.ablations.items():
        A, _, _ = load_generator(path, device)
        models[name] = _generator_fn(A, params, device)
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
        out[row["identity"]] = (_generator_fn(P, params, device), meta["data"]["held_out"])
    return out


def mean_row(rows: list[dict]) -> dict:
    """A model's scored clips -> the mean of each metric (None where it was not computed) and "clips"."""
    def agg(m: str) -> Optional[float]:
        if not rows or m not in rows[0]:
            return None
        values = [r[m] for r in rows]
        if m in NAN_AWARE:
            return float(NAN_AWARE[m](values)) if not np.isnan(values).all() else None
        return float(np.mean(values))
    return {m: agg(m) for m in METRICS} | {"clips": len(rows)}


def evaluate(params: Params) -> dict:
    """{"models": name -> mean of each metric (None where missing) and "clips", "missing": metric ->
    why, "split", "protocol"}."""
    device = resolve_device(params.device)
    ec = params.evaluate
    models, G, face = _models(params, device)
    mask = mask_tensor(G.size, face.mask, device)
    layout = Layout(params.paths)
    expert = load_syncnet(layout.syncnet, device) if exists(join(layout.syncnet, "config.json")) else None
    scorers = Scorers(params)
    if expert is None:
        scorers.missing["own_sync"] = scorers.missing["own_abs_offset"] = "no trained expert SyncNet in models/syncnet"
    personal = _personal_models(params, device)
    held_out = {c: ident for ident, (_, clips) in personal.items() for c in clips}
    rows: dict[str, list[dict]] = defaultdict(list)
    n, other_mels = 0, None
    for meta, frames, sample in iter_clips(layout.shard_urls(ec.split), G.size):
        if ec.max_clips is not None and n >= ec.max_clips and meta["clip_id"] not in held_out:
            continue
        clip = prepare_clip(meta, frames, npy_load(sample["mel.npy"]).astype(np.float32), G.size, params.seed)
        own = clip["mels"]
        other = other_mels if other_mels is not None else own.roll(len(own) // 2, 0)  # the first: half a clip later
        clip["swapped_mels"] = other[torch.arange(len(own)) % len(other)]
        other_mels = own
        scored = ec.max_clips is None or n < ec.max_clips
        for name, fn in models.items():
            if scored:
                rows[name].append(score_clip(fn(clip, mask), clip, sample, scorers, expert, ec.vshift, mask))
        if meta["clip_id"] in held_out:  # Ours-P and Ours-G on the personalized identities' held-out clips
            fn_p, _ = personal[held_out[meta["clip_id"]]]
            rows["ours_p"].append(score_clip(fn_p(clip, mask), clip, sample, scorers, expert, ec.vshift, mask))
            rows["ours_g_on_personal_clips"].append(rows["ours_g"][-1] if scored else score_clip(
                models["ours_g"](clip, mask), clip, sample, scorers, expert, ec.vshift, mask))
        n += 1
        log.info("evaluated %s (%d)", meta["clip_id"], n)
    table = {name: mean_row(rs) for name, rs in rows.items()}
    result = {"models": table, "missing": scorers.missing, "split": ec.split, "lmd_landmarks": scorers.lmd_landmarks,
              "protocol": "self-reconstruction; one fixed random reference frame per clip for every model "
                          "(the reference frame itself is not scored); every method scored on the composite that paste-back "
                          "shows (its mask region, the frame elsewhere), the raw output over the whole crop in *_raw_crop; model size "
                          f"{G.size}x{G.size}; LMD in pixels at 256, mouth points of the {scorers.lmd_landmarks or 'missing'} landmark model; "
                          "SyncNet (crop un-squashed to 3:4, centred on a square), ArcFace and dlib (crop and real-frame "
                          "landmarks un-squashed to 3:4) see the face at its true aspect"}
    return result
