"""Detection logic behind the fault-injection suite (tests/faults/, slow): the fault hook, checkpoint
manifests and the fallback to an older checkpoint, shard checksums, the non-finite loss policy, the
manifest's data-root check."""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from stylesync.runtime import faults
from stylesync.config import ConfigError, DiscriminatorConfig, LossConfig, MaskConfig, OptimConfig, Params, load_params
from stylesync.models.checkpoint import CheckpointError
from stylesync.models.discriminator import Discriminator
from stylesync.models.generator import StyleSyncGenerator
from stylesync.face.mask import mask_tensor
from stylesync.train.checkpointing import (
    MANIFEST, load_latest_intact, load_training_state, save_training_state, verify_checkpoint,
)
from stylesync.train.step import NonFiniteLossError, StepModules, make_optimizers, train_step

from helpers import tiny_generator_config


# ------------------------------------------------------------------------------ the fault hook
def test_fault_specs_parse_and_fire_once(tmp_path, monkeypatch):
    assert faults.parse_faults("a@1;personalize:x y@2:oom") == [
        faults.FaultSpec("a", 1, "error"), faults.FaultSpec("personalize:x y", 2, "oom")]
    with pytest.raises(ValueError, match="bad spec 'a@x'"):
        faults.parse_faults("a@x")
    with pytest.raises(ValueError, match="bad spec"):
        faults.parse_faults("a@1:segfault")
    monkeypatch.setenv("STYLESYNC_FAULT", "p@2:oom;q@1:memory;r@1;s@1:enospc;loss@3:nan")
    monkeypatch.setenv("STYLESYNC_FAULT_MARKER", str(tmp_path / "m"))
    faults.maybe_fail("p", 1)  # not this count
    with pytest.raises(torch.OutOfMemoryError, match="out of memory"):
        faults.maybe_fail("p", 2)
    faults.maybe_fail("p", 2)  # once per marker
    with pytest.raises(MemoryError):
        faults.maybe_fail("q", 1)
    with pytest.raises(faults.InjectedFault):
        faults.maybe_fail("r", 1)
    with pytest.raises(OSError, match="No space left"):
        faults.maybe_fail("s", 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.0", "m.1", "m.2", "m.3"]
    assert faults.nan_fault("loss", 3) and faults.nan_fault("loss", 3)  # every time
    assert not faults.nan_fault("loss", 2)
    faults.maybe_fail("loss", 3)  # a nan spec never raises


# ------------------------------------------------------------------------------ checkpoints
def _modules(seed: int):
    torch.manual_seed(seed)
    g = StyleSyncGenerator(tiny_generator_config())
    d = Discriminator(DiscriminatorConfig(size=32, channel_multiplier=1, narrow=1 / 16))
    opt_g, opt_d = make_optimizers(g.parameters(), d.parameters(), OptimConfig(), 4)
    return {"G": g, "D": d}, {"opt_g": opt_g, "opt_d": opt_d}


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a["G"].state_dict()[k], b["G"].state_dict()[k]) for k in a["G"].state_dict())


def test_checkpoint_manifest_detects_truncation_and_flipped_bytes(tmp_path):
    mods, opts = _modules(0)
    save_training_state(tmp_path / "c", mods, opts, 7, {"history": [1]})
    manifest = json.loads((tmp_path / "c" / MANIFEST).read_text())
    assert set(manifest["files"]) == {"G.safetensors", "D.safetensors", "state.pt"} and manifest["step"] == 7
    assert verify_checkpoint(tmp_path / "c", ["G.safetensors"])
    fresh, fresh_opts = _modules(1)
    assert load_training_state(tmp_path / "c", fresh, fresh_opts) == (7, {"history": [1]}) and _same(mods, fresh)

    f = tmp_path / "c" / "G.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"G\.safetensors: \d+ bytes, manifest.json says \d+ \(truncated"):
        load_training_state(tmp_path / "c", *_modules(1))
    flipped = bytearray(data)
    flipped[-5] ^= 0xFF
    f.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match=r"G\.safetensors: sha256 differs"):
        load_training_state(tmp_path / "c", *_modules(1))
    f.unlink()
    with pytest.raises(CheckpointError, match="G.safetensors is missing"):
        load_training_state(tmp_path / "c", *_modules(1))


