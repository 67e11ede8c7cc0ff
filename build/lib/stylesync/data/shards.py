"""Deterministic, exactly-once, resumable WebDataset shard output (local directory or object store).

Plan: clips of each split, sorted by clip_id, are cut into shards of `shard_size` before anything
runs, so shard names and contents depend only on the manifest and the params (`plan.json` records
the fingerprint; a different one clears the old output, plan.json last).
Staging: each finished clip is written atomically to `.staging/<split>/shard-NNNNNN/<n>.tar` (its
sample) or `<n>.fail.json` (its rejection); a rerun skips staged clips. A clip staged twice (a task
retried after its node died) is written with the same bytes, so the last write changes nothing.
Assembly: when all clips of a shard are staged, `shard-NNNNNN.meta.json` (index rows + failures) and
then `shard-NNNNNN.tar` are written atomically, in clip_id order with fixed tar headers, so a
finished shard is byte-identical across runs; its staging directory is then removed.
A shard is finished iff its tar and meta exist (the meta is written first). The meta carries the
tar's size and sha256; every run checks the finished shards against them (`drop_corrupt`: sha256 on
local storage, size on object stores) and rebuilds a corrupt one (truncated, bytes flipped).
Atomic writes are temp file + rename locally and one PUT on object stores (no rename is needed:
every file is written whole, and completion is told by which files exist), see `stylesync.storage`.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import pyarrow as pa

from ..storage import (
    atomic_write_bytes, exists, file_sha256, find, glob, is_uri, join, makedirs, read_bytes, remove, size, write_json, write_parquet,
)

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
    """The shard directory (a local path or a URI): plan check, staging, assembly, index."""

    def __init__(self, root: str | os.PathLike):
        self.root = str(root)

    def path(self, rel: str) -> str:
        return join(self.root, *rel.split("/"))

    # -------------------------------------------------------------- plan
    def ensure_plan(self, fingerprint: str, n_shards: int) -> bool:
        """Record the plan; if a different plan was recorded, clear the old output (it would mix two
        manifests or two param sets). Returns True when an old output was cleared. The old plan file
        goes last, so that an interrupted clearing is done again by the next run."""
        f = self.path(PLAN_FILE)
        cleared = False
        if exists(f):
            old = json.loads(read_bytes(f)).get("fingerprint")
            if old == fingerprint:
                return False
            if is_uri(self.root):
                for rel in find(self.root):
                    if rel != PLAN_FILE:
                        remove(self.path(rel))
            else:
                for child in Path(self.root).iterdir():
                    if child.name != PLAN_FILE:
                        remove(child, recursive=True)
            cleared = True
        makedirs(self.root)
        write_json(f, {"fingerprint": fingerprint, "shards": n_shards})
        return cleared

    # -------------------------------------------------------------- paths (relative to the root)
    @staticmethod
    def tar_rel(plan: ShardPlan) -> str:
        return f"{plan.name}.tar"

    @staticmethod
    def meta_rel(plan: ShardPlan) -> str:
        return f"{plan.name}.meta.json"

    @staticmethod
    def staged_rel(plan: ShardPlan, pos: int, failed: bool) -> str:
        return f".staging/{plan.name}/" + (f"{pos:06d}.fail.json" if failed else f"{pos:06d}.tar")

    def tar_path(self, plan: ShardPlan) -> str:
        return self.path(self.tar_rel(plan))

    def meta_path(self, plan: ShardPlan) -> str:
        return self.path(self.meta_rel(plan))

    def staging_dir(self, plan: ShardPlan) -> str:
        return self.path(f".staging/{plan.name}")

    def staged_path(self, plan: ShardPlan, pos: int, failed: bool) -> str:
        return self.path(self.staged_rel(plan, pos, failed))

    def files(self) -> set[str]:
        """Every file of the store (relative paths), listed once: what `is_done`/`is_staged` consult
        when given (one listing instead of a request per clip on object stores)."""
        return set(find(self.root))

    def _has(self, rel: str, files: Optional[set[str]]) -> bool:
        return rel in files if files is not None else exists(self.path(rel))

    def is_done(self, plan: ShardPlan, files: Optional[set[str]] = None) -> bool:
        return self._has(self.tar_rel(plan), files) and self._has(self.meta_rel(plan), files)

    def is_staged(self, plan: ShardPlan, pos: int, files: Optional[set[str]] = None) -> bool:
        return self._has(self.staged_rel(plan, pos, False), files) or self._has(self.staged_rel(plan, pos, True), files)

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
            if exists(ok):
                sample = read_sample_tar(read_bytes(ok))
                meta = json.loads(sample["json"])
                samples.append(sample)
                index.append({"key": sample["__key__"], "shard": f"{plan.name}.tar", "clip_id": clip_id,
                              "identity": meta.get("identity"), "split": plan.split, "dataset": meta.get("dataset"),
                              "n_frames": meta["n_frames"], "source": meta["source"],
                              "shots": len(meta.get("cuts", [])) + 1})
            elif exists(bad):
                failures.append(json.loads(read_bytes(bad)))
            else:
                raise RuntimeError(f"{plan.name}: clip {clip_id} is not staged")
        data = sample_tar_bytes(samples)
        meta = {"shard": plan.name, "index": index, "failures": failures,
                "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        write_json(self.meta_path(plan), meta)
        atomic_write_bytes(self.tar_path(plan), data)
        remove(self.staging_dir(plan), recursive=True)
        return meta

    # -------------------------------------------------------------- integrity
    def verify(self, plan: ShardPlan) -> Optional[str]:
        """None if the finished shard matches its meta, else why not. Local storage: size and
        sha256; object stores: size (a full read of every shard would be a download). A meta of an
        older version (no sha256) is adopted if the tar parses and holds exactly its samples."""
        try:
            meta = json.loads(read_bytes(self.meta_path(plan)))
        except (OSError, ValueError) as e:
            return f"unreadable meta ({type(e).__name__}: {e})"
        tar = self.tar_path(plan)
        if "sha256" not in meta:
            return self._adopt(plan, meta)
        n = size(tar)
        if n != meta["bytes"]:
            return f"{n} bytes, its meta says {meta['bytes']} (truncated or altered)"
        if not is_uri(self.root):
            if file_sha256(tar) != meta["sha256"]:
                return "sha256 differs from its meta (corrupt or altered bytes)"
        return None

    def _adopt(self, plan: ShardPlan, meta: dict) -> Optional[str]:
        if is_uri(self.root):
            return None  # nothing to check against without a download
        data = read_bytes(self.tar_path(plan))
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r") as t:
                keys = {m.name.split(".", 1)[0] for m in t.getmembers()}
        except (tarfile.TarError, EOFError, OSError) as e:
            return f"unreadable tar ({type(e).__name__}: {e})"
        if keys != {r["key"] for r in meta["index"]}:
            return "its samples differ from its meta"
        write_json(self.meta_path(plan), {**meta, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
        return None

    def drop_corrupt(self, plans: list[ShardPlan], files: Optional[set[str]] = None) -> dict[str, str]:
        """Verify every finished shard; remove those that fail (tar first, so that they count as not
        finished and their clips are processed again). Returns {shard name: reason}."""
        dropped = {}
        for plan in plans:
            if not self.is_done(plan, files):
                continue
            reason = self.verify(plan)
            if reason is not None:
                remove(self.tar_path(plan))
                remove(self.meta_path(plan))
                dropped[plan.name] = reason
        return dropped

    # -------------------------------------------------------------- index
    def write_index(self, plans: list[ShardPlan]) -> tuple[pa.Table, pa.Table]:
        index, failures = [], []
        for plan in plans:
            meta = json.loads(read_bytes(self.meta_path(plan)))
            index += meta["index"]
            failures += meta["failures"]
        index_t = pa.Table.from_pylist(index, schema=INDEX_SCHEMA)
        fail_t = pa.Table.from_pylist(failures, schema=FAILURE_SCHEMA)
        for table, name in ((index_t, "index.parquet"), (fail_t, "failures.parquet")):
            write_parquet(table, self.path(name))
        return index_t, fail_t


INDEX_SCHEMA = pa.schema([("key", pa.string()), ("shard", pa.string()), ("clip_id", pa.string()),
                          ("identity", pa.string()), ("split", pa.string()), ("dataset", pa.string()),
                          ("n_frames", pa.int64()), ("source", pa.string()),
                          ("shots", pa.int64())])  # shots of the decoded clip (the sample keeps one)
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


def content_key(root: str, splits: Iterable[str]) -> dict[str, str]:
    """What a run reads of the shards, by content: {split/shard-NNNNNN: the tar's sha256 from its
    meta} for the finished shards of `splits` (run keys hold it, so that other bytes at the same
    path start a fresh run, and the same bytes resume)."""
    out = {}
    for split in splits:
        for path in sorted(glob(root, f"{split}/shard-*.meta.json")):
            meta = json.loads(read_bytes(path))
            out[f"{split}/{meta['shard'].rsplit('/', 1)[-1]}"] = meta.get("sha256") or f"{meta.get('bytes')} bytes"
    return out
