"""Storage faults of preprocessing: the disk fills up mid-run, and shards corrupted after writing.

Disk full, for real: the output folder is a small tmpfs mounted in a private mount namespace
(`unshare --mount`, needs CAP_SYS_ADMIN, i.e. root here; skipped otherwise), so writes fail with
ENOSPC exactly where a full disk makes them fail. The run must fail with an error that says so,
leave every finished shard intact (its checksum holds) and an earlier metrics file untouched; after
"freeing space" (remount bigger) the rerun completes with the shards of a clean run. Then the same
output remounted read-only (root ignores chmod, so a read-only mount stands for an unwritable
folder): a rerun fails naming the file it could not write, and nothing changes. A second variant
that runs anywhere makes the shard writer raise ENOSPC in-process.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import (  # noqa: F401 (fixtures)
    SUITE, Driver, fault_corpus, litter, record, shard_bytes, stage_params, write_params,
)

pytestmark = SUITE


def _can_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


def _finished_shards_intact(shards: Path) -> tuple[int, list[str]]:
    """(number of finished shards, problems): every tar with a meta matches its checksum; no tar
    without a meta (a shard is finished iff both exist, meta first)."""
    from stylesync.data.shards import ShardPlan, ShardStore

    store, problems, n = ShardStore(shards), [], 0
    for tar in sorted(shards.glob("*/shard-*.tar")):
        split, idx = tar.parent.name, int(tar.stem.split("-")[1])
        plan = ShardPlan(split, idx, ())
        if not Path(store.meta_path(plan)).exists():
            problems.append(f"{tar.name}: tar without meta")
            continue
        reason = store.verify(plan)
        n += 1
        if reason:
            problems.append(f"{split}/{tar.name}: {reason}")
    return n, problems


def test_disk_full_during_preprocessing_tmpfs(fault_corpus, tmp_path):
    if not _can_mount():
        pytest.skip("needs root with CAP_SYS_ADMIN for a tmpfs in a private mount namespace")
    t_case = time.time()
    reference = shard_bytes(fault_corpus / "shards")
    mnt, full_copy, done_copy, ro_copy = (tmp_path / n for n in ("mnt", "after-enospc", "after-rerun", "after-ro"))
    for x in (mnt, full_copy, done_copy, ro_copy):
        x.mkdir()
    p = stage_params(fault_corpus, tmp_path)
    p.paths.shards, p.paths.metrics = str(mnt / "shards"), str(mnt / "metrics")
    pf = write_params(p, tmp_path / "params.yaml")
    old_metrics = b'{"from": "an earlier run"}\n'
    total = sum(len(b) for b in reference.values())
    small_k = int(total * 0.85) // 1024  # room for a shard or two and the staging of some clips, not all
    py = f"{sys.executable} -m stylesync preprocess --params {pf}"
    script = f"""set -u
