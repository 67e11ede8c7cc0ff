"""Manifest stage: scan dataset roots into one parquet table, one row per clip (docs/ARCHITECTURE.md \"Data path\").

Layouts (docs/MODELS.md, reference R8):
- voxceleb2: `{root}/{dev,test}/mp4/<identity>/<youtube_id>/NNNNN.mp4`, optional separately released
  audio at `{root}/{split}/aac/<identity>/<youtube_id>/NNNNN.m4a` (-> `audio_path`).
- lrw: `{root}/lipread_mp4/WORD/{train,val,test}/WORD_NNNNN.mp4` + `WORD_NNNNN.txt` (`Text: WORD`,
  `Duration: 0.xx seconds` -> `text`, `word_duration_s`); `root` may also be `lipread_mp4` itself.
  LRW has no speaker labels: every LRW row has identity `lrw:unknown` (UNKNOWN_IDENTITY), which
  identity-based selections (`manifest.identities`) never keep.
- synthetic: the voxceleb2 layout plus a `NNNNN.landmarks.npy` sidecar next to each mp4
  (-> `landmarks_path`; the sidecar is recorded for voxceleb2 too when present).

Readers only list files; subsets (splits, fraction, identities) are applied before probing, the
expensive part, which runs in a thread pool. A clip whose probe fails stays in the manifest with
`probe_error` set, so the preprocess stage can record it as a failure.

Paths: local roots are kept as spelled in the config (a relative root gives relative paths, so the
manifest does not depend on the checkout's location); URIs keep their protocol. Names are taken
from the directories as they are (not sanitized).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import posixpath
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Optional, Sequence

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from tqdm import tqdm

from ..config import ManifestConfig, ValSplitConfig
from ..storage import atomic_write_bytes, is_uri
from ..video import MediaError, probe, probe_audio_file

log = logging.getLogger(__name__)

UNKNOWN_IDENTITY = "lrw:unknown"
VOX_SPLITS = {"dev": "train", "test": "test"}  # dataset split -> normalised split (`val`: assign_val)
LRW_SPLITS = {"train": "train", "val": "val", "test": "test"}

SCHEMA = pa.schema([
    pa.field("clip_id", pa.string(), nullable=False),
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("source_split", pa.string(), nullable=False),
    pa.field("identity", pa.string(), nullable=False),
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("path", pa.string(), nullable=False),
    pa.field("audio_path", pa.string()),
    pa.field("landmarks_path", pa.string()),
    pa.field("text", pa.string()),
    pa.field("word_duration_s", pa.float64()),
    pa.field("duration_s", pa.float64()),
    pa.field("fps", pa.float64()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("n_frames", pa.int32()),
    pa.field("has_audio", pa.bool_(), nullable=False),
    pa.field("video_codec", pa.string()),
    pa.field("audio_codec", pa.string()),
    pa.field("probe_error", pa.string()),
])


class ManifestError(ValueError):
    """A manifest source that cannot be scanned (missing root, unknown dataset or split, ...)."""


# ------------------------------------------------------------------------------------ listing
class _Root:
    """A source root: its filesystem, its path there, and the spelling the manifest keeps."""

    def __init__(self, root: str, dataset: str):
        self.fs, base = url_to_fs(root)
        self.base = base.rstrip("/") or "/"
        if is_uri(root):
            self.spelling, self.join = root.rstrip("/"), posixpath.join
        else:  # local path or file:// URI
            self.spelling = self.base if root.startswith("file://") else (root.rstrip("/") or "/")
            self.join = os.path.join
        if not self.fs.isdir(self.base):
            raise ManifestError(f"manifest source {dataset!r}: root {root!r} does not exist (or is not a directory)")

    def isdir(self, *parts: str) -> bool:
        return self.fs.isdir(posixpath.join(self.base, *parts))

    def files(self, *parts: str) -> Iterator[tuple[str, ...]]:
        """Every file under root/parts, as its path parts relative to root (hidden files and dirs skipped)."""
        top = posixpath.join(self.base, *parts)
        prefix = top.rstrip("/") + "/"
        for p in self._find(top):
            if not p.startswith(prefix):
                raise ManifestError(f"{p!r} was listed under {top!r} but is not inside it")
            rel = tuple(parts) + tuple(p[len(prefix):].split("/"))
            if not any(x.startswith(".") for x in rel):  # e.g. write_video's partial `.NNNNN.mp4.tmp*.mp4`
                yield rel

    def _find(self, top: str) -> Iterator[str]:
        if isinstance(self.fs, LocalFileSystem):  # os.walk: follows linked split/identity dirs, faster
            for d, _, names in os.walk(top, followlinks=True):
                yield from (posixpath.join(d, n) for n in names)
        else:
            yield from self.fs.find(top)

    def uri(self, rel: Sequence[str]) -> str:
        """The manifest path of the file at root/rel (rel: found path parts)."""
        return self.join(self.spelling, *rel)


def _splits(dataset: str, wanted: Sequence[str], known: dict[str, str]) -> list[str]:
    bad = sorted(set(wanted) - set(known))
    if bad:
        raise ManifestError(f"manifest source {dataset!r}: unknown split(s) {bad}; allowed: {sorted(known)}")
    return sorted(set(wanted)) if wanted else sorted(known)


def _base_row(**kw: Any) -> dict:
    row = {f.name: None for f in SCHEMA}
    row["has_audio"] = False
    row.update(kw)
    return row


def _read_vox_layout(dataset: str, root: str, splits: Sequence[str]) -> Iterator[dict]:
    r = _Root(root, dataset)
    chosen = _splits(dataset, splits, VOX_SPLITS)
    missing = [s for s in splits if not r.isdir(s, "mp4")]
    if missing:
        raise ManifestError(f"manifest source {dataset!r}: split(s) {missing} have no mp4/ directory under {root!r}")
    for split in chosen:
        if not r.isdir(split, "mp4"):
            continue
        audio, landmarks, videos = {}, {}, []
        for rel in r.files(split, "mp4"):
            if len(rel) != 5:
                continue
            name = rel[4]
            if name.endswith(".mp4"):
                videos.append(rel)
            elif name.endswith(".landmarks.npy"):
                landmarks[rel[2:4] + (name[: -len(".landmarks.npy")],)] = r.uri(rel)
        if r.isdir(split, "aac"):
            for rel in r.files(split, "aac"):
                if len(rel) == 5 and rel[4].endswith(".m4a"):
                    audio[rel[2:4] + (rel[4][:-4],)] = r.uri(rel)
        for rel in videos:
            identity, video, stem = rel[2], rel[3], rel[4][:-4]
            key = (identity, video, stem)
            yield _base_row(
                clip_id=f"{dataset}/{split}/{identity}/{video}/{stem}", dataset=dataset, split=VOX_SPLITS[split],
                source_split=split, identity=identity, video_id=video, path=r.uri(rel),
                audio_path=audio.get(key), landmarks_path=landmarks.get(key),
            )


def read_voxceleb2(root: str, splits: Sequence[str] = ()) -> Iterator[dict]:
    """Rows (unprobed) of a VoxCeleb2 tree; dev -> train, test -> test."""
    return _read_vox_layout("voxceleb2", root, splits)


def read_synthetic(root: str, splits: Sequence[str] = ()) -> Iterator[dict]:
    """Rows (unprobed) of the synthetic corpus (VoxCeleb2 layout + `.landmarks.npy` sidecars)."""
    return _read_vox_layout("synthetic", root, splits)


def read_lrw(root: str, splits: Sequence[str] = ()) -> Iterator[dict]:
    """Rows (unprobed) of an LRW tree. `text` is the word (directory name) until the probe step
    reads the clip's .txt; identity is UNKNOWN_IDENTITY (LRW has no speaker labels)."""
    r = _Root(root, "lrw")
    chosen = set(_splits("lrw", splits, LRW_SPLITS))
    top = ("lipread_mp4",) if r.isdir("lipread_mp4") else ()
    texts, videos = {}, []
    for rel in r.files(*top):
        rel_in = rel[len(top):]
        if len(rel_in) != 3 or rel_in[1] not in chosen:
            continue
        if rel_in[2].endswith(".mp4"):
            videos.append(rel)
        elif rel_in[2].endswith(".txt"):
            texts[rel[:-1] + (rel_in[2][:-4],)] = r.uri(rel)
    for rel in videos:
        word, split, stem = rel[-3], rel[-2], rel[-1][:-4]
        yield _base_row(
            clip_id=f"lrw/{word}/{split}/{stem}", dataset="lrw", split=LRW_SPLITS[split], source_split=split,
            identity=UNKNOWN_IDENTITY, video_id=word, path=r.uri(rel), text=word,
            _text_path=texts.get(rel[:-1] + (stem,)),
        )


