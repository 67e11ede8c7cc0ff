"""The speaker catalog of personalization: who is personalized on which clips, and what is held out.

From `personalize.catalog` (a parquet/csv table) or, by default, every test identity of the shards.
"""
from __future__ import annotations

from collections import defaultdict

import pyarrow.csv as pacsv

from ..config import Params
from ..storage import open_file, read_parquet
from ..layout import Layout
from .personalize import CatalogEntry


def default_catalog(params: Params) -> list[CatalogEntry]:
    """The test identities of the shards: the first `train_clips` clips are the person's data,
    the rest are held out."""
    rows = read_parquet(Layout(params.paths).shard_index).to_pylist()
    by_id: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r["split"] == "test":
            by_id[r["identity"]].append(r["clip_id"])
    n = params.personalize.train_clips
    return [CatalogEntry(i, sorted(c)[:n], sorted(c)[n:], params.personalize.seconds) for i, c in sorted(by_id.items())]


def read_catalog_file(path: str, params: Params) -> list[CatalogEntry]:
    """A parquet/csv table: `identity`, optional `clips` (list or ';'-separated), `held_out`, `seconds`,
    `time_limit_s`. Missing `clips`: the identity's first `train_clips` clips in the shards."""
    if path.endswith(".parquet"):
        table = read_parquet(path)
    else:
        with open_file(path, "rb") as f:
            table = pacsv.read_csv(f)
    defaults = {e.identity: e for e in default_catalog(params)}
    out = []
    for r in table.to_pylist():
        ident = str(r["identity"])
        d = defaults.get(ident, CatalogEntry(ident, [], []))

        def as_list(v):
            return [x for x in (v.split(";") if isinstance(v, str) else v) if x] if v else None

        out.append(CatalogEntry(ident, as_list(r.get("clips")) or d.clips, as_list(r.get("held_out")) or d.held_out,
                                r.get("seconds") if r.get("seconds") is not None else params.personalize.seconds,
                                r.get("time_limit_s")))
    return out


def load_catalog(params: Params) -> tuple[list[CatalogEntry], dict[str, str]]:
    """(the catalog's entries, restricted to `personalize.identities` when given; {requested
    identity the catalog lacks: why}). An empty catalog is an error that names what was asked."""
    pc = params.personalize
    entries = read_catalog_file(pc.catalog, params) if pc.catalog else default_catalog(params)
    source = f"the catalog {pc.catalog}" if pc.catalog else "the test identities of the shards"
    known = [e.identity for e in entries]
    if not entries:
        raise ValueError(f"the personalization catalog is empty: no identities in {source}")
    unknown = {}
    if pc.identities:
        unknown = {i: f"unknown identity: not in {source} ({', '.join(known[:10])}{', ...' if len(known) > 10 else ''})"
                   for i in pc.identities if i not in set(known)}
        entries = [e for e in entries if e.identity in set(pc.identities)]
        if not entries:
            raise ValueError("; ".join(f"{i}: {why}" for i, why in unknown.items()))
    return entries, unknown


def folder_clashes(params: Params, entries: list[CatalogEntry]) -> dict[str, str]:
    """identity -> reason, for identities listed twice or whose output folders coincide (names are
    made path-safe, so `a/b` and `a_b` both map to `a_b`): one would overwrite the other."""
    layout = Layout(params.paths)
    by_dir: dict[str, list[str]] = defaultdict(list)
    for e in entries:
        try:
            by_dir[layout.personal(e.identity)].append(e.identity)
        except ValueError:
            continue  # no path-safe name at all: the task itself records that failure
    return {i: f"identity folder clash: {', '.join(repr(x) for x in ids)} all map to {d}"
            for d, ids in by_dir.items() if len(ids) > 1 for i in ids}