def test_checkpoint_without_manifest_loads_unverified_but_truncation_still_fails(tmp_path, caplog):
    mods, opts = _modules(0)
    save_training_state(tmp_path / "c", mods, opts, 3)
    (tmp_path / "c" / MANIFEST).unlink()  # as written before manifests existed
    with caplog.at_level(logging.WARNING):
        assert load_training_state(tmp_path / "c", *_modules(1))[0] == 3
    assert "loading it unverified" in caplog.text
    state = tmp_path / "c" / "state.pt"
    state.write_bytes(state.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="state.pt: unreadable"):
        load_training_state(tmp_path / "c", *_modules(1))


def test_fallback_to_the_newest_intact_checkpoint(tmp_path, caplog):
    old_mods, old_opts = _modules(0)
    save_training_state(tmp_path / "step2", old_mods, old_opts, 2)
    new_mods, new_opts = _modules(5)
    save_training_state(tmp_path / "step4", new_mods, new_opts, 4)
    st = tmp_path / "step4" / "state.pt"
    st.write_bytes(st.read_bytes()[:-100])  # the newest one cut short
    target, target_opts = _modules(9)
    with caplog.at_level(logging.WARNING):
        step, _, used = load_latest_intact([tmp_path / "step4", tmp_path / "step2"], target, target_opts)
    assert step == 2 and used == tmp_path / "step2" and _same(old_mods, target)
    assert "state.pt: " in caplog.text and "falling back" in caplog.text
    g = tmp_path / "step2" / "D.safetensors"
    g.write_bytes(g.read_bytes()[:10])
    with pytest.raises(CheckpointError, match="no intact checkpoint.*step4.*step2"):
        load_latest_intact([tmp_path / "step4", tmp_path / "step2"], *_modules(9))


# ------------------------------------------------------------------------------ shard checksums
def _store_with_one_shard(root: Path):
    from stylesync.data.shards import ShardPlan, ShardStore

    store = ShardStore(root)
    plan = ShardPlan("train", 0, ("c0", "c1"))
    for pos, clip in enumerate(plan.clip_ids):
        meta = {"clip_id": clip, "identity": "id0", "dataset": "synthetic", "n_frames": 3, "source": "x"}
        store.stage(plan, pos, {"__key__": f"k{pos}", "json": json.dumps(meta).encode(), "mel.npy": bytes(range(200))},
                    None)
    store.assemble(plan)
    return store, plan


def test_shard_checksum_detects_flipped_and_truncated_tars(tmp_path):
    store, plan = _store_with_one_shard(tmp_path / "s")
    meta = json.loads(Path(store.meta_path(plan)).read_text())
    tar = Path(store.tar_path(plan))
    assert meta["bytes"] == tar.stat().st_size and len(meta["sha256"]) == 64
    assert store.verify(plan) is None and store.drop_corrupt([plan]) == {}
    good = tar.read_bytes()
    flipped = bytearray(good)
    flipped[700] ^= 0x01
    tar.write_bytes(bytes(flipped))
    assert "sha256 differs" in store.verify(plan)
    tar.write_bytes(good[:1000])
    assert "truncated" in store.verify(plan)
    assert "truncated" in store.drop_corrupt([plan])[plan.name]
    assert not store.is_done(plan) and not tar.exists()  # its clips count as not processed any more


def test_shard_meta_of_an_older_version_is_adopted_only_if_the_tar_is_whole(tmp_path):
    store, plan = _store_with_one_shard(tmp_path / "s")
    mp, tar = Path(store.meta_path(plan)), Path(store.tar_path(plan))
    meta = json.loads(mp.read_text())
    legacy = {k: v for k, v in meta.items() if k not in ("sha256", "bytes")}
    mp.write_text(json.dumps(legacy))
    assert store.verify(plan) is None and json.loads(mp.read_text())["sha256"] == meta["sha256"]  # adopted
    mp.write_text(json.dumps(legacy))
    tar.write_bytes(tar.read_bytes()[:700])
    reason = store.verify(plan)
    assert reason is not None and ("unreadable tar" in reason or "samples differ" in reason), reason
    assert "sha256" not in json.loads(mp.read_text())  # a torn tar is not adopted