READERS: dict[str, Callable[[str, Sequence[str]], Iterator[dict]]] = {
    "voxceleb2": read_voxceleb2, "lrw": read_lrw, "synthetic": read_synthetic,
}


# ------------------------------------------------------------------------------------ subsets
def selection_key(row: dict) -> str:
    """The unit a fraction keeps or drops: a video ("dataset/identity/video_id"); for LRW, whose
    video_id is the word and whose clips come from unrelated broadcasts, the clip itself."""
    if row["dataset"] == "lrw":
        return row["clip_id"]
    return f"{row['dataset']}/{row['identity']}/{row['video_id']}"


def keep_fraction(key: str, fraction: float) -> bool:
    """Deterministic subset membership: sha1(key), read as a number in [0, 1), is < fraction."""
    if fraction >= 1.0:
        return True
    h = int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") / 2.0**64
    return h < fraction


def keep_identity(identity: str, identities: Sequence[str]) -> bool:
    """Exact-match identity filter (empty = all); rows without a known identity never match one."""
    if not identities:
        return True
    return identity != UNKNOWN_IDENTITY and identity in identities


def val_identities(identities: Sequence[str], cfg: ValSplitConfig) -> set[str]:
    """The dev identities held out as `val`: the first max(min_identities, ceil(fraction x n)) by
    sha1 of the name, never more than half of them."""
    ids = sorted(set(identities), key=lambda i: hashlib.sha1(i.encode("utf-8")).hexdigest())
    n = min(max(cfg.min_identities, math.ceil(cfg.fraction * len(ids))), len(ids) // 2)
    return set(ids[:n])


def assign_val(rows: list[dict], cfg: ValSplitConfig) -> list[dict]:
    """Rows of a VoxCeleb2-layout source: its `val` identities' dev clips get split `val`."""
    held = val_identities([r["identity"] for r in rows if r["source_split"] == "dev"], cfg)
    return [{**r, "split": "val"} if r["source_split"] == "dev" and r["identity"] in held else r for r in rows]


def list_clips(cfg: ManifestConfig) -> list[dict]:
    """Unprobed rows of every source after the split/fraction/identity subsets, sorted by clip_id."""
    wanted = set(cfg.identities)
    rows: list[dict] = []
    for src in cfg.sources:
        if src.dataset not in READERS:
            raise ManifestError(f"unknown dataset {src.dataset!r}; allowed: {sorted(READERS)}")
        if not 0.0 <= src.fraction <= 1.0:
            raise ManifestError(f"manifest source {src.dataset!r}: fraction must be in [0, 1], got {src.fraction}")
        found = list(READERS[src.dataset](src.root, src.splits))
        if not found:
            raise ManifestError(f"manifest source {src.dataset!r}: no clips found under {src.root!r}")
        if src.dataset != "lrw":  # before the subsets: a subset never moves an identity between splits
            found = assign_val(found, cfg.val)
        kept = [r for r in found
                if keep_fraction(selection_key(r), src.fraction) and keep_identity(r["identity"], wanted)]
        log.info("%s at %s: %d clips found, %d kept", src.dataset, src.root, len(found), len(kept))
        rows += kept
    rows.sort(key=lambda r: r["clip_id"])
    dups = sorted({a["clip_id"] for a, b in zip(rows, rows[1:]) if a["clip_id"] == b["clip_id"]})
    if dups:
        raise ManifestError(f"duplicate clip ids (the same dataset listed twice?): {dups[:5]}")
    return rows


# ------------------------------------------------------------------------------------ probing
_DURATION = re.compile(r"([0-9]*\.?[0-9]+)")


def parse_lrw_txt(text: str) -> tuple[Optional[str], Optional[float]]:
    """(word, word duration in seconds) from an LRW .txt (`Text: WORD`, `Duration: 0.xx seconds`)."""
    word = duration = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "text" and word is None:
            word = value.strip() or None
        elif key == "duration" and duration is None and (m := _DURATION.search(value)):
            duration = float(m.group(1))
    return word, duration


def _read_text(uri: str) -> str:
    fs, p = url_to_fs(uri)
    with fs.open(p, "rb") as f:
        return f.read().decode("utf-8", "replace")


def _error(e: Exception) -> str:
    return str(e) if isinstance(e, MediaError) else f"{type(e).__name__}: {e}"


def probe_row(row: dict) -> dict:
    """The row with its probe fields filled (never raises for a bad file: see `probe_error`)."""
    out = {f.name: row.get(f.name) for f in SCHEMA}
    errors: list[str] = []
    mp4_audio = False
    try:
        info = probe(row["path"])
        out.update(duration_s=info.duration_s, fps=info.fps, width=info.width, height=info.height,
                   n_frames=info.n_frames, video_codec=info.video_codec, audio_codec=info.audio_codec)
        mp4_audio = info.has_audio
    except Exception as e:  # one bad file must not stop the scan
        errors.append(_error(e))
    if row.get("audio_path"):
        try:
            out["audio_codec"] = probe_audio_file(row["audio_path"])[1]  # the audio preprocess reads
        except Exception as e:
            errors.append(_error(e))
    out["has_audio"] = mp4_audio or row.get("audio_path") is not None
    if row.get("_text_path"):
        try:
            word, out["word_duration_s"] = parse_lrw_txt(_read_text(row["_text_path"]))
            out["text"] = word or out["text"]
        except Exception as e:  # the video is still usable; keep the word from the directory name
            log.warning("%s: cannot read %s (%s)", row["clip_id"], row["_text_path"], _error(e))
    out["probe_error"] = "; ".join(errors) or None
    return out


def probe_rows(rows: Sequence[dict], workers: int) -> list[dict]:
    """probe_row over `rows` in a thread pool (PyAV releases the GIL), in order, with progress."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(tqdm(pool.map(probe_row, rows), total=len(rows), desc="probe", unit="clip"))


# ------------------------------------------------------------------------------------ table
def build_manifest(cfg: ManifestConfig) -> pa.Table:
    """List, subset and probe every source of `cfg`: one row per clip, sorted by clip_id."""
    rows = probe_rows(list_clips(cfg), cfg.workers)
    meta = {"stylesync.manifest_config": json.dumps(dataclasses.asdict(cfg), sort_keys=True)}
    return pa.Table.from_pylist(rows, schema=SCHEMA.with_metadata(meta))


def write_manifest(table: pa.Table, path: str | os.PathLike) -> None:
    """Write `table` as parquet at `path` (local or fsspec URI), atomically (temp file + rename)."""
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_manifest(path: str | os.PathLike) -> pa.Table:
    """Read a manifest written by write_manifest (local or fsspec URI)."""
    with fsspec.open(str(path), "rb") as f:
        return pq.read_table(f)


def summary(table: pa.Table) -> dict[str, Any]:
    """Counts for logs: clips per dataset/split, identities, probe errors."""
    per = table.group_by(["dataset", "split"]).aggregate([("clip_id", "count")]).to_pylist()
    ids = {i for i in table.column("identity").to_pylist() if i != UNKNOWN_IDENTITY}
    return {
        "clips": table.num_rows,
        "per_split": {f"{r['dataset']}/{r['split']}": r["clip_id_count"] for r in sorted(
            per, key=lambda r: (r["dataset"], r["split"]))},
        "identities": len(ids),
        "probe_errors": table.num_rows - table.column("probe_error").null_count,
    }
