"""Personalization: one identity (delta storage, loading against the backbone hash), and the catalog
on Ray with failures (corrupt data, an injected exception, an impossible time limit) and a rerun."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch

from stylesync.models.delta import pack_delta, packed_bytes, unpack_delta
from stylesync.models.discriminator import Discriminator
from stylesync.models.generator import StyleSyncGenerator
from stylesync.models.syncnet import ExpertSyncNet
from stylesync.models.store import BackboneMismatch, save_discriminator, save_generator, save_syncnet
from stylesync.stages.personal_identity import personalize_identity
from stylesync.stages.personalize import run_catalog
from stylesync.train.catalog import default_catalog

from helpers import load_personal_of, make_personal_corpus, personal_dir, shard_urls, tiny_params


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_personal_corpus(tmp_path_factory.mktemp("personal"))


@pytest.fixture
def backbone(corpus, tmp_path):
    """A (randomly initialised) backbone, discriminator and expert in a fresh models dir."""
    p = tiny_params(corpus, tmp_path)
    p.personalize.epochs = 0.5
    p.personalize.train_clips = 1
    p.personalize.loader.batch_size = 2
    p.personalize.loader.shuffle_buffer = 4
    torch.manual_seed(0)
    models = Path(p.paths.models)
    save_generator(models / "backbone" / "generator", StyleSyncGenerator(p.model.generator), p.face)
    save_discriminator(models / "backbone" / "discriminator", Discriminator(p.model.discriminator))
    save_syncnet(models / "syncnet", ExpertSyncNet(p.model.syncnet))
    return p


def test_pack_delta_round_trip():
    torch.manual_seed(0)
    shifts = {"synthesis:convs:0:conv:weight": torch.randn(1, 16, 32, 3, 3) * 1e-3, "synthesis:to_rgb1:bias": torch.randn(1, 3, 1, 1)}
    mlp = {"0.weight": torch.randn(8, 8)}
    full, _ = unpack_delta(pack_delta(shifts, mlp, "float32"))
    assert torch.equal(full["synthesis:convs:0:conv:weight"], shifts["synthesis:convs:0:conv:weight"])
    half = pack_delta(shifts, mlp, "float16")
    assert packed_bytes(half) < packed_bytes(pack_delta(shifts, mlp, "float32"))
    low = pack_delta(shifts, mlp, "float16", rank=4)
    assert "delta_p/synthesis:convs:0:conv:weight.u" in low and packed_bytes(low) < packed_bytes(half)
    back, mlp_back = unpack_delta(low)
    assert back["synthesis:convs:0:conv:weight"].shape == (1, 16, 32, 3, 3) and torch.equal(mlp_back["0.weight"], mlp["0.weight"])


def held_out_scores(p, entry, G) -> dict:
    """Mean mouth PSNR/SSIM of generator G on the identity's held-out clips (self-reconstruction)."""
    import numpy as np

    from stylesync.data.loader import iter_clips
    from stylesync.data.sample import npy_load
    from stylesync.eval.protocol import generate, mean_scores, mouth_scores, prepare_clip
    from stylesync.face.mask import mask_tensor

    keep = set(entry.held_out[: p.personalize.eval_clips])
    mask = mask_tensor(G.size, p.face.mask)
    rows = []
    for meta, frames, sample in iter_clips(shard_urls(p.paths.shards, "test"), G.size):
        if meta["clip_id"] in keep:
            clip = prepare_clip(meta, frames, npy_load(sample["mel.npy"]).astype(np.float32), G.size, p.seed)
            rows.append(mouth_scores(generate(G, clip, mask), clip))
    assert len(rows) == len(keep)
    return mean_scores(rows)


def test_one_identity(backbone):
    from stylesync.models.store import load_generator

    p = backbone
    entry = default_catalog(p)[0]
    assert entry.clips and entry.held_out
    r = personalize_identity(p, entry)
    assert r["status"] == "ok" and r["steps"] >= 1 and r["delta_bytes"] > 0
    assert r["held_out_clips"] == min(len(entry.held_out), p.personalize.eval_clips)
    out = personal_dir(p, entry.identity)
    meta = json.loads((out / "config.json").read_text())
    assert meta["identity"] == entry.identity and meta["data"]["clips"] == entry.clips
    assert meta["backbone_sha256"] and meta["kind"] == "personal_delta"
    # loading = backbone + delta, and it is not the backbone any more
    P = load_personal_of(p, out)
    assert sum(s.abs().sum() for s in P.delta_p.shifts.values()) > 0
    # Ours-G vs Ours-P as reported: the backbone's and the saved personal model's scores on the held-out
    # clips, measured again here (P from disk: its Delta P stored in float16)
    base, _, _ = load_generator(Path(p.paths.models) / "backbone" / "generator")
    g_scores, p_scores = held_out_scores(p, entry, base.eval()), held_out_scores(p, entry, P)
    assert r["mouth_psnr_g"] == pytest.approx(g_scores["mouth_psnr"], abs=1e-6)
    assert r["mouth_ssim_g"] == pytest.approx(g_scores["mouth_ssim"], abs=1e-6)
    assert r["mouth_psnr_p"] == pytest.approx(p_scores["mouth_psnr"], abs=1e-4)
    assert r["mouth_ssim_p"] == pytest.approx(p_scores["mouth_ssim"], abs=1e-5)
    assert abs(p_scores["mouth_psnr"] - g_scores["mouth_psnr"]) > 1e-3  # (0.016 dB after 3 steps): P is not G
    G = StyleSyncGenerator(p.model.generator)
    # a second run with the same data and params keeps the result
    assert personalize_identity(p, entry)["status"] == "skipped"
    # another backbone: loading the delta is refused
    save_generator(Path(p.paths.models) / "backbone" / "generator", G, p.face)
    with pytest.raises(BackboneMismatch, match="trained from backbone"):
        load_personal_of(p, out)