# ------------------------------------------------------------------------------ non-finite losses
def _step_setup():
    torch.manual_seed(0)
    g = StyleSyncGenerator(tiny_generator_config())
    d = Discriminator(DiscriminatorConfig(size=32, channel_multiplier=1, narrow=1 / 16))
    opt_g, opt_d = make_optimizers(g.parameters(), d.parameters(), OptimConfig(), 2)
    m = StepModules(g, d, opt_g, opt_d, mask_tensor(32, MaskConfig()), None, None, copy.deepcopy(g))
    b, t = 2, 5
    batch = {"target": torch.rand(b, t, 3, 32, 32), "reference": torch.rand(b, t, 3, 32, 32),
             "mel": torch.randn(b, t, 1, 80, 16), "sync_mel": torch.randn(b, 1, 80, 16)}
    return m, batch


def _snapshot(m: StepModules) -> list[torch.Tensor]:
    return [p.detach().clone() for mod in (m.G, m.D, m.g_ema) for p in mod.state_dict().values()]


def test_nan_policy_stop_names_the_step_and_the_term(monkeypatch):
    m, batch = _step_setup()
    monkeypatch.setenv("STYLESYNC_FAULT", "loss@3:nan")
    before = _snapshot(m)
    with pytest.raises(NonFiniteLossError, match=r"non-finite G loss at step 3: term\(s\) l1, g_total .*nan_policy: stop"):
        train_step(m, batch, 3, LossConfig(d_reg_every=2), OptimConfig())
    assert all(torch.equal(a, b) for a, b in zip(before, _snapshot(m)))  # nothing was updated
    with pytest.raises(ValueError, match="nan_policy must be one of"):
        train_step(m, batch, 0, LossConfig(), OptimConfig(), nan_policy="ignore")


def test_nan_policy_skip_drops_the_update_and_counts_it(monkeypatch):
    m, batch = _step_setup()
    monkeypatch.setenv("STYLESYNC_FAULT", "loss@1:nan")
    loss, optim = LossConfig(d_reg_every=2), OptimConfig()
    logs0 = train_step(m, batch, 0, loss, optim, nan_policy="skip")
    assert logs0["nonfinite_skipped"] == 0.0 and "d_loss" in logs0
    before = _snapshot(m)
    adam_before = copy.deepcopy(m.opt_g.state_dict()["state"])
    logs1 = train_step(m, batch, 1, loss, optim, nan_policy="skip")
    assert logs1 == {"nonfinite_skipped": 1.0}
    assert all(torch.equal(a, b) for a, b in zip(before, _snapshot(m)))  # G, D, EMA untouched
    assert all(torch.equal(v["exp_avg"], adam_before[k]["exp_avg"]) for k, v in m.opt_g.state_dict()["state"].items())
    logs2 = train_step(m, batch, 2, loss, optim, nan_policy="skip")
    assert logs2["nonfinite_skipped"] == 1.0 and "r1" in logs2
    assert any(not torch.equal(a, b) for a, b in zip(before, _snapshot(m)))  # training goes on


def test_nan_policy_is_validated(tmp_path):
    assert Params().train.nan_policy == "stop"
    with pytest.raises(ConfigError, match="train.nan_policy must be 'stop' or 'skip'"):
        load_params(None, ["train.nan_policy=ignore"])
    assert load_params(None, ["train.nan_policy=skip"]).train.nan_policy == "skip"


