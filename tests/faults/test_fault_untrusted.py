"""Untrusted inputs: identities with path characters in the personalization catalog, and a manifest
whose rows point outside the data roots. (A pickle-bearing training checkpoint is in
test_fault_checkpoints.py; pickle-bearing foreign weight files in tests/test_checkpoint.py.)"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from harness import (  # noqa: F401 (fixtures)
    SUITE, fault_corpus, record, run_to_completion, stage_params, with_models, write_params,
)

pytestmark = SUITE

HOSTILE = ["../x", "/etc", "a/b", "a_b", "..", "x/../../y"]


def _tree(root: Path) -> set[str]:
    return {str(q) for q in root.rglob("*")}


def test_identities_with_path_characters_stay_in_their_folder(fault_corpus, tmp_path):
    from stylesync.stages.personalize import run_catalog
    from stylesync.train.catalog import default_catalog
    from helpers import load_personal_of, personal_dir

    t_case = time.time()
    d = tmp_path / "run"
    p = stage_params(fault_corpus, d)
    with_models(p, backbone=True)
    clips = default_catalog(p)[0].clips
    cat = tmp_path / "catalog.csv"
    pacsv.write_csv(pa.Table.from_pylist([{"identity": i, "clips": ";".join(clips)} for i in HOSTILE]), str(cat))
    p.personalize.catalog = str(cat)
    personal = (d / "models" / "personal").resolve()
    before = _tree(tmp_path) | _tree(fault_corpus)
    etc_before = set(os.listdir("/etc"))
    m = run_catalog(p, executor="local")
    new = (_tree(tmp_path) | _tree(fault_corpus)) - before
    outside = sorted(q for q in new if not (Path(q).resolve() == personal or personal in Path(q).resolve().parents)
                     and "/metrics" not in q)
    assert not outside, outside
    assert set(os.listdir("/etc")) == etc_before
    table = {r["identity"]: r for r in pq.read_table(personal / "catalog.parquet").to_pylist()}
    assert set(table) == set(HOSTILE)
    folders = sorted(q.name for q in personal.iterdir() if q.is_dir() and not q.name.startswith("."))
    assert folders == ["_etc", "_x", "x_.._.._y"], folders
    for ident in ("../x", "/etc", "x/../../y"):
        assert table[ident]["status"] == "ok", table[ident]
        out = Path(personal_dir(p, ident))
        assert out.parent == personal and json.loads((out / "config.json").read_text())["identity"] == ident
        load_personal_of(p, out)
    for ident in ("a/b", "a_b"):  # both would be models/personal/a_b: neither runs, both say why
        assert table[ident]["status"] == "failed" and "identity folder clash: 'a/b', 'a_b'" in table[ident]["reason"]
    assert table[".."]["status"] == "failed" and "no path-safe characters" in table[".."]["reason"]
    record("untrusted identities (../x, /etc, a/b vs a_b, .., x/../../y)", 1, "pass", time.time() - t_case,
           folders=folders, statuses={k: v["status"] for k, v in table.items()}, ok=m["ok"], failed=m["failed"])


def test_manifest_pointing_outside_the_data_root_is_rejected(fault_corpus, tmp_path):
    t_case = time.time()
    rows = pq.read_table(fault_corpus / "manifest.parquet")
    schema = rows.schema
    rows = rows.to_pylist()
    rows[2] = dict(rows[2], path="/etc/passwd")
    rows[4] = dict(rows[4], landmarks_path=str(fault_corpus / "raw" / ".." / ".." / "elsewhere.npy"))
    manifest = tmp_path / "data" / "manifest.parquet"
    manifest.parent.mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), manifest)
    p = stage_params(fault_corpus, tmp_path)
    p.paths.manifest, p.paths.shards, p.paths.metrics = str(manifest), str(tmp_path / "shards"), str(tmp_path / "m")
    argv = ["preprocess", "--executor", "local", "--params", str(write_params(p, tmp_path / "params.yaml"))]
    rc, _, _ = run_to_completion(tmp_path, argv, name="preprocess", expect_rc=None)
    log = (tmp_path / "preprocess.log").read_text()
    last = [ln for ln in log.splitlines() if ln.strip()][-1]
    assert rc != 0 and last.startswith("stylesync.data.roots.ManifestRootError: manifest "), log[-2000:]
    assert f"clip {rows[2]['clip_id']!r}: path '/etc/passwd'" in last
    assert f"clip {rows[4]['clip_id']!r}: landmarks_path" in last
    assert not (tmp_path / "shards").exists()  # rejected before anything was written
    record("manifest pointing outside the data root", 1, "pass", time.time() - t_case, error=last[:400])
