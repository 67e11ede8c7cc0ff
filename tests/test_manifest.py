"""Manifest stage: layouts, probe fields, subsets, determinism, fsspec URIs, errors."""
from __future__ import annotations

import argparse
import dataclasses
import uuid
from fractions import Fraction
from pathlib import Path

import av
import fsspec
import numpy as np
import pytest

from stylesync.config import ManifestConfig, Params, PathsConfig, SourceConfig, TrackingConfig
from stylesync.data.manifest import (
    SCHEMA, UNKNOWN_IDENTITY, ManifestError, build_manifest, keep_fraction, list_clips, parse_lrw_txt,
    read_manifest, selection_key, write_manifest,
)
from stylesync.stages.manifest import run
from stylesync.video import write_video

from helpers import stage_runs

SR = 16000
LRW_TXT = "Text: ABOUT\nConf: 7\n\nDuration: 0.42 seconds\n"


def _frames(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (10, 32, 32, 3), dtype=np.uint8)


def _tone(seconds: float = 0.4) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def _write_m4a(path: Path, wav: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=SR)
        s.layout = "mono"
        for i in range(0, len(wav), 1024):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(wav[None, i : i + 1024]), format="flt", layout="mono")
            f.sample_rate, f.pts, f.time_base = SR, i, Fraction(1, SR)
            for pkt in s.encode(f):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def _put(dst: Path, data: bytes) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data)
    return dst


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("media")
    write_video(d / "a.mp4", _frames(0), fps=25.0, audio=_tone(), sample_rate=SR)
    write_video(d / "v.mp4", _frames(1), fps=25.0)
    _write_m4a(d / "a.m4a", _tone())
    return {"av": (d / "a.mp4").read_bytes(), "video": (d / "v.mp4").read_bytes(), "m4a": (d / "a.m4a").read_bytes(),
            "corrupt": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()}


@pytest.fixture(scope="module")
def trees(tmp_path_factory, media) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("raw")
    vox, lrw, syn = root / "vox", root / "lrw", root / "syn"
    _put(vox / "dev/mp4/id00001/vidA/00001.mp4", media["av"])
    _put(vox / "dev/mp4/id00001/vidA/00002.mp4", media["video"])  # audio only in the separate m4a
    _put(vox / "dev/aac/id00001/vidA/00002.m4a", media["m4a"])
    _put(vox / "dev/mp4/id00001/vidA/.00003.mp4.tmp99.mp4", media["av"])  # a partial write: skipped
    _put(vox / "test/mp4/id00017/01dfn2spqyE/00001.mp4", media["av"])
    _put(vox / "test/mp4/id 17 [odd]/v id/00001.mp4", media["corrupt"])
    _put(vox / "test/mp4/id00018/silent/00001.mp4", media["video"])
    for split in ("train", "test"):
        _put(lrw / f"lipread_mp4/ABOUT/{split}/ABOUT_00001.mp4", media["av"])
        _put(lrw / f"lipread_mp4/ABOUT/{split}/ABOUT_00001.txt", LRW_TXT.encode())
    _put(lrw / "lipread_mp4/ABOUT/val/ABOUT_00002.mp4", media["av"])  # no .txt: word from the directory
    for split, ident in (("dev", "id00000"), ("test", "id00001")):
        mp4 = _put(syn / f"{split}/mp4/{ident}/vid0/00000.mp4", media["av"])
        np.save(mp4.with_name("00000.landmarks.npy"), np.zeros((10, 68, 2), np.float32))
    return {"voxceleb2": vox, "lrw": lrw, "synthetic": syn}


def _cfg(*sources: tuple[str, Path | str], **kw) -> ManifestConfig:
    return ManifestConfig(sources=[SourceConfig(dataset=d, root=str(r)) for d, r in sources], workers=4, **kw)


def _by_id(table) -> dict[str, dict]:
    return {r["clip_id"]: r for r in table.to_pylist()}


def test_voxceleb2_rows(trees):
    t = build_manifest(_cfg(("voxceleb2", trees["voxceleb2"])))
    assert t.schema.names == SCHEMA.names and t.schema.types == SCHEMA.types
    ids = t.column("clip_id").to_pylist()
    assert ids == sorted(ids) and len(ids) == 5 and not any(".tmp" in i for i in ids)
    rows = _by_id(t)
    r = rows["voxceleb2/test/id00017/01dfn2spqyE/00001"]
    assert (r["dataset"], r["split"], r["source_split"], r["identity"], r["video_id"]) == (
        "voxceleb2", "test", "test", "id00017", "01dfn2spqyE")
    assert Path(r["path"]).is_file() and r["audio_path"] is None and r["landmarks_path"] is None
    assert (r["width"], r["height"], r["n_frames"], r["fps"]) == (32, 32, 10, 25.0)
    assert r["duration_s"] == pytest.approx(0.4, abs=0.05)
    assert (r["video_codec"], r["audio_codec"], r["has_audio"], r["probe_error"]) == ("h264", "aac", True, None)
    assert r["text"] is None and r["word_duration_s"] is None
    sep = rows["voxceleb2/dev/id00001/vidA/00002"]
    assert sep["split"] == "train" and sep["source_split"] == "dev"
    assert sep["audio_path"].endswith("dev/aac/id00001/vidA/00002.m4a") and Path(sep["audio_path"]).is_file()
    assert sep["has_audio"] and sep["audio_codec"] == "aac"
    silent = rows["voxceleb2/test/id00018/silent/00001"]
    assert not silent["has_audio"] and silent["audio_codec"] is None and silent["probe_error"] is None
    bad = rows["voxceleb2/test/id 17 [odd]/v id/00001"]  # names kept as they are
    assert bad["identity"] == "id 17 [odd]" and bad["video_id"] == "v id"
    assert bad["probe_error"] and bad["duration_s"] is None and bad["n_frames"] is None and not bad["has_audio"]