mount -t tmpfs -o size={small_k}k tmpfs {mnt}
mkdir -p {mnt}/metrics && printf '%s' '{old_metrics.decode().strip()}' > {mnt}/metrics/preprocess.json
echo >> {mnt}/metrics/preprocess.json
{py} > {tmp_path}/full.log 2>&1; echo $? > {tmp_path}/rc-full
cp -a {mnt}/. {full_copy}/
mount -o remount,size=64m {mnt}
{py} > {tmp_path}/rerun.log 2>&1; echo $? > {tmp_path}/rc-rerun
cp -a {mnt}/. {done_copy}/
mount -o remount,ro {mnt}
{py} > {tmp_path}/readonly.log 2>&1; echo $? > {tmp_path}/rc-readonly
cp -a {mnt}/. {ro_copy}/
"""
    d = Driver(tmp_path, [], cmd=["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
               name="unshare").start()
    d.wait(600)
    orphans = d.cleanup(grace=10)
    rc_full, rc_rerun = int((tmp_path / "rc-full").read_text()), int((tmp_path / "rc-rerun").read_text())
    log = (tmp_path / "full.log").read_text()
    assert rc_full != 0, log[-3000:]
    last = [ln for ln in log.splitlines() if ln.strip()][-1]
    assert "No space left on device: '" in last and str(mnt) in last, log[-3000:]  # names the file
    n_done, problems = _finished_shards_intact(full_copy / "shards")
    assert not problems, problems
    assert (full_copy / "metrics" / "preprocess.json").read_bytes() == old_metrics  # untouched
    assert not (full_copy / "shards" / "index.parquet").exists()
    assert rc_rerun == 0, (tmp_path / "rerun.log").read_text()[-3000:]
    assert shard_bytes(done_copy / "shards") == reference
    assert json.loads((done_copy / "metrics" / "preprocess.json").read_text())["clips_ok"] == 10
    # 3. the same output remounted read-only: the rerun fails naming the file, nothing changes
    ro_log = (tmp_path / "readonly.log").read_text()
    ro_last = [ln for ln in ro_log.splitlines() if ln.strip()][-1]
    assert int((tmp_path / "rc-readonly").read_text()) != 0 and "Read-only file system: '" in ro_last, ro_log[-3000:]
    assert shard_bytes(ro_copy / "shards") == reference
    assert (ro_copy / "metrics" / "preprocess.json").read_bytes() == (done_copy / "metrics" / "preprocess.json").read_bytes()
    record("disk full (tmpfs, ENOSPC) then read-only output, preprocess", 3, "pass", time.time() - t_case,
           tmpfs_kib=small_k, error_last_line=last[-300:], readonly_last_line=ro_last[-300:],
           finished_shards_before_full=n_done, litter_after_enospc=litter(full_copy / "shards"), orphans=orphans)


def test_disk_full_in_process_writer(fault_corpus, tmp_path, monkeypatch):
    """The shard writer raises ENOSPC for the third shard: the run stops with that error, the two
    finished shards verify, and a rerun completes identically."""
    from stylesync.data import shards as shards_mod
    from stylesync.data.build_shards import build_shards

    t_case = time.time()
    reference = shard_bytes(fault_corpus / "shards")
    p = stage_params(fault_corpus, tmp_path)
    p.paths.shards, p.paths.metrics = str(tmp_path / "shards"), str(tmp_path / "metrics")
    real, tars = shards_mod.atomic_write_bytes, []

    def full_disk(path, data):
        if str(path).endswith(".tar") and ".staging" not in str(path):
            tars.append(path)
            if len(tars) == 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    monkeypatch.setattr(shards_mod, "atomic_write_bytes", full_disk)
    with pytest.raises(OSError, match="No space left on device") as e:
        build_shards(p, executor="local")
    assert e.value.errno == errno.ENOSPC and e.value.filename.endswith(".tar")
    n_done, problems = _finished_shards_intact(tmp_path / "shards")
    assert n_done == 2 and not problems, problems
    monkeypatch.setattr(shards_mod, "atomic_write_bytes", real)
    s = build_shards(p, executor="local")
    assert shard_bytes(tmp_path / "shards") == reference and s["clips_ok"] == 10
    record("disk full (writer raises ENOSPC, in-process)", 2, "pass", time.time() - t_case,
           finished_shards_before_full=n_done, reprocessed_on_rerun=s["clips_processed_this_run"])


def test_corrupted_shards_are_detected_and_rebuilt(fault_corpus, tmp_path, caplog):
    import logging

    from stylesync.data.build_shards import build_shards

    t_case = time.time()
    reference = shard_bytes(fault_corpus / "shards")
    out = tmp_path / "shards"
    shutil.copytree(fault_corpus / "shards", out)
    flipped, cut = out / "train" / "shard-000000.tar", out / "test" / "shard-000001.tar"
    data = bytearray(flipped.read_bytes())
    for i in (1000, 40_000, 90_000):
        data[i] ^= 0xFF  # bytes flipped inside samples (sizes unchanged)
    flipped.write_bytes(bytes(data))
    cut.write_bytes(cut.read_bytes()[:100_000])
    p = stage_params(fault_corpus, tmp_path)
    p.paths.shards, p.paths.metrics = str(out), str(tmp_path / "metrics")
    with caplog.at_level(logging.WARNING, logger="stylesync.data.build_shards"):
        s = build_shards(p, executor="local")
    msgs = [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()]
    assert any("train/shard-000000 is corrupt (sha256 differs" in m for m in msgs), msgs
    assert any("test/shard-000001 is corrupt" in m and "truncated" in m for m in msgs), msgs
    assert s["shards_rebuilt"] == 2 and s["clips_processed_this_run"] == 6
    assert shard_bytes(out) == reference
    record("shard corrupted after writing (bytes flipped / truncated)", 1, "pass", time.time() - t_case,
           messages=msgs, reprocessed_clips=s["clips_processed_this_run"])
