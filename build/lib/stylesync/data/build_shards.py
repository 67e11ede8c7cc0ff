"""The `preprocess` stage: manifest -> WebDataset shards, with Ray Data (or in-process).

Ray Data pipeline (streaming, one row per pending clip):
    decode + re-time + audio  (CPU tasks; precomputed landmarks read here)
 -> landmarks                 (actor pool, face_alignment backend; GPUs when present)
 -> gates + smoothing + alignment (CPU tasks)
 -> GPEN cleanup              (actor pool, when enabled for the clip's split)
 -> mel + encode + stage      (CPU tasks write the staged sample)
The driver assembles each shard as soon as all of its clips are staged (see `shards.py`).
"""
from __future__ import annotations

import logging
import pickle
import time
from collections import Counter
from typing import Optional

import numpy as np
from tqdm import tqdm

from ..config import Params
from ..storage import read_parquet
from ..video import TARGET_FPS
from .preprocess import (
    ClipRejected, preprocess_hash, process_clip, stage_align, stage_decode, stage_encode, stage_landmarks,
)
from .roots import check_manifest_roots
from .shards import ShardPlan, ShardStore, plan_fingerprint, plan_shards

log = logging.getLogger(__name__)


def _failure(row: dict, e: Exception, stage: str) -> dict:
    if isinstance(e, ClipRejected):
        return {"clip_id": row["clip_id"], "stage": e.stage, "reason": e.reason, "detail": e.detail}
    log.exception("clip %s failed in %s", row["clip_id"], stage)
    return {"clip_id": row["clip_id"], "stage": stage, "reason": "error", "detail": f"{type(e).__name__}: {e}"}


# ------------------------------------------------------------------------------ Ray stages
class _Stage:
    """A row -> row step over pickled clip state; failed rows pass through untouched."""

    stage = ""

    def __init__(self, params: Params):
        self.params = params

    def step(self, state):  # pragma: no cover - overridden
        raise NotImplementedError

    def __call__(self, row: dict) -> dict:
        if row["failure"]:
            return row
        r = pickle.loads(row["manifest_row"])
        try:
            state = self.step(pickle.loads(row["state"]) if row["state"] else r)
            return {**row, "state": pickle.dumps(state) if not isinstance(state, bytes) else state}
        except Exception as e:
            return {**row, "state": b"", "failure": pickle.dumps(_failure(r, e, self.stage))}


class DecodeStage(_Stage):
    stage = "decode"

    def step(self, row):
        clip = stage_decode(row, self.params.preprocess)
        if self.params.preprocess.landmarks.backend == "precomputed":
            clip = stage_landmarks(clip, None, self.params.preprocess)
        return clip


class LandmarkStage(_Stage):
    """Holds the landmark models (face-alignment or dlib; one per actor)."""

    stage = "landmarks"

    def __init__(self, params: Params):
        super().__init__(params)
        from ..face.landmarks import make_landmarker
        from ..runtime.device import resolve_device

        self.landmarker = make_landmarker(params.preprocess.landmarks, str(resolve_device(params.device)))

    def step(self, clip):
        return stage_landmarks(clip, self.landmarker, self.params.preprocess)


class AlignStage(_Stage):
    stage = "align"

    def step(self, clip):
        f = self.params.face
        return stage_align(clip, self.params.preprocess, np.asarray(f.template), f.crop_size, f.smooth_sigma)


class GPENStage(_Stage):
    stage = "gpen"

    def __init__(self, params: Params):
        super().__init__(params)
        from ..face.restore import GPENRestorer
        from ..runtime.device import resolve_device

        self.restorer = GPENRestorer(params.preprocess.gpen, str(resolve_device(params.device)))

    def step(self, clip):
        if clip.row.get("split") in self.params.preprocess.gpen.splits:
            clip.crops = self.restorer(clip.crops)
            clip.info["gpen"] = self.params.preprocess.gpen.model
        return clip


