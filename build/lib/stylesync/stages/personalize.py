"""Stage `personalize`: the speaker catalog (train/catalog.py) fanned out as Ray tasks, one per identity.

Each identity is isolated: a failure (bad data, NaN loss, out of memory, a time limit) is recorded
with its reason and the others go on. Ray retries tasks whose worker died (`max_retries`); errors
raised by the code are not retried (they would fail again). A rerun does only what is missing or
failed: finished identities (same backbone, params and data) are kept. Results go to
`models/personal/catalog.parquet` and `metrics/personalize.json`; MLflow gets a parent run for the
catalog and a child run per identity (stages/personal_identity.py).
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..config import Params, anchored, from_dict, to_dict
from ..data.av_sync import load_sync_plan
from ..storage import atomic_write_bytes, is_uri, makedirs, write_json
from ..layout import Layout
from ..runtime import tracking
from ..runtime.device import wants_gpu
from ..runtime.ray_session import ray_session
from ..train.build import PERCEPTUAL_OFF
from ..train.catalog import folder_clashes, load_catalog
from ..train.personalize import CatalogEntry, PersonalizeError
from .personal_identity import personalize_identity

log = logging.getLogger(__name__)

CATALOG_SCHEMA = pa.schema([
    ("identity", pa.string()), ("status", pa.string()), ("reason", pa.string()), ("wall_s", pa.float64()),
    ("steps", pa.int64()), ("personal_frames", pa.int64()), ("delta_bytes", pa.int64()),
    ("mouth_psnr_g", pa.float64()), ("mouth_psnr_p", pa.float64()), ("mouth_ssim_g", pa.float64()),
    ("mouth_ssim_p", pa.float64()), ("held_out_clips", pa.int64()), ("mlflow_run_id", pa.string()),
])


def _identity_task(params_dict: dict, entry: CatalogEntry, parent_run_id: Optional[str]) -> dict:
    """Runs in a Ray worker: one identity; code errors come back as a failed record."""
    params = from_dict(Params, params_dict)
    try:
        return personalize_identity(params, entry, parent_run_id)
    except (PersonalizeError, ValueError, FileNotFoundError, RuntimeError) as e:
        if "out of memory" in str(e).lower():
            raise  # let Ray record it as the system failure it is
        return {"identity": entry.identity, "status": "failed", "reason": f"{type(e).__name__}: {e}"}


def _local_identity(params_dict: dict, entry: CatalogEntry, parent_run_id: Optional[str]) -> dict:
    """In-process executor: a failure that the task re-raises (out of memory) is recorded too."""
    try:
        return _identity_task(params_dict, entry, parent_run_id)
    except Exception as e:  # MemoryError and torch.OutOfMemoryError included
        return {"identity": entry.identity, "status": "failed", "reason": _failure_reason(e)}


def _failure_reason(e: BaseException) -> str:
    import ray.exceptions as rex

    if isinstance(e, rex.OutOfMemoryError):  # Ray's memory monitor killed the worker
        return f"out of memory: {str(e).splitlines()[0][:300]}"
    inner = getattr(e, "cause", None) or e  # a RayTaskError wraps the task's own exception
    if isinstance(inner, MemoryError) or "out of memory" in str(inner).lower():
        lines = str(inner).strip().splitlines()
        return f"out of memory: {type(inner).__name__}: {lines[0][:300] if lines else ''}"
    if isinstance(e, rex.TaskCancelledError):
        return "cancelled"
    if isinstance(e, (rex.WorkerCrashedError, rex.NodeDiedError)):
        return f"worker died ({type(e).__name__}) after retries"
    cause = getattr(e, "cause", None) or e  # a RayTaskError wraps the task's own exception
    return f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1][:300] if str(cause).strip() else ''}"


def _run_ray(params: Params, entries: list[CatalogEntry], parent_run_id: Optional[str]) -> list[dict]:
    """At most as many tasks in flight as the cluster can run at once, so that each task's time
    limit counts from when it starts."""
    import ray

    pc = params.personalize
    results = []
    with ray_session(params.ray):
        res = ray.cluster_resources()
        gpus = pc.num_gpus if wants_gpu(params.device, res.get("GPU", 0)) else 0
        cpus = min(pc.num_cpus, res.get("CPU", 1))
        slots = max(1, int(res.get("CPU", 1) // cpus))
        if gpus:
            slots = min(slots, max(1, int(res["GPU"] // gpus)))
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=pc.max_retries, retry_exceptions=False)(_identity_task)
        pdict = to_dict(anchored(params))  # Ray workers need not share the driver's working directory
        queue, running = list(entries), {}
        while queue or running:
            while queue and len(running) < slots:
                e = queue.pop(0)
                running[task.remote(pdict, e, parent_run_id)] = (e, time.time())
            done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for ref in done:
                entry, _ = running.pop(ref)
                try:
                    results.append(ray.get(ref))
                except Exception as e:  # system failures after retries, OOM, cancellation
                    results.append({"identity": entry.identity, "status": "failed", "reason": _failure_reason(e)})
                log.info("personalize %s: %s %s", entry.identity, results[-1]["status"], results[-1].get("reason", ""))
            for ref, (entry, started) in list(running.items()):
                limit = entry.time_limit_s if entry.time_limit_s is not None else pc.time_limit_s
                if time.time() - started > limit + 30:  # the task stops itself at `limit`; this is the backstop
                    ray.cancel(ref, force=True)
                    running.pop(ref)
                    results.append({"identity": entry.identity, "status": "failed",
                                    "reason": f"time limit: over {limit:g} s (cancelled)"})
    return results


def run_catalog(params: Params, executor: str = "ray") -> dict:
    t0 = time.time()
    entries, unknown = load_catalog(params)  # raises when none of it is there
    if not params.paths.vgg19_weights and params.personalize.loss.lambda_vgg:
        log.warning(PERCEPTUAL_OFF + " (every identity)")
    layout = Layout(params.paths)
    out_root = layout.personal_root  # a local path or a URI
    makedirs(out_root)
    with tracking.run(params.tracking, "personalize", "catalog", system_metrics=False) as parent:
        parent_id = parent.info.run_id if parent is not None else None
        if parent is not None:
            tracking.log_params({"personalize": to_dict(params.personalize)})
        clashes = folder_clashes(params, entries)  # two identities, one folder: neither runs
        runnable = [e for e in entries if e.identity not in clashes]
        if executor == "ray":
            results = _run_ray(params, runnable, parent_id) if runnable else []
        else:
            results = [_local_identity(to_dict(params), e, parent_id) for e in runnable]
        results += [{"identity": i, "status": "failed", "reason": r} for i, r in clashes.items()]
        order = {e.identity: i for i, e in enumerate(entries)}
        results.sort(key=lambda r: order[r["identity"]])
        results += [{"identity": i, "status": "failed", "reason": r} for i, r in unknown.items()]
        table = pa.Table.from_pylist([{k: r.get(k) for k in CATALOG_SCHEMA.names} for r in results],
                                     schema=CATALOG_SCHEMA)
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf)
        catalog_bytes = buf.getvalue().to_pybytes()
        atomic_write_bytes(layout.catalog, catalog_bytes)
        metrics = summarize(results, time.time() - t0) | {"sync": load_sync_plan(params).summary()}
        write_json(layout.metrics("personalize.json"), metrics)
        if parent is not None:
            import mlflow

            mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
            for k, v in (metrics.get("ours_g_vs_p") or {}).items():
                mlflow.log_metric(f"ours_g_vs_p/{k}", v)
            if is_uri(out_root):
                with tempfile.TemporaryDirectory() as d:
                    (Path(d) / "catalog.parquet").write_bytes(catalog_bytes)
                    mlflow.log_artifact(str(Path(d) / "catalog.parquet"))
            else:
                mlflow.log_artifact(layout.catalog)
    return metrics


def summarize(results: list[dict], wall: float) -> dict:
    ok = [r for r in results if r["status"] in ("ok", "skipped")]
    keys = ("mouth_psnr_g", "mouth_psnr_p", "mouth_ssim_g", "mouth_ssim_p")
    scored = [r for r in ok if all(r.get(k) is not None for k in keys)]
    per_id = {r["identity"]: {"status": r["status"], "reason": r.get("reason", ""), "wall_s": r.get("wall_s"),
                              "delta_bytes": r.get("delta_bytes"), **{k: r.get(k) for k in keys}}
              for r in results}
    for v in per_id.values():
        if v.get("mouth_psnr_p") is not None and v.get("mouth_psnr_g") is not None:
            v["mouth_psnr_gain"] = v["mouth_psnr_p"] - v["mouth_psnr_g"]
    return {
        "ok": sum(r["status"] == "ok" for r in results), "skipped": sum(r["status"] == "skipped" for r in results),
        "failed": sum(r["status"] == "failed" for r in results),
        "ours_g_vs_p": {k: float(np.mean([r[k] for r in scored])) for k in keys} if scored else None,
        "per_identity": per_id,
        "wall_s_total": round(wall, 2),
        "cpu_s_per_identity": float(np.mean([r["wall_s"] for r in ok if r.get("wall_s")])) if ok else None,
    }


def run(params: Params, args) -> int:
    """Exit 1 when any requested identity failed or is unknown (each reason printed), unless
    `personalize.allow_partial`."""
    m = run_catalog(params, executor=getattr(args, "executor", "ray"))
    for identity, r in m["per_identity"].items():
        if r["status"] == "failed":
            log.error("personalize %s: failed: %s", identity, r["reason"])
    log.info("personalize: %d ok, %d skipped (done before), %d failed; G vs P %s", m["ok"], m["skipped"],
             m["failed"], m["ours_g_vs_p"])
    if m["failed"] and not params.personalize.allow_partial:
        log.error("personalize: %d of %d identities failed (personalize.allow_partial: true accepts that)",
                  m["failed"], len(m["per_identity"]))
        return 1
    return 0
