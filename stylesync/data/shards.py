"""Deterministic, exactly-once, resumable WebDataset shard output.

Plan: clips of each split, sorted by clip_id, are cut into shards of `shard_size` before anything
runs, so shard names and contents depend only on the manifest and the params.
Staging: each finished clip is written atomically to `.staging/<split>/shard-NNNNNN/<n>.tar` (its
sample) or `<n>.fail.json` (its rejection); a rerun skips staged clips.
Assembly: when all clips of a shard are staged, `shard-NNNNNN.meta.json` (index rows + failures) and
then `shard-NNNNNN.tar` are written atomically (tmp + rename), in clip_id order with fixed tar
headers, so a finished shard is byte-identical across runs; its staging directory is then removed.
A shard is finished iff its tar exists (the meta is renamed first).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from ..io import atomic_write_bytes, write_json

PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class ShardPlan:
    split: str
    index: int
    clip_ids: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.split}/shard-{self.index:06d}"


def plan_shards(rows: Iterable[dict], shard_size: int) -> list[ShardPlan]:
    by_split: dict[str, list[str]] = {}
    for r in rows:
        by_split.setdefault(r["split"], []).append(r["clip_id"])
    plans = []
    for split in sorted(by_split):
        ids = sorted(by_split[split])
        for i in range(0, len(ids), shard_size):
            plans.append(ShardPlan(split, i // shard_size, tuple(ids[i : i + shard_size])))
    return plans


def plan_fingerprint(plans: list[ShardPlan], params_hash: str) -> str:
    h = hashlib.sha256(params_hash.encode())
    for p in plans:
        h.update(p.name.encode())
        for c in p.clip_ids:
            h.update(c.encode())
    return h.hexdigest()[:16]


class ShardStore:
    """The shard directory: plan check, staging, assembly, index."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # -------------------------------------------------------------- plan
    def ensure_plan(self, fingerprint: str, n_shards: int) -> bool:
        """Record the plan; if a different plan was recorded, clear the old output (it would mix two
        manifests or two param sets). Returns True when an old output was cleared."""
        f = self.root / PLAN_FILE
        cleared = False
        if f.exists():
            old = json.loads(f.read_text()).get("fingerprint")
            if old == fingerprint:
                return False
            for child in self.root.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
            cleared = True
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(f, {"fingerprint": fingerprint, "shards": n_shards})
        return cleared

    # -------------------------------------------------------------- paths
    def tar_path(self, plan: ShardPlan) -> Path:
        return self.root / f"{plan.name}.tar"

    def meta_path(self, plan: ShardPlan) -> Path:
        return self.root / f"{plan.name}.meta.json"

    def staging_dir(self, plan: ShardPlan) -> Path:
        return self.root / ".staging" / plan.name

    def staged_path(self, plan: ShardPlan, pos: int, failed: bool) -> Path:
        return self.staging_dir(plan) / (f"{pos:06d}.fail.json" if failed else f"{pos:06d}.tar")

    def is_done(self, plan: ShardPlan) -> bool:
        return self.tar_path(plan).exists() and self.meta_path(plan).exists()

    def is_staged(self, plan: ShardPlan, pos: int) -> bool:
        return self.staged_path(plan, pos, False).exists() or self.staged_path(plan, pos, True).exists()

    # -------------------------------------------------------------- staging
    def stage(self, plan: ShardPlan, pos: int, sample: dict | None, failure: dict | None) -> None:
        if sample is not None:
            atomic_write_bytes(self.staged_path(plan, pos, False), sample_tar_bytes([sample]))
        else:
            atomic_write_bytes(self.staged_path(plan, pos, True), json.dumps(failure, sort_keys=True).encode())

    # -------------------------------------------------------------- assembly
    def assemble(self, plan: ShardPlan) -> dict:
        """Staged clips -> shard tar + meta (atomic). Returns the meta."""
        samples, index, failures = [], [], []
        for pos, clip_id in enumerate(plan.clip_ids):
            ok, bad = self.staged_path(plan, pos, False), self.staged_path(plan, pos, True)
            if ok.exists():
                sample = read_sample_tar(ok.read_bytes())
                meta = json.loads(sample["json"])
                samples.append(sample)
                index.append({"key": sample["__key__"], "shard": f"{plan.name}.tar", "clip_id": clip_id,
                              "identity": meta.get("identity"), "split": plan.split, "dataset": meta.get("dataset"),
                              "n_frames": meta["n_frames"], "source": meta["source"]})
            elif bad.exists():
                failures.append(json.loads(bad.read_text()))
            else:
                raise RuntimeError(f"{plan.name}: clip {clip_id} is not staged")
        meta = {"shard": plan.name, "index": index, "failures": failures}
        write_json(self.meta_path(plan), meta)
        atomic_write_bytes(self.tar_path(plan), sample_tar_bytes(samples))
        shutil.rmtree(self.staging_dir(plan), ignore_errors=True)
        return meta

    # -------------------------------------------------------------- index
    def write_index(self, plans: list[ShardPlan]) -> tuple[pa.Table, pa.Table]:
        index, failures = [], []
        for plan in plans:
            meta = json.loads(self.meta_path(plan).read_text())
            index += meta["index"]
            failures += meta["failures"]
        index_t = pa.Table.from_pylist(index, schema=INDEX_SCHEMA)
        fail_t = pa.Table.from_pylist(failures, schema=FAILURE_SCHEMA)
        for table, name in ((index_t, "index.parquet"), (fail_t, "failures.parquet")):
            buf = pa.BufferOutputStream()
            pq.write_table(table, buf)
            atomic_write_bytes(self.root / name, buf.getvalue().to_pybytes())
        return index_t, fail_t


INDEX_SCHEMA = pa.schema([("key", pa.string()), ("shard", pa.string()), ("clip_id", pa.string()),
                          ("identity", pa.string()), ("split", pa.string()), ("dataset", pa.string()),
                          ("n_frames", pa.int64()), ("source", pa.string())])
FAILURE_SCHEMA = pa.schema([("clip_id", pa.string()), ("stage", pa.string()), ("reason", pa.string()),
                            ("detail", pa.string())])


# ------------------------------------------------------------------------------ tar helpers
def sample_tar_bytes(samples: list[dict]) -> bytes:
    """WebDataset tar of samples (dicts field -> bytes with "__key__"), deterministic headers."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for s in samples:
            key = s["__key__"]
            for field in sorted(k for k in s if not k.startswith("__")):
                data = s[field]
                info = tarfile.TarInfo(f"{key}.{field}")
                info.size, info.mtime, info.mode, info.uid, info.gid = len(data), 0, 0o644, 0, 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def read_sample_tar(data: bytes) -> dict:
    """A one-sample tar (staging format) -> dict field -> bytes with "__key__"."""
    out: dict = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for m in tar.getmembers():
            key, field = m.name.split(".", 1)
            out["__key__"] = key
            out[field] = tar.extractfile(m).read()
    return out
