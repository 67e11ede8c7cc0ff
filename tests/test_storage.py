"""Storage paths as URIs: the storage helpers, shards, the loader, models and training on object storage.

Fast tests use fsspec's memory:// filesystem (one process). The slow test runs the real stages on
Ray against a moto S3 server on loopback (`s3server.py`) and compares every output with a local run.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import uuid
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load as load_safetensors

from stylesync import storage
from stylesync.config import LoaderConfig, SourceConfig
from stylesync.data.build_shards import build_shards
from stylesync.data.loader import iter_clips, make_loader, training_pipeline
from stylesync.data.manifest import read_manifest, write_manifest
from stylesync.data.shards import ShardStore
from stylesync.models.checkpoint import CheckpointError, read_model
from stylesync.models.generator import StyleSyncGenerator
from stylesync.models.syncnet import ExpertSyncNet
from stylesync.models.store import load_generator, load_syncnet, save_generator, save_syncnet

from conftest import tiny_generator_config
from helpers import params_for, shard_urls, small_corpus, tiny_params


def tree_bytes(root: str, pattern: str = "shard-") -> dict[str, bytes]:
    """relative path -> bytes of every file under root (local or URI) whose name contains `pattern`."""
    return {rel: storage.read_bytes(storage.join(root, rel)) for rel in storage.find(root) if pattern in rel.rsplit("/", 1)[-1]}


@pytest.fixture
def mem():
    root = f"memory://stylesync-{uuid.uuid4().hex[:8]}"
    yield root
    storage.remove(root, recursive=True)


@pytest.fixture(scope="module")
def local_run(small_shards):
    """A small corpus, its manifest and its shards built locally (the reference)."""
    return params_for(small_shards)


# ------------------------------------------------------------------------------ helpers
def test_io_helpers_on_memory(mem, tmp_path):
    f = storage.join(mem, "a", "b.json")
    assert f == f"{mem}/a/b.json" and storage.join(str(tmp_path), "a") == str(tmp_path / "a")
    storage.write_json(f, {"x": 1})
    assert storage.exists(f) and storage.read_json(f) == {"x": 1} and storage.find(mem) == ["a/b.json"]
    assert storage.glob(mem, "a/*.json") == [f] and storage.parent(f) == f"{mem}/a"
    storage.atomic_write_bytes(f, b"new")  # a whole-object PUT replaces the old content
    assert storage.read_bytes(f) == b"new" and storage.size(f) == 3
    # a directory: files, then the marker; replacing it drops files the new version lacks
    d = storage.join(mem, "model")
    with storage.atomic_dir(d) as tmp:
        (tmp / "config.json").write_text("{}")
        (tmp / "old.bin").write_bytes(b"1")
    assert storage.dir_complete(d) and storage.find(d) == [".complete", "config.json", "old.bin"]
    with storage.atomic_dir(d) as tmp:
        (tmp / "config.json").write_text('{"v": 2}')
    assert storage.find(d) == [".complete", "config.json"]
    with storage.local_dir(d) as local:
        assert sorted(p.name for p in local.iterdir()) == ["config.json"]
    with pytest.raises(RuntimeError), storage.atomic_dir(storage.join(mem, "failed")) as tmp:
        (tmp / "x").write_text("x")
        raise RuntimeError("interrupted")
    assert not storage.exists(storage.join(mem, "failed", "x")) and not storage.dir_complete(storage.join(mem, "failed"))
    storage.remove(storage.join(mem, "a"), recursive=True)
    assert not storage.exists(f)
    # clear errors for protocols whose package is missing or that do not exist
    with pytest.raises(storage.StorageError, match="gcsfs"):
        storage.exists("gs://bucket/x")
    with pytest.raises(storage.StorageError, match="unknown storage protocol"):
        storage.exists("nosuchfs://bucket/x")


@pytest.fixture(params=["local", "memory", "s3"])
def any_root(request, tmp_path):
    """A storage root on local disk, on memory:// and on S3 (moto); '[1]' because a root is
    taken literally, never as a glob pattern."""
    if request.param == "local":
        yield str(tmp_path / "root[1]")
    elif request.param == "memory":
        root = f"memory://stylesync-{uuid.uuid4().hex[:8]}/root[1]"
        yield root
        storage.remove(root, recursive=True)
    else:
        yield f"{request.getfixturevalue('s3')}/root[1]"


def test_one_code_path_serves_local_and_remote_roots(any_root):
    """The same helpers give the same results on a local path, memory:// and S3: each resolves the
    path to an fsspec filesystem once; only committing (rename or PUT + marker) differs."""
    assert isinstance(storage.filesystem(any_root)[0], fsspec.AbstractFileSystem)
    f, b, t = storage.join(any_root, "a", "b.json"), storage.join(any_root, "a", "c.bin"), storage.join(any_root, "t.parquet")
    storage.write_json(f, {"x": 1})
    storage.atomic_write_bytes(b, b"old")
    storage.atomic_write_bytes(b, b"abc")
    storage.write_parquet(pa.table({"k": [1, 2]}), t)
    assert storage.exists(f) and storage.isdir(storage.join(any_root, "a")) and not storage.exists(storage.join(any_root, "nothing"))
    assert storage.read_json(f) == {"x": 1} and storage.read_bytes(b) == b"abc" and storage.size(b) == 3
    assert storage.find(any_root) == ["a/b.json", "a/c.bin", "t.parquet"] and storage.find(storage.join(any_root, "nothing")) == []
    assert storage.glob(any_root, "a/*.json") == [f] and storage.parent(f) == storage.join(any_root, "a")
    assert storage.read_parquet(t).to_pydict() == {"k": [1, 2]}
    assert storage.file_sha256(b) == hashlib.sha256(b"abc").hexdigest()
    with storage.open_file(b) as fh:
        assert fh.read() == b"abc"
    with storage.local_file(b) as copy:
        assert Path(copy).read_bytes() == b"abc"
    d = storage.join(any_root, "model")
    for version in ("1", "2"):
        with storage.atomic_dir(d) as tmp:
            (tmp / "config.json").write_text(version)
            (tmp / f"only-in-{version}").write_text(version)
    assert storage.dir_complete(d) and not storage.dir_complete(storage.join(any_root, "nothing"))
    with storage.local_dir(d) as local:
        assert sorted(p.name for p in local.iterdir()) == ["config.json", "only-in-2"]
    storage.remove(storage.join(any_root, "a"), recursive=True)
    storage.remove(t)
    storage.remove(storage.join(any_root, "nothing"))
    assert [r for r in storage.find(any_root) if not r.endswith(storage.COMPLETE)] == ["model/config.json", "model/only-in-2"]


def test_local_paths_resolve_to_fsspec_local_filesystem(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fs, p = storage.filesystem("rel/x")
    assert storage.is_local(fs) and p == f"{tmp_path}/rel/x"
    storage.atomic_write_bytes("rel/a::b", b"1")  # '::' in a local name is no fsspec URL chaining
    assert storage.read_bytes(f"file://{tmp_path}/rel/a::b") == b"1" and storage.find("rel") == ["a::b"]
    assert storage.child_path("rel", "../x y") == tmp_path / "rel" / "_x_y"


# ------------------------------------------------------------------------------ shards
def test_shards_on_memory_are_exactly_once_resumable_and_match_local(local_run, mem, tmp_path, monkeypatch):
    q = params_for(tmp_path)
    q.paths.manifest, q.paths.shards = storage.join(mem, "manifest.parquet"), storage.join(mem, "shards")
    q.manifest.sources = [SourceConfig("synthetic", str(Path(local_run.paths.manifest).parent / "raw"))]  # data root
    write_manifest(read_manifest(local_run.paths.manifest), q.paths.manifest)
    expected = tree_bytes(local_run.paths.shards)
    # an interrupted run: the process dies right after the first shard is assembled
    real = ShardStore.assemble
    calls = []

    class Killed(Exception):
        pass

    def dying(self, plan):
        if calls:
            raise Killed()
        calls.append(plan.name)
        return real(self, plan)

    monkeypatch.setattr(ShardStore, "assemble", dying)
    with pytest.raises(Killed):
        build_shards(q, executor="local")
    files = storage.find(q.paths.shards)
    assert [r for r in files if r.endswith(".tar") and not r.startswith(".staging/")] == [f"{calls[0]}.tar"]
    assert any(r.startswith(".staging/") for r in files)  # staged clips wait for their shard's assembly
    monkeypatch.setattr(ShardStore, "assemble", real)
    s = build_shards(q, executor="local")
    assert s["clips_processed_this_run"] < 7  # the staged clips were not processed again
    assert tree_bytes(q.paths.shards) == expected  # same names, same bytes as the local run
    index = storage.read_parquet(storage.join(q.paths.shards, "index.parquet"))
    assert index.equals(pq.read_table(Path(local_run.paths.shards) / "index.parquet"))
    assert len(set(index.column("clip_id").to_pylist())) == index.num_rows
    assert not any(r.startswith(".staging/") for r in storage.find(q.paths.shards))
    assert build_shards(q, executor="local")["clips_processed_this_run"] == 0


def test_shard_plan_change_clears_an_object_store(mem):
    store = ShardStore(storage.join(mem, "shards"))
    assert store.ensure_plan("a", 2) is False
    storage.atomic_write_bytes(store.path("train/shard-000000.tar"), b"old")
    storage.atomic_write_bytes(store.path(".staging/train/shard-000001/000000.tar"), b"old")
    assert store.ensure_plan("a", 2) is False and len(storage.find(store.root)) == 3
    assert store.ensure_plan("b", 1) is True
    assert storage.find(store.root) == ["plan.json"] and storage.read_json(store.path("plan.json"))["fingerprint"] == "b"


def test_loader_reads_shards_from_uris(local_run, mem):
    for rel, data in tree_bytes(local_run.paths.shards).items():
        storage.atomic_write_bytes(storage.join(mem, rel), data)
    urls = shard_urls(mem, "train")
    local = sorted(p.relative_to(local_run.paths.shards).as_posix() for p in Path(local_run.paths.shards).glob("train/*.tar"))
    assert urls == [f"{mem}/{rel}" for rel in local] and len(urls) >= 1
    cfg = LoaderConfig(batch_size=3, windows_per_clip=2, shuffle_buffer=4, workers=0)

    def first_batches(root):
        loader = make_loader(training_pipeline(shard_urls(root, "train"), cfg, size=32, seed=2, skip_batches=1), 0)
        return list(itertools.islice(iter(loader), 2))

    for a, b in zip(first_batches(mem), first_batches(local_run.paths.shards)):
        assert a["clip_id"] == b["clip_id"] and torch.equal(a["target"], b["target"]) and torch.equal(a["mel"], b["mel"])
    got = [(m["clip_id"], f.shape) for m, f, _ in iter_clips(shard_urls(mem, "test"))]
    assert got == [(m["clip_id"], f.shape) for m, f, _ in iter_clips(shard_urls(local_run.paths.shards, "test"))]
    with pytest.raises(FileNotFoundError, match="no shards"):
        shard_urls(storage.join(mem, "nothing"), "train")


# ------------------------------------------------------------------------------ models
def test_models_round_trip_on_memory(mem, tiny_scfg):
    torch.manual_seed(0)
    g = StyleSyncGenerator(tiny_generator_config())
    from stylesync.config import FaceConfig

    d = storage.join(mem, "models", "backbone", "generator")
    assert save_generator(d, g, FaceConfig(), {"step": 3}) == d
    assert storage.find(d) == [".complete", "config.json", "model.safetensors"]
    back, face, meta = load_generator(d)
    assert meta["step"] == 3 and face == FaceConfig()
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in g.state_dict().items() if not k.startswith("delta_p."))
    # the weights are checked against the hash in config.json (written last)
    w = storage.join(d, "model.safetensors")
    data = bytearray(storage.read_bytes(w))
    data[-10] ^= 0xFF
    storage.atomic_write_bytes(w, bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        read_model(d)
    with pytest.raises(CheckpointError, match="missing"):
        read_model(storage.join(mem, "models", "nothing"))
    net = ExpertSyncNet(tiny_scfg)
    save_syncnet(storage.join(mem, "models", "syncnet"), net)
    loaded = load_syncnet(storage.join(mem, "models", "syncnet"))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in net.state_dict().items())


# ------------------------------------------------------------------------------ S3 (moto), the real stages
@pytest.fixture
def s3():
    pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    from s3server import moto_s3

    with moto_s3("stylesync-test") as endpoint:
        yield "s3://stylesync-test"


def _tensors(path: str) -> dict[str, torch.Tensor]:
    return load_safetensors(storage.read_bytes(path))


@pytest.mark.slow
def test_pipeline_on_s3_matches_local(s3, tmp_path, monkeypatch):
    """Raw clips, manifest, shards (Ray Data), runs (Ray Train, expert SyncNet), models and
    personalization (Ray tasks) on S3; the same stages locally give the same bytes and weights."""
    import fsspec

    from stylesync.config import ManifestConfig, RayConfig
    from stylesync.data.manifest import build_manifest
    from stylesync.runtime.ray_session import ray_session
    from stylesync.stages.train_backbone import train_backbone
    from stylesync.train.backbone import run_name
    from stylesync.stages.personalize import run_catalog
    from stylesync.stages.train_syncnet import train_syncnet

    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    small_corpus(tmp_path / "raw")
    fs = fsspec.filesystem("s3")
    fs.put(str(tmp_path / "raw") + "/", "stylesync-test/raw/", recursive=True)
    remote = params_for(tmp_path / "remote")
    remote.paths.manifest, remote.paths.shards = f"{s3}/manifest.parquet", f"{s3}/shards"
    table = build_manifest(ManifestConfig(sources=[SourceConfig("synthetic", f"{s3}/raw")], workers=2))
    assert all(p.startswith(f"{s3}/raw/") for p in table.column("path").to_pylist())
    write_manifest(table, remote.paths.manifest)
    local = params_for(tmp_path / "local")
    local.paths.manifest = remote.paths.manifest  # the same manifest (clips on S3), shards on disk

    with ray_session(RayConfig(num_cpus=2)):
        build_shards(remote, executor="ray")  # Ray workers read the clips from and write shards to S3
        build_shards(local, executor="local")
        assert tree_bytes(remote.paths.shards) == tree_bytes(local.paths.shards) != {}
        assert storage.read_parquet(f"{s3}/shards/index.parquet").equals(pq.read_table(Path(local.paths.shards) / "index.parquet"))

        def training(shards: str, out: Path, models: str, runs: str):
            p = tiny_params(tmp_path, out)  # metrics, plots and MLflow stay local
            p.paths.shards, p.paths.models, p.paths.runs = shards, models, runs
            p.personalize.epochs, p.personalize.train_clips, p.personalize.loader.shuffle_buffer = 0.5, 1, 4
            p.personalize.num_cpus = 1
            train_syncnet(p)
            metrics = train_backbone(p)
            return p, metrics

        rp, rm = training(remote.paths.shards, tmp_path / "r", f"{s3}/models", f"{s3}/runs")
        lp, lm = training(local.paths.shards, tmp_path / "l", str(tmp_path / "l" / "models"), str(tmp_path / "l" / "runs"))
        assert rm["steps"] == lm["steps"] == 4
        objects = set(storage.find(s3))
        assert {"models/syncnet/model.safetensors", "models/backbone/generator/model.safetensors",
                "models/backbone/discriminator/config.json", "models/backbone/mlflow_run_id.txt"} <= objects
        assert any(o.startswith(f"runs/{run_name(rp)}/checkpoint_") for o in objects)  # Ray Train storage
        assert any(o.startswith("runs/syncnet-") and o.endswith("/state.pt") for o in objects)
        for part in ("syncnet", "backbone/generator", "backbone/discriminator"):
            a = _tensors(f"{s3}/models/{part}/model.safetensors")
            b = _tensors(str(tmp_path / "l" / "models" / part / "model.safetensors"))
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
        # personalization: Ray tasks write the personal models to S3
        pm = run_catalog(rp, executor="ray")
        assert pm["ok"] >= 1 and pm["failed"] == 0, pm
        catalog = storage.read_parquet(f"{s3}/models/personal/catalog.parquet").to_pylist()
        for row in catalog:
            d = f"{s3}/models/personal/{storage.safe_name(row['identity'])}"
            assert storage.dir_complete(d) and read_model(d, kind="personal_delta")[1]["identity"] == row["identity"]
    json.dumps(pm)  # the metrics stay plain data


def test_atomic_writes_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        storage.atomic_write_bytes(tmp_path / "m.json", b"{}")
        with storage.atomic_dir(tmp_path / "model") as d:
            (d / "w.bin").write_bytes(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o755  # not mkdtemp's 0700
