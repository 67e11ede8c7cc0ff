"""Stage `sync_check` (`stylesync sync-check`): the A/V offset and sync confidence of every clip
(eval/av_offset.py), Ray tasks over the shards -> data/sync.parquet (one row per clip) and
metrics/sync.json (the scorer, the offset and confidence distribution, how many clips the loaders
shift and skip and why; on the synthetic corpus the injected offsets and how many were recovered);
MLflow: the sync_check settings and the same numbers."""
from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from ..config import Params, anchored, from_dict, to_dict
from ..data.av_sync import skip_reason
from ..eval.av_offset import check_shard
from ..storage import write_json, write_parquet
from ..layout import Layout
from ..runtime import tracking
from ..runtime.device import wants_gpu
from ..runtime.ray_session import ray_session

log = logging.getLogger(__name__)
SYNC_SCHEMA = pa.schema([("clip_id", pa.string()), ("split", pa.string()), ("offset", pa.int64()),
                         ("confidence", pa.float64()), ("min_dist", pa.float64()), ("scorer", pa.string()),
                         ("frames", pa.int64()), ("source", pa.string())])


def _shard_task(pdict: dict, url: str) -> list[dict]:
    return check_shard(from_dict(Params, pdict), url)


def score_all(params: Params, executor: str = "ray", splits: tuple[str, ...] = ("train", "val", "test")) -> list[dict]:
    """Every clip of the shards of `splits`, one task per shard (progress per shard)."""
    layout = Layout(params.paths)
    urls = [u for split in splits for u in layout.shard_urls(split, required=split == "train")]
    rows: list[dict] = []
    bar = tqdm(total=len(urls), desc="sync check", unit="shard")
    if executor == "local":
        for url in urls:
            rows += check_shard(params, url)
            bar.update()
    else:
        import ray

        with ray_session(params.ray):
            gpus = params.sync_check.gpus_per_task if wants_gpu(params.device, ray.cluster_resources().get("GPU", 0)) else 0
            task = ray.remote(num_cpus=1, num_gpus=gpus)(_shard_task)
            pdict = to_dict(anchored(params))  # Ray workers need not share the working directory
            pending = [task.remote(pdict, u) for u in urls]
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                rows += ray.get(done[0])
                bar.update()
    bar.close()
    return sorted(rows, key=lambda r: r["clip_id"])


def injected_offsets(rows: list[dict]) -> dict[str, int]:
    """clip_id -> the offset the synthetic corpus injected (its clip JSON's `av_offset`; 0 = clean)."""
    out = {}
    for r in rows:
        meta = Path(r["source"]).with_suffix(".json")
        if meta.exists():
            out[r["clip_id"]] = int(json.loads(meta.read_text()).get("av_offset", 0))
    return out


def summarize(params: Params, rows: list[dict], injected: dict[str, int], wall_s: float) -> dict:
    why = [skip_reason(r, params.sync_check) for r in rows]
    reasons = Counter(why)
    used = [r for r, w in zip(rows, why) if w is None]
    conf = np.array([r["confidence"] for r in rows]) if rows else np.zeros(0)
    out = {
        "scorer": rows[0]["scorer"] if rows else None, "clips": len(rows),
        "offsets": dict(sorted(Counter(str(r["offset"]) for r in rows).items(), key=lambda kv: int(kv[0]))),
        "confidence": {q: float(np.quantile(conf, p)) for q, p in (("p10", 0.1), ("median", 0.5), ("p90", 0.9))}
        if len(conf) else {},
        "clips_shifted": sum(r["offset"] != 0 for r in used), "clips_in_sync": sum(r["offset"] == 0 for r in used),
        "clips_dropped": len(rows) - len(used),
        "dropped_by_reason": {k: v for k, v in sorted(reasons.items(), key=str) if k is not None},
        "thresholds": {"min_confidence": params.sync_check.thresholds(rows[0]["scorer"])[0] if rows else None,
                       "max_offset": params.sync_check.max_offset},
        "wall_s": round(wall_s, 2), "clips_per_s": round(len(rows) / wall_s, 2) if wall_s > 0 else None,
    }
    if injected:
        out["injected"] = injected_recovery(rows, injected)
    return out


def injected_recovery(rows: list[dict], injected: dict[str, int]) -> dict:
    """How the search found the synthetic corpus's injected offsets (clip -> k, 0 = clean) in scored rows."""
    found = {r["clip_id"]: r["offset"] for r in rows}
    hit = [abs(found[c] - k) <= 1 for c, k in injected.items() if k != 0]
    clean = [abs(found[c]) <= 1 for c, k in injected.items() if k == 0]
    return {"clips": len(hit), "recovered_within_1": float(np.mean(hit)) if hit else None,
            "recovered_exactly": float(np.mean([found[c] == k for c, k in injected.items() if k])) if hit else None,
            "clean_clips": len(clean), "clean_within_1": float(np.mean(clean)) if clean else None}


def run(params: Params, args) -> int:
    layout = Layout(params.paths)
    t0 = time.time()
    rows = score_all(params, getattr(args, "executor", None) or "ray")
    write_parquet(pa.Table.from_pylist(rows, schema=SYNC_SCHEMA), layout.sync_table)
    metrics = summarize(params, rows, injected_offsets(rows), time.time() - t0)
    write_json(layout.metrics("sync.json"), metrics)
    tracking.log_stage(params.tracking, "sync_check", "sync-check", {"sync_check": to_dict(params.sync_check)}, metrics,
                       dicts={"sync.json": metrics})
    inj = metrics.get("injected", {})
    log.info("sync check (%s): %d clips, %d shifted, %d dropped %s%s", metrics["scorer"], len(rows),
             metrics["clips_shifted"], metrics["clips_dropped"], metrics["dropped_by_reason"],
             f"; injected offsets recovered within 1 frame: {inj['recovered_within_1']:.0%} of {inj['clips']}, "
             f"clean within 1: {inj['clean_within_1']:.0%} of {inj['clean_clips']}" if inj.get("clips") else "")
    return 0
