"""Shards -> training batches (webdataset), split by rank and worker, shuffled, resampled epochs.

An example is a window of `window` (5) consecutive target frames of a clip, a reference from
another time of the same clip (the paper's protocol), the mel window of each target frame and the
mel window of the whole 0.2 s (for the sync loss). Several windows are cut from each clip.
The reference window is also the expert SyncNet's negative. `mouth_min_diff` > 0 makes it
mouth-aware: only windows whose lip-gap profile differs from the target's by at least that many
template units somewhere in the window (else the more dissimilar half of the candidates, MuseTalk's
rule); 0 is the paper's random reference (docs/ARCHITECTURE.md "Mouth-aware sampling").

Batch layout (a dict of tensors; S = model size, T = window):
    target     (B, T, 3, S, S) float32 in [0, 1]   ground-truth aligned frames
    reference  (B, T, 3, S, S) float32 in [0, 1]   reference frames (T copies of one frame if reference="frame")
    mel        (B, T, 1, 80, 16) float32            Wav2Lip mel window of every target frame
    sync_mel   (B, 1, 80, 16) float32               mel window of the T frames together (SyncNet input)
    start      (B,) int64, ref_start (B,) int64     frame indices in the clip
    lip_gap    (B, T) float32, ref_lip_gap (B, T)    inner-lip gap of the target / reference frames
                                                     (template units, from the shard's landmarks)
    av_offset  (B,) int64                            the clip's A/V offset k: frame t got the audio of t + k
    identity, clip_id: lists of str
The lower-face mask is not in the batch: it is fixed (stylesync.face.mask.lower_face_mask).

Determinism: the stream of batches is a function of (seed, rank, worker), and `skip_batches` fast-
forwards past the first k batches without decoding their frames (exact data position on resume).
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import webdataset as wds
from webdataset import filters as wds_filters
from webdataset import tariterators as wds_tar
from webdataset.gopen import gopen

from ..audio import MEL_STEP, mel_start, pad_mel_for_frames
from ..config import LoaderConfig
from ..face.mouth import lip_gap, profile_distance
from ..storage import is_uri, open_file
from .sample import FRAME_FIELDS, decode_jpeg, jpeg_list, npy_load

log = logging.getLogger(__name__)


def _open_shards(data, handler=wds.reraise_exception):
    """dict(url) -> dict(url, stream): local paths through webdataset's gopen (as before), URIs
    (s3://, gs://, memory://, ...) through fsspec, streamed with read-ahead (webdataset itself only
    opens object stores through `pipe:` commands and command-line tools)."""
    for sample in data:
        url = sample["url"]
        try:
            stream = open_file(url, "rb", block_size=8 << 20) if is_uri(url) else gopen(url)
        except Exception as exn:
            exn.args = exn.args + (url,)
            if handler(exn):
                continue
            break
        try:
            yield {**sample, "stream": stream}
        finally:
            stream.close()


def _tar_samples(src, handler=wds.reraise_exception):
    files = wds_tar.tar_file_expander(_open_shards(src, handler), handler=handler)
    return wds_tar.group_by_keys(files, handler=handler)


tar_samples = wds_filters.pipelinefilter(_tar_samples)  # wds.tarfile_to_samples that also reads URIs


@dataclass
class ClipView:
    """The parts of a raw sample the sampler needs (frames stay encoded)."""

    key: str
    meta: dict
    jpegs: list[bytes]
    mel: np.ndarray  # (80, T_mel) float16
    gap: np.ndarray  # (T,) inner-lip gap, template units


def clip_view(sample: dict) -> ClipView:
    if FRAME_FIELDS["jpeg"] not in sample:
        raise ValueError(f"{sample.get('__key__')}: the loader reads JPEG-coded shards (frame_codec: jpeg)")
    meta = json.loads(sample["json"])
    gap = lip_gap(npy_load(sample["landmarks.npy"]), meta["crop_size"]).astype(np.float32)
    return ClipView(sample["__key__"], meta, jpeg_list(sample[FRAME_FIELDS["jpeg"]]), npy_load(sample["mel.npy"]), gap)


def choose_reference(gap: np.ndarray, s: int, candidates: list[int], w: int, min_diff: float,
                     rng: np.random.Generator) -> int:
    """A reference start among `candidates` for the target window at s: any (min_diff 0), else one
    whose lip-gap profile differs from the target's by >= min_diff units, else one of the more
    dissimilar half."""
    if min_diff <= 0 or len(candidates) == 1:
        return int(rng.choice(candidates))
    dist = profile_distance(np.stack([gap[r:r + w] for r in candidates]), gap[s:s + w])  # (C,)
    clear = [r for r, d in zip(candidates, dist) if d >= min_diff]
    if clear:
        return int(rng.choice(clear))
    order = np.argsort(-dist, kind="stable")
    return int(candidates[int(rng.choice(order[: max(1, len(order) // 2)]))])


def worker_rng(seed: int) -> np.random.Generator:
    rank, world, worker, n_workers = wds.utils.pytorch_worker_info()
    return np.random.default_rng([seed, rank, worker])


class WindowSampler:
    """raw sample -> list of example specs (view, target start, reference start, audio offset; no
    frame decoding); optional clip filter, per-clip frame limits ({clip_id: n}: only the first n
    frames of that clip are used) and A/V offsets ({clip_id: k}: frame t is paired with the audio
    of frame t + k, data/av_sync.py; targets start where that audio exists)."""

    def __init__(self, cfg: LoaderConfig, seed: int, select: Optional[Callable[[dict], bool]] = None,
                 frame_limits: Optional[dict[str, int]] = None, av_offsets: Optional[dict[str, int]] = None):
        self.cfg, self.seed, self.select, self.frame_limits = cfg, seed, select, frame_limits or {}
        self.av_offsets = av_offsets or {}
        self.rng: Optional[np.random.Generator] = None

    def __call__(self, sample: dict) -> list[tuple]:
        if self.rng is None:  # created in the worker process
            self.rng = worker_rng(self.seed)
        view = clip_view(sample)
        if self.select is not None and not self.select(view.meta):
            return []
        n = min(len(view.jpegs), self.frame_limits.get(view.meta["clip_id"], len(view.jpegs)))
        k = self.av_offsets.get(view.meta["clip_id"], 0)
        w = self.cfg.window
        lo, hi = max(0, -k), min(n, len(view.jpegs) - k) - w  # target starts whose audio (t + k) is in the clip
        if n < w + 1 or hi < lo:
            return []
        specs = []
        for _ in range(self.cfg.windows_per_clip):
            s = int(self.rng.integers(lo, hi + 1))
            far = [r for r in range(0, n - w + 1) if abs(r - s) >= self.cfg.min_reference_gap]
            far = far or [r for r in range(0, n - w + 1) if r != s]
            specs.append((view, s, choose_reference(view.gap, s, far, w, self.cfg.mouth_min_diff, self.rng), k))
        return specs


def _flatten(src):
    for items in src:
        yield from items


def decode_frame(jpeg: bytes, crop: int, size: Optional[int] = None) -> np.ndarray:
    """One stored frame at the model size (S, S, 3) uint8: THE decode path of training and
    evaluation alike (JPEG DCT-domain downscaling by 2/4/8 where it divides the crop, area resize
    for the rest); size None = the stored crop."""
    size = size or crop
    reduce = crop // size if crop % size == 0 and crop // size in (1, 2, 4, 8) else 1
    frame = decode_jpeg(jpeg, reduce)
    if frame.shape[0] != size:
        import cv2

        frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    return frame


def decode_batch(specs: list[tuple], cfg: LoaderConfig, size: int) -> dict:
    """Example specs -> the batch dict (see the module docstring)."""
    w = cfg.window
    targets, refs, mels, sync_mels = [], [], [], []
    for view, s, r, k in specs:
        crop = view.meta["crop_size"]
        idx_t = list(range(s, s + w))
        idx_r = list(range(r, r + w)) if cfg.reference == "window" else [r] * w
        frames = {i: decode_frame(view.jpegs[i], crop, size) for i in set(idx_t) | set(idx_r)}
        targets.append(np.stack([frames[i] for i in idx_t]))
        refs.append(np.stack([frames[i] for i in idx_r]))
        mel = pad_mel_for_frames(view.mel, s + k + w).astype(np.float32)
        mels.append(np.stack([mel[:, mel_start(i + k) : mel_start(i + k) + MEL_STEP] for i in idx_t]))
        sync_mels.append(mel[:, mel_start(s + k) : mel_start(s + k) + MEL_STEP])

    def to_tensor(frames: list[np.ndarray]) -> torch.Tensor:  # list of (T, S, S, 3) uint8
        return torch.from_numpy(np.stack(frames)).permute(0, 1, 4, 2, 3).float().div_(255)

    return {
        "target": to_tensor(targets), "reference": to_tensor(refs),
        "mel": torch.from_numpy(np.stack(mels)).unsqueeze(2),  # (B, T, 1, 80, 16)
        "sync_mel": torch.from_numpy(np.stack(sync_mels)).unsqueeze(1),  # (B, 1, 80, 16)
        "start": torch.tensor([s for _, s, _, _ in specs]), "ref_start": torch.tensor([r for _, _, r, _ in specs]),
        "lip_gap": torch.from_numpy(np.stack([v.gap[s:s + w] for v, s, _, _ in specs])),  # (B, T)
        "ref_lip_gap": torch.from_numpy(np.stack([v.gap[r:r + w] for v, _, r, _ in specs])),
        "av_offset": torch.tensor([k for _, _, _, k in specs]),
        "identity": [v.meta.get("identity") for v, *_ in specs], "clip_id": [v.meta["clip_id"] for v, *_ in specs],
    }


def _skip_for_worker(skip_batches: int) -> int:
    """Batches this worker must drop so that the DataLoader's round-robin stream skips `skip_batches`."""
    _, _, worker, n_workers = wds.utils.pytorch_worker_info()
    return len(range(worker, skip_batches, max(n_workers, 1)))