class EncodeStage(_Stage):
    """Encodes and stages the sample; the row that leaves the pipeline is small."""

    stage = "encode"

    def __init__(self, params: Params, store_root: str):
        super().__init__(params)
        self.store = ShardStore(store_root)
        self.hash = preprocess_hash(params.preprocess, params.face)

    def __call__(self, row: dict) -> dict:
        plan = pickle.loads(row["plan"])
        r = pickle.loads(row["manifest_row"])
        sample, failure, frames = None, None, 0
        if row["failure"]:
            failure = pickle.loads(row["failure"])
        else:
            try:
                clip = pickle.loads(row["state"])
                sample = stage_encode(clip, self.params.preprocess, self.hash)
                frames = len(clip.crops)
            except Exception as e:
                failure = _failure(r, e, "encode")
        self.store.stage(plan, row["pos"], sample, failure)
        return {"shard": plan.name, "pos": row["pos"], "clip_id": r["clip_id"], "frames": frames,
                "reason": failure["reason"] if failure else ""}


# ------------------------------------------------------------------------------ driver
def _pending(plans: list[ShardPlan], store: ShardStore, rows_by_id: dict,
             files: Optional[set[str]] = None) -> list[tuple[ShardPlan, int, dict]]:
    todo = []
    for plan in plans:
        if store.is_done(plan, files):
            continue
        for pos, clip_id in enumerate(plan.clip_ids):
            if not store.is_staged(plan, pos, files):
                todo.append((plan, pos, rows_by_id[clip_id]))
    return todo


def _run_ray(params: Params, store: ShardStore, todo: list, on_done) -> None:
    import ray

    from ..runtime.ray_session import ray_session

    pp = params.preprocess
    with ray_session(params.ray):
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # our own bar counts clips; Ray's per-operator bars are noise here
        ctx.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        items = [{"plan": pickle.dumps(plan), "pos": pos, "manifest_row": pickle.dumps(row), "state": b"",
                  "failure": b""} for plan, pos, row in todo]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        # The CPU stages are Ray tasks (stateless callables; consecutive ones fuse into one task per
        # clip): fixed-size actor pools per stage would need pools x size CPUs at once and deadlock
        # on a cluster of small nodes; tasks share the CPUs and are retried elsewhere when a node
        # dies (Ray Data retries system failures; a retried clip is staged again with the same
        # bytes). Model stages keep their actor pools.
        ds = ds.map(DecodeStage(params))
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        if pp.landmarks.backend != "precomputed":
            ds = ds.map(LandmarkStage, fn_constructor_args=(params,),
                        compute=ray.data.ActorPoolStrategy(size=pp.landmarks.actors),
                        num_gpus=pp.landmarks.gpus_per_actor if gpus else 0)
        ds = ds.map(AlignStage(params))
        if pp.gpen.enabled:
            ds = ds.map(GPENStage, fn_constructor_args=(params,), compute=ray.data.ActorPoolStrategy(size=pp.gpen.actors),
                        num_gpus=pp.gpen.gpus_per_actor if gpus else 0)
        ds = ds.map(EncodeStage(params, str(store.root)))
        for out in ds.iter_rows():
            on_done(out)


def _run_local(params: Params, store: ShardStore, todo: list, on_done) -> None:
    landmarker = restorer = None
    if params.preprocess.landmarks.backend != "precomputed":
        from ..face.landmarks import make_landmarker

        landmarker = make_landmarker(params.preprocess.landmarks)
    if params.preprocess.gpen.enabled:
        from ..face.restore import GPENRestorer

        restorer = GPENRestorer(params.preprocess.gpen)
    for plan, pos, row in todo:
        use_gpen = restorer if (restorer and row.get("split") in params.preprocess.gpen.splits) else None
        res = process_clip(row, params.preprocess, params.face, landmarker, use_gpen)
        store.stage(plan, pos, res.sample, res.failure)
        on_done({"shard": plan.name, "pos": pos, "clip_id": row["clip_id"], "frames": res.stats.get("frames", 0),
                 "reason": res.failure["reason"] if res.failure else ""})


