"""Out of memory in one personalization task: an accelerator OOM (`torch.OutOfMemoryError`) in one
identity and a host `MemoryError` in another, injected through the faults hook after their first
step. Those identities are recorded as failed with the reason, the third finishes, and a rerun
redoes only the two that failed (the finished one is kept: `skipped`)."""
from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from harness import (  # noqa: F401 (fixtures)
    SUITE, fault_corpus, record, run_to_completion, stage_params, with_models, write_params,
)

pytestmark = SUITE


@pytest.mark.parametrize("executor", ["ray", "local"])
def test_oom_in_one_identity(fault_corpus, tmp_path, executor):
    from helpers import load_personal_of, personal_dir

    t_case = time.time()
    d = tmp_path / executor
    p = stage_params(fault_corpus, d)
    with_models(p, backbone=True)
    argv = ["personalize", "--executor", executor, "--params", str(write_params(p, d / "params.yaml"))]
    env = {"STYLESYNC_FAULT": "personalize:person1@1:oom;personalize:person2@1:memory",
           "STYLESYNC_FAULT_MARKER": str(d / "fault-marker")}
    catalog = Path(p.paths.models) / "personal" / "catalog.parquet"

    _, first_s, orphans = run_to_completion(d, argv, env=env, name="first")
    assert not orphans
    first = {r["identity"]: r for r in pq.read_table(catalog).to_pylist()}
    assert first["person0"]["status"] == "ok", first
    assert first["person1"]["status"] == "failed" and first["person1"]["reason"].startswith("out of memory: "), first
    assert "CUDA out of memory" in first["person1"]["reason"], first["person1"]["reason"]
    assert first["person2"]["status"] == "failed" and first["person2"]["reason"].startswith("out of memory: "), first
    assert "MemoryError" in first["person2"]["reason"], first["person2"]["reason"]
    assert not Path(personal_dir(p, "person1")).exists() and not Path(personal_dir(p, "person2")).exists()

    _, rerun_s, orphans = run_to_completion(d, argv, env=env, name="rerun")  # markers exist: no fault now
    assert not orphans
    second = {r["identity"]: r for r in pq.read_table(catalog).to_pylist()}
    assert {k: v["status"] for k, v in second.items()} == {"person0": "skipped", "person1": "ok", "person2": "ok"}
    for ident in second:
        load_personal_of(p, personal_dir(p, ident))
    record(f"OOM in one personalization task ({executor} executor)", 2, "pass", time.time() - t_case,
           reasons={k: first[k]["reason"] for k in ("person1", "person2")}, first_s=round(first_s, 1),
           rerun_s=round(rerun_s, 1), rerun_statuses={k: v["status"] for k, v in second.items()})