def _skip(src, skip_batches: int):
    n = _skip_for_worker(skip_batches)
    for i, item in enumerate(src):
        if i >= n:
            yield item


def training_pipeline(urls: list[str], cfg: LoaderConfig, size: int, seed: int = 0, skip_batches: int = 0,
                      select: Optional[Callable[[dict], bool]] = None, frame_limits: Optional[dict[str, int]] = None,
                      batch_size: Optional[int] = None, av_offsets: Optional[dict[str, int]] = None) -> wds.DataPipeline:
    """The infinite, deterministic stream of batches (use with `make_loader`)."""
    bs = batch_size or cfg.batch_size
    return wds.DataPipeline(
        wds.ResampledShards(urls, seed=seed, deterministic=True),
        tar_samples(handler=wds.warn_and_continue),
        wds.map(WindowSampler(cfg, seed, select, frame_limits, av_offsets), handler=wds.warn_and_continue),
        _flatten,
        wds.detshuffle(cfg.shuffle_buffer, initial=min(cfg.shuffle_buffer, 32), seed=seed),
        wds.batched(bs, collation_fn=list, partial=False),
        lambda src: _skip(src, skip_batches),
        wds.map(lambda specs: decode_batch(specs, cfg, size), handler=wds.warn_and_continue),
    )


def make_loader(pipeline: wds.DataPipeline, workers: int) -> torch.utils.data.DataLoader:
    """A DataLoader over an already-batched pipeline (in-order, so the stream is deterministic)."""
    return torch.utils.data.DataLoader(pipeline, batch_size=None, num_workers=workers,
                                       persistent_workers=False, prefetch_factor=2 if workers else None)


def iter_clips(urls: list[str], size: Optional[int] = None):
    """Every clip of the shards once, in order, decoded: (meta, frames (T,S,S,3) uint8, sample dict);
    `size`: frames at that model size through the training decode path (`decode_frame`)."""
    ds = wds.DataPipeline(wds.SimpleShardList(urls), tar_samples(handler=wds.warn_and_continue))
    for sample in ds:
        view = clip_view(sample)
        frames = np.stack([decode_frame(j, view.meta["crop_size"], size) for j in view.jpegs])
        yield view.meta, frames, sample


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
