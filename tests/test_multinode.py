"""Several Ray nodes on one machine (`ray.cluster_utils.Cluster`): a head that runs only the driver
and two 1-CPU worker nodes. A worker node is killed in the middle of preprocessing and of a 2-worker
DDP training run (its processes SIGKILLed, as when a machine is lost); a fresh node joins, as an
autoscaler would bring one. Preprocessing must end with exactly the shards of a clean run, training
must resume from its last checkpoint and end at the target step with the weights of an
uninterrupted run.
"""
from __future__ import annotations

import concurrent.futures as cf
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from stylesync.data.build_shards import build_shards

from helpers import params_for, shard_bytes, tiny_params, with_expert, write_small_manifest

NODE = dict(num_cpus=1, object_store_memory=100 * 1024 ** 2)


@pytest.fixture
def cluster(monkeypatch):
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args=dict(num_cpus=0, object_store_memory=100 * 1024 ** 2,
                                                          include_dashboard=False))
    workers = [c.add_node(**NODE) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, include_dashboard=False, log_to_driver=False)
    try:
        yield c, workers
    finally:
        ray.shutdown()
        c.shutdown()


def run_and_kill(cluster, node, fn, ready, replace: bool, timeout: float = 480.0):
    """Run `fn()` in a thread; when `ready()` first returns a note, SIGKILL the processes of `node`
    (from this, the main thread: Ray's node helpers use signals) and, if `replace`, start a fresh
    node. Returns (fn's result or exception, the note, seconds from start to the kill)."""
    t0 = time.time()
    killed_after, note = None, None
    with cf.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(fn)
        while not fut.done():
            if killed_after is None:
                note = ready()
                if note:
                    cluster.remove_node(node, allow_graceful=False)
                    killed_after = time.time() - t0
                    if replace:
                        cluster.add_node(**NODE)
            if time.time() - t0 > timeout:
                raise TimeoutError(f"{fn} still running after {timeout:.0f} s")
            time.sleep(0.05)
        try:
            return fut.result(), note, killed_after
        except Exception as e:  # noqa: BLE001 - the caller decides (a stage that gives up is rerun)
            return e, note, killed_after


def train_worker_actors() -> int:
    """Ray Train worker actors created so far in the cluster (each worker-group start adds N)."""
    from ray._private import state

    return sum("RayTrainWorker" in str(a.get("ActorClassName", "")) for a in state.actors().values())


def _corpus(tmp: Path):
    p = params_for(tmp)
    write_small_manifest(tmp, p, n=9)
    return p


@pytest.mark.slow
def test_preprocess_survives_a_lost_node_exactly_once(cluster, tmp_path):
    c, (w1, _) = cluster
    clean = _corpus(tmp_path / "clean")
    build_shards(clean, executor="local")
    expected = shard_bytes(Path(clean.paths.shards))

    p = params_for(tmp_path / "run")
    p.paths.manifest = clean.paths.manifest
    p.manifest.sources = clean.manifest.sources
    shards = Path(p.paths.shards)

    def first_staged():  # the middle: clips are being staged, no shard is finished yet
        staged = list((shards / ".staging").rglob("*.tar")) if (shards / ".staging").exists() else []
        return f"{len(staged)} clips staged" if staged else None

    # the tasks of the lost node are retried on the other one (no replacement node needed)
    out, note, killed_after = run_and_kill(c, w1, lambda: build_shards(p, executor="ray"), first_staged, replace=False)
    assert killed_after is not None, "the node was never killed"
    if not isinstance(out, dict):  # the run gave up: the rerun finishes the work
        out = build_shards(p, executor="ray")
    assert out["clips_in"] == 9
    assert shard_bytes(shards) == expected  # same names, same bytes as the clean run
    index = pq.read_table(shards / "index.parquet").to_pylist()
    assert len(index) == len({r["clip_id"] for r in index}) == len(pq.read_table(Path(clean.paths.shards) / "index.parquet"))
    assert not (shards / ".staging").exists() or not any((shards / ".staging").rglob("*.tar"))


@pytest.fixture(scope="module")
def corpus(small_shards) -> Path:
    return small_shards


def _ddp_params(corpus: Path, out: Path):
    p = tiny_params(corpus, out)
    t = p.train
    t.num_workers, t.cpus_per_worker, t.steps, t.checkpoint_every, t.max_failures = 2, 1, 12, 3, 3
    t.image_every = 0
    p.tracking.enabled = False
    with_expert(p)
    return p


@pytest.mark.slow
def test_ddp_training_resumes_after_a_lost_node(cluster, corpus, tmp_path):
    from stylesync.stages.train_backbone import train_backbone
    from stylesync.train.backbone import run_name

    c, (w1, _) = cluster
    straight = _ddp_params(corpus, tmp_path / "straight")
    m0 = train_backbone(straight)
    assert m0["steps"] == 12

    p = _ddp_params(corpus, tmp_path / "killed")
    run_dir = Path(p.paths.runs) / run_name(p)

    def checkpointed():  # the first checkpoint is stored; training goes on
        ckpts = sorted(run_dir.glob("checkpoint_*")) if run_dir.exists() else []
        return f"after {ckpts[0].name}" if ckpts else None

    before = train_worker_actors()
    m, note, killed_after = run_and_kill(c, w1, lambda: train_backbone(p), checkpointed, replace=True)
    assert killed_after is not None, "the node was never killed"
    if isinstance(m, Exception):
        raise m
    assert m["steps"] == 12
    assert train_worker_actors() - before >= 4  # 2 workers, then 2 more: the group restarted
    # resumed from the checkpoint: the history goes on from it (no step twice, none missing)
    assert [h["step"] for h in _history(p)] == list(range(1, 13))
    for part in ("generator", "discriminator"):
        a = load_file(str(tmp_path / "straight" / "models" / "backbone" / part / "model.safetensors"))
        b = load_file(str(tmp_path / "killed" / "models" / "backbone" / part / "model.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), part


def _history(p) -> list[dict]:
    import csv

    with open(Path(p.paths.plots) / "train.csv") as f:
        return [{"step": int(r["step"])} for r in csv.DictReader(f)]