def test_lrw_rows(trees):
    t = build_manifest(_cfg(("lrw", trees["lrw"])))
    rows = _by_id(t)
    assert sorted(rows) == ["lrw/ABOUT/test/ABOUT_00001", "lrw/ABOUT/train/ABOUT_00001", "lrw/ABOUT/val/ABOUT_00002"]
    r = rows["lrw/ABOUT/test/ABOUT_00001"]
    assert (r["dataset"], r["split"], r["identity"], r["video_id"]) == ("lrw", "test", UNKNOWN_IDENTITY, "ABOUT")
    assert r["text"] == "ABOUT" and r["word_duration_s"] == pytest.approx(0.42)
    assert r["n_frames"] == 10 and r["has_audio"] and r["probe_error"] is None
    no_txt = rows["lrw/ABOUT/val/ABOUT_00002"]
    assert no_txt["text"] == "ABOUT" and no_txt["word_duration_s"] is None and no_txt["split"] == "val"
    # the root may also be lipread_mp4 itself
    assert build_manifest(_cfg(("lrw", trees["lrw"] / "lipread_mp4"))).column("clip_id").to_pylist() == sorted(rows)


def test_parse_lrw_txt():
    assert parse_lrw_txt("Text:  ABOUT \nConf:  3\nDuration: 0.500000 seconds\n") == ("ABOUT", 0.5)
    assert parse_lrw_txt("garbage") == (None, None)


def test_synthetic_rows(trees):
    rows = _by_id(build_manifest(_cfg(("synthetic", trees["synthetic"]))))
    assert set(rows) == {"synthetic/dev/id00000/vid0/00000", "synthetic/test/id00001/vid0/00000"}
    dev = rows["synthetic/dev/id00000/vid0/00000"]
    assert dev["split"] == "train" and dev["source_split"] == "dev" and dev["identity"] == "id00000"
    assert dev["landmarks_path"].endswith("00000.landmarks.npy") and np.load(dev["landmarks_path"]).shape == (10, 68, 2)
    assert rows["synthetic/test/id00001/vid0/00000"]["split"] == "test"


def test_deterministic_and_roundtrip(trees, tmp_path):
    cfg = _cfg(("voxceleb2", trees["voxceleb2"]), ("lrw", trees["lrw"]), ("synthetic", trees["synthetic"]))
    a, b = build_manifest(cfg), build_manifest(dataclasses.replace(cfg, workers=1))
    assert a.num_rows == 10 and a.equals(b)
    out = tmp_path / "sub" / "manifest.parquet"
    write_manifest(a, out)
    assert read_manifest(out).equals(a) and [p.name for p in out.parent.iterdir()] == ["manifest.parquet"]


def test_fraction_selection_on_names():
    keys = [f"voxceleb2/id{i:05d}/vid{j}" for i in range(400) for j in range(10)]
    kept = {k for k in keys if keep_fraction(k, 0.2)}
    assert 0.17 < len(kept) / len(keys) < 0.23
    assert kept == {k for k in keys if keep_fraction(k, 0.2)}  # deterministic
    assert {k for k in keys if keep_fraction(k, 0.1)} <= kept  # smaller fractions nest
    assert all(keep_fraction(k, 1.0) for k in keys) and not any(keep_fraction(k, 0.0) for k in keys)
    row = {"dataset": "voxceleb2", "identity": "id1", "video_id": "v", "clip_id": "voxceleb2/dev/id1/v/00001"}
    assert selection_key(row) == "voxceleb2/id1/v"
    assert selection_key({**row, "dataset": "lrw", "clip_id": "lrw/A/train/A_1"}) == "lrw/A/train/A_1"


def test_fraction_keeps_whole_videos(tmp_path):
    for i in range(40):  # listing needs no media: empty files
        for c in range(3):
            _put(tmp_path / f"dev/mp4/id{i % 8:05d}/video{i:02d}/{c:05d}.mp4", b"")
    cfg = ManifestConfig(sources=[SourceConfig("voxceleb2", str(tmp_path), fraction=0.5)])
    rows = list_clips(cfg)
    videos = {(r["identity"], r["video_id"]) for r in rows}
    assert 8 <= len(videos) <= 32 and len(rows) == 3 * len(videos)
    assert list_clips(cfg) == rows
    cfg.sources[0].fraction = 0.0
    assert list_clips(cfg) == []


