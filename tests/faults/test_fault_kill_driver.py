"""kill -9 of the DRIVER at random points (seeded) of preprocessing, training and personalization,
then a rerun to completion: nothing lost, nothing duplicated, nothing corrupt, no Ray process left.

Each case: one clean run (the reference, and the span the kill points are drawn from: from the
moment the driver's local Ray is up to its exit), then RUNS times: a fresh output folder, the stage
started as a subprocess in its own session, SIGKILL once Ray is up plus a seeded random share of
that span, the session's leftover processes found and killed (counted as orphans), the same command
rerun to completion and its output compared with the clean run.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file

from harness import (  # noqa: F401 (fixtures)
    RAY_UP, RUNS, SUITE, Driver, backbone_weights, fault_corpus, kill_fractions, litter, record, run_to_completion,
    same_weights, shard_bytes, stage_params, train_reference, with_models, write_params,
)

pytestmark = SUITE


def _summary(rows: list[dict]) -> dict:
    return {"killed_mid_run": sum(r["killed"] for r in rows), "orphans_per_kill": sorted({r["orphans"] for r in rows}),
            "orphan_names": sorted({n for r in rows for n in r["orphan_names"]}),
            "kill_fractions": [r["fraction"] for r in rows],
            "kill_s_after_ray_up": [r["delay"] for r in rows], "litter": sum(len(r["litter"]) for r in rows),
            "progress_at_kill": [r.get("progress") for r in rows], "rerun_s": [r["rerun_s"] for r in rows]}


def _clean_run(workdir: Path, argv: list[str], timeout: float = 400) -> tuple[float, float]:
    """The uninterrupted run: (wall s, work span s = from Ray up to the exit, less the last 10 %: Ray's
    shutdown, where a kill would often find the driver gone already)."""
    d = Driver(workdir, argv, name="run").start()
    rc, wall, t_up = d.run_measured(RAY_UP, timeout)
    orphans = d.cleanup(grace=10.0)
    assert rc == 0 and t_up is not None, d.tail()
    assert not orphans, f"a clean exit left Ray processes: {orphans}"
    return wall, 0.9 * (wall - t_up)


def _kill_and_rerun(workdir: Path, argv: list[str], fraction: float, span: float, progress=None,
                    timeout: float = 400) -> dict:
    d = Driver(workdir, argv, name="killed").start()
    delay = round(fraction * span, 2)
    killed = d.wait_for(RAY_UP, timeout) and d.kill_after(delay)
    state = progress() if progress else None
    orphans = d.cleanup()
    rc, wall, rerun_orphans = run_to_completion(workdir, argv, timeout=timeout, name="rerun")
    assert not rerun_orphans, f"a clean exit left Ray processes: {rerun_orphans}"
    return {"fraction": fraction, "delay": delay, "killed": killed, "orphans": len(orphans), "orphan_names": orphans,
            "progress": state, "rerun_s": round(wall, 1)}


# ------------------------------------------------------------------------------ preprocessing
def test_kill9_driver_during_preprocessing(fault_corpus, tmp_path):
    t_case = time.time()
    reference = shard_bytes(fault_corpus / "shards")
    n_clips = pq.read_table(fault_corpus / "shards" / "index.parquet").num_rows

    def setup(d: Path) -> list[str]:
        p = stage_params(fault_corpus, d)
        p.paths.shards, p.paths.metrics = str(d / "shards"), str(d / "metrics")
        return ["preprocess", "--params", str(write_params(p, d / "params.yaml"))]  # Ray Data executor

    clean = tmp_path / "clean"
    clean_wall, span = _clean_run(clean, setup(clean))
    assert shard_bytes(clean / "shards") == reference  # Ray executor == local reference
    rows, problems = [], []
    for i, fraction in enumerate(kill_fractions(RUNS, "preprocess")):
        d = tmp_path / f"run{i}"
        shards = d / "shards"

        def progress():
            return {"staged": len(list(shards.glob(".staging/*/*/*.tar"))), "shards": len(list(shards.glob("*/shard-*.tar")))}

        row = _kill_and_rerun(d, setup(d), fraction, span, progress)
        got = shard_bytes(shards)
        index = pq.read_table(shards / "index.parquet").to_pylist()
        ids = [r["clip_id"] for r in index]
        row["litter"] = litter(shards)
        if got != reference:
            problems.append(f"run {i}: shards differ from the clean run: {sorted(set(got) ^ set(reference))}")
        if len(ids) != len(set(ids)) or len(ids) != n_clips:
            problems.append(f"run {i}: index has {len(ids)} rows for {len(set(ids))} clips (expected {n_clips})")
        metrics = json.loads((d / "metrics" / "preprocess.json").read_text())
        if metrics["clips_ok"] != n_clips or metrics["clips_failed"]:
            problems.append(f"run {i}: metrics {metrics}")
        rows.append(row)
    record("kill -9 driver: preprocess (Ray Data)", len(rows), "pass" if not problems else "FAIL: " + "; ".join(problems),
           time.time() - t_case, clean_run_s=round(clean_wall, 1), work_span_s=round(span, 1), **_summary(rows))
    assert not problems, problems


# ------------------------------------------------------------------------------ training
def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_kill9_driver_during_training(fault_corpus, train_reference, tmp_path):
    from stylesync.models.checkpoint import read_model
    from stylesync.train.checkpointing import verify_checkpoint

    t_case = time.time()

    def setup(d: Path) -> list[str]:
        p = stage_params(fault_corpus, d)
        with_models(p)
        return ["train", "--params", str(write_params(p, d / "params.yaml"))]

    ref_dir, (clean_wall, span), reference = train_reference  # the uninterrupted run, its work span
    steps = json.loads((ref_dir / "metrics" / "train.json").read_text())["steps"]
    rows, problems = [], []
    for i, fraction in enumerate(kill_fractions(RUNS, "train")):
        d = tmp_path / f"run{i}"

        def progress():
            return {"checkpoints": sum(c.is_dir() for c in (d / "runs").glob("*/checkpoint_*"))}

        row = _kill_and_rerun(d, setup(d), fraction, span, progress)
        m = json.loads((d / "metrics" / "train.json").read_text())
        if m["steps"] != steps:
            problems.append(f"run {i}: stopped at step {m['steps']}, not {steps}")
        read_model(d / "models" / "backbone" / "generator", kind="generator")  # loads, hash checked
        if not same_weights(backbone_weights(d), reference):
            problems.append(f"run {i}: weights differ from the uninterrupted run")
        ckpts = sorted(c for c in (d / "runs").glob("*/checkpoint_*") if c.is_dir())
        for c in ckpts:
            try:
                verify_checkpoint(c, ["G.safetensors", "D.safetensors", "g_ema.safetensors", "state.pt"])
            except Exception as e:  # a checkpoint copy cut short by the kill, left in storage
                row.setdefault("bad_checkpoints", []).append(f"{c.name}: {e}")
        row["checkpoints_left"] = len(ckpts)
        row["litter"] = litter(d / "runs") + litter(d / "models")
        rows.append(row)
    record("kill -9 driver: train (Ray Train)", len(rows), "pass" if not problems else "FAIL: " + "; ".join(problems),
           time.time() - t_case, clean_run_s=round(clean_wall, 1), work_span_s=round(span, 1),
           weights_equal_uninterrupted=not problems,
           checkpoints_left=[r["checkpoints_left"] for r in rows],
           bad_checkpoints_left=[b for r in rows for b in r.get("bad_checkpoints", [])], **_summary(rows))
    assert not problems, problems


# ------------------------------------------------------------------------------ personalization
def test_kill9_driver_during_personalization(fault_corpus, tmp_path):
    from helpers import load_personal_of, personal_dir

    t_case = time.time()

    def setup(d: Path):
        p = stage_params(fault_corpus, d)
        with_models(p, backbone=True)
        return p, ["personalize", "--params", str(write_params(p, d / "params.yaml"))]

    def deltas(p) -> dict:
        table = pq.read_table(Path(p.paths.models) / "personal" / "catalog.parquet").to_pylist()
        return {r["identity"]: _tensors(Path(personal_dir(p, r["identity"])) / "model.safetensors") for r in table}

    clean = tmp_path / "clean"
    p_clean, argv = setup(clean)
    clean_wall, span = _clean_run(clean, argv)
    reference = deltas(p_clean)
    assert len(reference) == 3
    rows, problems = [], []
    for i, fraction in enumerate(kill_fractions(RUNS, "personalize")):
        d = tmp_path / f"run{i}"
        p, argv = setup(d)
        personal = d / "models" / "personal"

        def progress():
            return {"identities_done": len(list(personal.glob("*/config.json")))}

        row = _kill_and_rerun(d, argv, fraction, span, progress)
        table = pq.read_table(personal / "catalog.parquet").to_pylist()
        ids = [r["identity"] for r in table]
        if sorted(ids) != sorted(reference) or len(ids) != len(set(ids)):
            problems.append(f"run {i}: catalog identities {ids}")
        bad = [(r["identity"], r["status"], r["reason"]) for r in table if r["status"] not in ("ok", "skipped")]
        if bad:
            problems.append(f"run {i}: not ok: {bad}")
        row["statuses"] = sorted(r["status"] for r in table)
        for ident in ids:
            load_personal_of(p, personal_dir(p, ident))  # loads onto the backbone (hash checked)
        got = deltas(p)
        if not all(_same_tensors(got[k], reference[k]) for k in reference):
            problems.append(f"run {i}: personal deltas differ from the uninterrupted run")
        row["identity_dirs"] = sorted(q.name for q in personal.iterdir() if q.is_dir() and not q.name.startswith("."))
        row["litter"] = litter(personal)
        if row["identity_dirs"] != sorted(Path(personal_dir(p, k)).name for k in reference):
            problems.append(f"run {i}: identity folders {row['identity_dirs']}")
        rows.append(row)
    record("kill -9 driver: personalize (Ray tasks)", len(rows), "pass" if not problems else "FAIL: " + "; ".join(problems),
           time.time() - t_case, clean_run_s=round(clean_wall, 1), work_span_s=round(span, 1),
           deltas_equal_uninterrupted=not problems,
           rerun_statuses=[r["statuses"] for r in rows], **_summary(rows))
    assert not problems, problems