# ------------------------------------------------------------------------------ manifest data roots
def _manifest_rows(tmp: Path) -> list[dict]:
    base = {"dataset": "synthetic", "split": "train", "source_split": "dev", "identity": "id0", "video_id": "v",
            "audio_path": None, "landmarks_path": None, "probe_error": None, "has_audio": True}
    raw = tmp / "raw"
    return [dict(base, clip_id="ok", path=str(raw / "a.mp4"), landmarks_path=str(raw / "a.landmarks.npy")),
            dict(base, clip_id="dotdot", path=str(raw / ".." / ".." / "secret.mp4")),
            dict(base, clip_id="etc", path="/etc/passwd"),
            dict(base, clip_id="uri", path="s3://bucket/raw/a.mp4"),
            dict(base, clip_id="side", path=str(raw / "a.mp4"), audio_path="/root/.ssh/id_rsa")]


def _params(tmp: Path) -> Params:
    from stylesync.config import SourceConfig

    p = Params()
    p.paths.data, p.paths.raw = str(tmp / "data"), str(tmp / "data" / "raw")
    p.paths.manifest, p.paths.shards = str(tmp / "data" / "manifest.parquet"), str(tmp / "data" / "shards")
    p.manifest.sources = [SourceConfig("synthetic", str(tmp / "raw"))]
    return p


def test_manifest_paths_outside_the_data_roots_are_listed(tmp_path):
    from stylesync.data.roots import data_roots, outside_roots

    p = _params(tmp_path)
    roots = data_roots(p, p.paths.manifest)
    bad = outside_roots(_manifest_rows(tmp_path), roots)
    assert [(c, f) for c, f, _ in bad] == [("dotdot", "path"), ("etc", "path"), ("uri", "path"), ("side", "audio_path")]
    assert outside_roots([{"clip_id": "u", "path": "s3://bucket/raw/../raw/x.mp4"}], ["s3://bucket/raw"]) == []
    assert outside_roots([{"clip_id": "u", "path": "s3://bucket/raw2/x.mp4"}], ["s3://bucket/raw"]) != []
    assert outside_roots([{"clip_id": "r", "path": "data/raw/x.mp4"}], ["data"]) == []  # relative to the cwd


def test_build_shards_rejects_such_a_manifest_before_writing(tmp_path):
    from stylesync.data.build_shards import build_shards
    from stylesync.data.manifest import SCHEMA, write_manifest
    from stylesync.data.roots import ManifestRootError

    p = _params(tmp_path)
    rows = [{k: r.get(k) for k in SCHEMA.names} for r in _manifest_rows(tmp_path)]
    write_manifest(pa.Table.from_pylist(rows, schema=SCHEMA), p.paths.manifest)
    with pytest.raises(ManifestRootError, match=r"clip 'dotdot': path .*clip 'etc': path '/etc/passwd'.*Allowed roots"):
        build_shards(p, executor="local")
    assert not Path(p.paths.shards).exists()


# ------------------------------------------------------------------------------ writes, catalog
def test_a_failed_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    import errno
    import os

    from stylesync import storage as sio

    target = tmp_path / "out.json"
    target.write_bytes(b"old")

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sio.os, "fsync", no_space)
    with pytest.raises(OSError, match=r"No space left on device: '.*out\.json'") as e:
        sio.atomic_write_bytes(target, b"new")
    assert e.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp left


def test_identity_folder_clashes_and_out_of_memory_reasons(tmp_path):
    from stylesync.stages.personalize import _failure_reason
    from stylesync.train.catalog import folder_clashes
    from stylesync.train.personalize import CatalogEntry

    p = Params()
    p.paths.models = str(tmp_path / "models")
    entries = [CatalogEntry(i, []) for i in ("a/b", "a_b", "../x", "ok", "ok", "..")]
    clashes = folder_clashes(p, entries)
    assert set(clashes) == {"a/b", "a_b", "ok"}
    assert clashes["a/b"].startswith("identity folder clash: 'a/b', 'a_b' all map to ") and clashes["a/b"].endswith("a_b")
    assert _failure_reason(MemoryError("cannot allocate")) == "out of memory: MemoryError: cannot allocate"
    assert _failure_reason(torch.OutOfMemoryError("CUDA out of memory. Tried")).startswith(
        "out of memory: OutOfMemoryError: CUDA out of memory")