def test_identity_names_cannot_escape(backbone):
    assert personal_dir(backbone, "../../etc/passwd").parent == (Path(backbone.paths.models) / "personal").resolve()
    assert personal_dir(backbone, "John Doe").name == "John_Doe"


def test_catalog_isolation_and_rerun(backbone, tmp_path, monkeypatch):
    p = backbone
    entries = default_catalog(p)
    ids = [e.identity for e in entries]
    assert len(ids) == 3
    extra = "id_extra"
    rows = [{"identity": e.identity, "clips": ";".join(e.clips), "time_limit_s": None} for e in entries]
    rows.append({"identity": extra, "clips": "synthetic/test/nope/clip/00000", "time_limit_s": None})  # corrupt data
    rows[1]["time_limit_s"] = 1e-6  # an impossible time limit
    cat = tmp_path / "catalog.csv"
    pacsv.write_csv(pa.Table.from_pylist(rows), str(cat))
    p.personalize.catalog = str(cat)
    monkeypatch.setenv("STYLESYNC_FAULT", f"personalize:{ids[0]}@1")  # an injected exception
    monkeypatch.setenv("STYLESYNC_FAULT_MARKER", str(tmp_path / "marker"))
    m = run_catalog(p, executor="ray")
    table = {r["identity"]: r for r in pq.read_table(Path(p.paths.models) / "personal" / "catalog.parquet").to_pylist()}
    assert m["failed"] == 3 and m["ok"] == len(ids) - 2
    assert "injected" in table[ids[0]]["reason"]
    assert "time limit" in table[ids[1]]["reason"]
    assert "no usable data" in table[extra]["reason"]
    ok_ids = [i for i in ids[2:]]
    assert all(table[i]["status"] == "ok" for i in ok_ids)
    # fix the data and the limit; the fault marker exists now, so the injected fault does not fire again
    rows[1]["time_limit_s"] = None
    rows[-1]["clips"] = ";".join(entries[0].clips)
    pacsv.write_csv(pa.Table.from_pylist(rows), str(cat))
    m2 = run_catalog(p, executor="ray")
    assert m2["failed"] == 0, m2["per_identity"]
    assert m2["skipped"] == len(ok_ids) and m2["ok"] == 3
    assert set(m2["per_identity"]) == set(ids) | {extra}
    assert m2["ours_g_vs_p"] is not None and set(m2["ours_g_vs_p"]) == {"mouth_psnr_g", "mouth_psnr_p", "mouth_ssim_g", "mouth_ssim_p"}


def test_requested_identities_that_are_unknown_are_named_and_fail_the_run(small_shards, tmp_path, monkeypatch, caplog):
    from types import SimpleNamespace

    import stylesync.stages.personalize as stage
    from stylesync.train.catalog import load_catalog

    p = tiny_params(small_shards, tmp_path)
    p.personalize.identities = ["nobody"]
    with pytest.raises(ValueError, match="nobody: unknown identity"):
        load_catalog(p)
    known = default_catalog(p)[0].identity
    p.personalize.identities = [known, "nobody"]
    entries, unknown = load_catalog(p)
    assert [e.identity for e in entries] == [known] and list(unknown) == ["nobody"]
    result = {"ok": 1, "skipped": 0, "failed": 1, "ours_g_vs_p": None,
              "per_identity": {known: {"status": "ok", "reason": ""},
                               "nobody": {"status": "failed", "reason": unknown["nobody"]}}}
    monkeypatch.setattr(stage, "run_catalog", lambda params, executor: result)
    assert stage.run(p, SimpleNamespace(executor="local")) == 1  # dvc repro must not take the stage as done
    assert any("nobody" in r.message and "unknown identity" in r.message for r in caplog.records)
    p.personalize.allow_partial = True
    assert stage.run(p, SimpleNamespace(executor="local")) == 0