def test_identity_filter(trees):
    cfg = _cfg(("voxceleb2", trees["voxceleb2"]), ("lrw", trees["lrw"]), identities=["id00017", UNKNOWN_IDENTITY])
    rows = list_clips(cfg)
    assert [r["clip_id"] for r in rows] == ["voxceleb2/test/id00017/01dfn2spqyE/00001"]  # LRW never selected
    assert list_clips(_cfg(("voxceleb2", trees["voxceleb2"]), identities=["id 17 [odd]"]))[0]["video_id"] == "v id"


def test_split_filter(trees):
    cfg = ManifestConfig(sources=[SourceConfig("voxceleb2", str(trees["voxceleb2"]), splits=["dev"]),
                                  SourceConfig("lrw", str(trees["lrw"]), splits=["val", "test"])])
    assert {(r["dataset"], r["source_split"]) for r in list_clips(cfg)} == {
        ("voxceleb2", "dev"), ("lrw", "val"), ("lrw", "test")}
    with pytest.raises(ManifestError, match="unknown split"):
        list_clips(ManifestConfig(sources=[SourceConfig("voxceleb2", str(trees["voxceleb2"]), splits=["train"])]))
    with pytest.raises(ManifestError, match="dev"):
        list_clips(ManifestConfig(sources=[SourceConfig("voxceleb2", str(trees["lrw"]), splits=["dev"])]))


def test_memory_filesystem(trees):
    fs = fsspec.filesystem("memory")
    base = f"/manifest-{uuid.uuid4().hex}"
    try:
        for p in trees["voxceleb2"].rglob("*"):
            if p.is_file():
                fs.pipe(f"{base}/vox/{p.relative_to(trees['voxceleb2']).as_posix()}", p.read_bytes())
        t = build_manifest(_cfg(("voxceleb2", f"memory://{base}/vox")))
        local = build_manifest(_cfg(("voxceleb2", trees["voxceleb2"])))
        assert t.column("clip_id").equals(local.column("clip_id"))
        rows = _by_id(t)
        r = rows["voxceleb2/dev/id00001/vidA/00002"]
        assert r["path"] == f"memory://{base}/vox/dev/mp4/id00001/vidA/00002.mp4"
        assert r["audio_path"].startswith("memory://") and r["audio_codec"] == "aac" and r["n_frames"] == 10
        for col in ("duration_s", "n_frames", "has_audio", "audio_codec"):
            assert t.column(col).equals(local.column(col)), col
        assert t.column("probe_error").is_null().equals(local.column("probe_error").is_null())
        write_manifest(t, f"memory://{base}/out/manifest.parquet")
        assert read_manifest(f"memory://{base}/out/manifest.parquet").equals(t)
    finally:
        fs.rm(base, recursive=True)


def test_errors(tmp_path, trees):
    missing = tmp_path / "no-such-root"
    with pytest.raises(ManifestError, match="no-such-root"):
        build_manifest(_cfg(("voxceleb2", missing)))
    with pytest.raises(ManifestError, match="unknown dataset"):
        list_clips(_cfg(("kinetics", tmp_path)))
    with pytest.raises(ManifestError, match="no clips"):
        list_clips(_cfg(("lrw", tmp_path)))
    with pytest.raises(ManifestError, match="duplicate"):
        list_clips(_cfg(("lrw", trees["lrw"]), ("lrw", trees["lrw"] / "lipread_mp4")))


def test_run_writes_manifest(trees, tmp_path):
    out = tmp_path / "data" / "manifest.parquet"
    params = Params(paths=PathsConfig(manifest=str(out)), manifest=_cfg(("synthetic", trees["synthetic"])),
                    tracking=TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))
    assert run(params, argparse.Namespace()) == 0
    assert read_manifest(out).num_rows == 2
    params.manifest = _cfg(("synthetic", tmp_path / "missing"))
    assert run(params, argparse.Namespace()) == 2
    (r,) = stage_runs(params.tracking.tracking_uri, "manifest")  # the failed run logs nothing
    assert r.data.metrics["clips"] == 2 and r.data.params["manifest.sources"] and r.artifacts == {"manifest.json"}


def test_linked_directories_are_followed(tmp_path):
    _put(tmp_path / "elsewhere/id00009/v/00001.mp4", b"")
    (tmp_path / "vox/test/mp4").mkdir(parents=True)
    (tmp_path / "vox/test/mp4/id00009").symlink_to(tmp_path / "elsewhere/id00009")
    rows = list_clips(_cfg(("voxceleb2", tmp_path / "vox")))
    assert [r["path"] for r in rows] == [str(tmp_path / "vox/test/mp4/id00009/v/00001.mp4")]