def _backend_used(cfg) -> str:
    from ..face.landmarks import resolve_backend

    return "precomputed" if cfg.backend == "precomputed" else resolve_backend(cfg)


def build_shards(params: Params, manifest_path: Optional[str] = None, out: Optional[str] = None,
                 executor: str = "ray") -> dict:
    """Preprocess every clip of the manifest into shards (resuming), write index/failures; returns
    the summary (the stage writes it to metrics/preprocess.json)."""
    t0 = time.time()
    manifest = read_parquet(manifest_path or params.paths.manifest).to_pylist()
    check_manifest_roots(manifest, params, manifest_path or params.paths.manifest)  # before anything is written
    store = ShardStore(out or params.paths.shards)
    plans = plan_shards(manifest, params.preprocess.shard_size)
    phash = preprocess_hash(params.preprocess, params.face)
    if store.ensure_plan(plan_fingerprint(plans, phash), len(plans)):
        log.warning("the manifest or the preprocessing params changed: the old shards were removed")
    rows_by_id = {r["clip_id"]: r for r in manifest}
    rebuilt = store.drop_corrupt(plans, store.files())  # finished shards that fail their checksum
    for name, reason in rebuilt.items():
        log.warning("shard %s is corrupt (%s): it is removed and rebuilt", name, reason)
    files = store.files()  # one listing (object stores: not one request per clip)
    todo = _pending(plans, store, rows_by_id, files)
    by_name = {p.name: p for p in plans}
    remaining = Counter()
    for plan in plans:
        if not store.is_done(plan, files):
            remaining[plan.name] = sum(not store.is_staged(plan, i, files) for i in range(len(plan.clip_ids)))
    # shards whose clips were all staged by an interrupted run: assemble now
    for name, left in list(remaining.items()):
        if left == 0:
            store.assemble(by_name[name])
            del remaining[name]
    new_frames = 0
    bar = tqdm(total=len(todo), desc="preprocess", unit="clip", disable=None)
    seen: set[tuple[str, int]] = set()

    def on_done(out: dict) -> None:
        nonlocal new_frames
        if (out["shard"], out["pos"]) in seen:  # a clip reported twice (a retried task): counted once
            return
        seen.add((out["shard"], out["pos"]))
        new_frames += out["frames"]
        remaining[out["shard"]] -= 1
        if remaining[out["shard"]] == 0:
            store.assemble(by_name[out["shard"]])
        bar.update(1)
        bar.set_postfix(failed=out["reason"] or "-", refresh=False)

    log.info("%d shards planned, %d clips to process (%d already done)", len(plans), len(todo),
             len(manifest) - len(todo))
    if todo:
        (_run_ray if executor == "ray" else _run_local)(params, store, todo, on_done)
    bar.close()
    files = store.files()
    missing = [p.name for p in plans if not store.is_done(p, files)]
    if missing:
        raise RuntimeError(f"shards not finished: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    index, failures = store.write_index(plans)
    wall = time.time() - t0
    reasons = Counter(failures.column("reason").to_pylist())
    frames_total = int(sum(index.column("n_frames").to_pylist()))
    summary = {
        "clips_in": len(manifest), "clips_ok": index.num_rows, "clips_failed": failures.num_rows,
        "failed_by_reason": dict(sorted(reasons.items())), "frames": frames_total,
        "seconds": frames_total / TARGET_FPS, "shards": len(plans),
        "clips_processed_this_run": len(todo), "frames_processed_this_run": new_frames,
        "wall_s": round(wall, 2), "frames_per_s": round(new_frames / wall, 2) if wall > 0 else None,
        "executor": executor, "landmarks_backend": _backend_used(params.preprocess.landmarks),
        "shards_rebuilt": len(rebuilt),
        "clips_cut_to_one_shot": int(sum(n > 1 for n in index.column("shots").to_pylist())),
    }
    return summary
