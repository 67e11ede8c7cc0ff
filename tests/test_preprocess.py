"""Per-clip preprocessing, the fault corpus, deterministic / exactly-once / resumable shards."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest

from stylesync.config import FaceConfig, ManifestConfig, PreprocessConfig, SourceConfig
from stylesync.data.build_shards import build_shards
from stylesync.data.manifest import build_manifest, write_manifest
from stylesync.data.preprocess import process_clip
from stylesync.data.sample import decode_frames, npy_load, sample_key
from stylesync.face.align import crop_scale, similarities, similarity
from stylesync.face.template import ALIGN_TEMPLATE, alignment_points
from stylesync.stages import preprocess as preprocess_stage

from drawn_clips import make_clip
from helpers import NO_VAL, params_for, shard_bytes, stage_runs, vox_path, write_small_manifest

REPO = Path(__file__).resolve().parents[1]


def row_for(path: Path, clip_id: str = "c", identity: str = "id0", split: str = "train", **kw) -> dict:
    lm = path.with_name(path.stem + ".landmarks.npy")
    return {"clip_id": clip_id, "identity": identity, "split": split, "dataset": "synthetic", "path": str(path),
            "landmarks_path": str(lm) if lm.exists() else None, "audio_path": None, "probe_error": None, **kw}


def test_batched_similarities_match_scikit_image_frame_by_frame():
    rng = np.random.default_rng(0)
    dst = rng.normal(size=(3, 2)) * 20
    src = rng.normal(size=(64, 3, 2)) * 50 + 100
    src[3] = dst @ np.diag([1.0, -1.0])  # a mirrored face: rotation, never a reflection
    src[4, 2] = src[4, :2].mean(axis=0)  # collinear points (rank-1 covariance)
    src[5, 1] = np.nan  # a missing landmark
    src[6] = src[6, 0]  # all three points coincide
    got = similarities(src, dst)
    for t in range(len(src)):
        if t in (5, 6):
            assert np.isnan(got[t]).all()
            continue
        np.testing.assert_allclose(got[t], similarity(src[t], dst), atol=1e-9)
    assert np.linalg.det(got[3, :, :2]) > 0


def test_process_clip_produces_an_aligned_sample(tmp_path):
    path = make_clip(tmp_path / "a.mp4", n_frames=40)
    res = process_clip(row_for(path), PreprocessConfig(), FaceConfig(crop_size=128))
    assert res.failure is None, res.failure
    s = res.sample
    meta = json.loads(s["json"])
    assert meta["n_frames"] == 40 and meta["crop_size"] == 128 and meta["fps"] == 25.0
    frames = decode_frames(s)
    assert frames.shape == (40, 128, 128, 3) and frames.dtype == np.uint8
    mel = npy_load(s["mel.npy"])
    audio = npy_load(s["audio.npy"])
    assert mel.dtype == np.float16 and mel.shape == (80, 1 + len(audio) // 200)
    assert len(audio) == 40 * 640  # 16 kHz audio trimmed to the frames
    lm = npy_load(s["landmarks.npy"])
    # aligned landmarks put the eyebrows and nose on the template
    expected = ALIGN_TEMPLATE @ crop_scale(128).T
    np.testing.assert_allclose(alignment_points(lm).mean(0), expected, atol=0.5)
    assert npy_load(s["affine.npy"]).shape == (40, 2, 3)
    assert s["__key__"] == sample_key("c") and "." not in s["__key__"]


# ------------------------------------------------------------------------------ the fault corpus
def build_fault_corpus(root: Path) -> dict[str, set[str]]:
    """A VoxCeleb2-layout tree with good and bad clips. Returns clip -> acceptable outcomes."""
    expect: dict[str, set[str]] = {}

    def add(identity, n, outcome, **kw):
        p = vox_path(root, "dev", identity, "vid", n)
        make_clip(p, **kw)
        expect[f"synthetic/dev/{identity}/vid/{n:05d}"] = outcome
        return p

    add("id_good", 0, {"ok"})
    add("id_good", 1, {"ok"}, n_frames=60, fps=30.0)  # 30 fps source
    add("id_good", 2, {"ok"}, n_frames=48, fps=24000 / 1001)  # 23.976 fps
    add("id_good", 3, {"ok"}, size=(127, 133), pix_fmt="yuv444p")  # odd sizes
    add("id_good", 4, {"ok"}, audio_seconds=3.0)  # audio longer than the video
    add("id_good", 5, {"ok"}, n_frames=50, audio_seconds=1.5)  # audio shorter: frames trimmed
    add("John Doe", 0, {"ok"})  # spaces in the identity
    add("id_bad", 0, {"no_audio"}, with_audio=False)
    add("id_bad", 1, {"silent_audio"}, silent=True)
    add("id_bad", 2, {"no_face"}, faces=0)
    add("id_bad", 3, {"several_faces"}, faces=2, size=(128, 192))
    add("id_bad", 4, {"too_short"}, n_frames=1)
    add("id_bad", 5, {"audio_too_short"}, n_frames=50, audio_seconds=0.4)
    add("id_bad", 6, {"no_landmarks"}, sidecar=False)
    p = add("id_bad", 7, {"ok", "unreadable", "too_short"}, n_frames=50)  # truncated mp4
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    p = vox_path(root, "dev", "id_bad", "vid", 8)
    p.write_bytes(os.urandom(3000))  # not a video at all
    expect["synthetic/dev/id_bad/vid/00008"] = {"unreadable"}
    return expect


def outcomes(shards: Path) -> dict[str, str]:
    index = pq.read_table(shards / "index.parquet").to_pylist()
    failures = pq.read_table(shards / "failures.parquet").to_pylist()
    out = {r["clip_id"]: "ok" for r in index}
    for f in failures:
        assert f["clip_id"] not in out, "a clip both processed and failed"
        out[f["clip_id"]] = f["reason"]
    return out


def test_fault_corpus_local(tmp_path):
    expect = build_fault_corpus(tmp_path / "raw")
    params = params_for(tmp_path)
    table = build_manifest(ManifestConfig(sources=[SourceConfig("synthetic", str(tmp_path / "raw"))], workers=2))
    # an unreadable path and a hostile identity straight in the manifest
    rows = table.to_pylist()
    extra = dict(rows[0], clip_id="synthetic/dev/ghost/vid/00000", path=str(tmp_path / "missing.mp4"), probe_error=None)
    hostile = dict(rows[0], clip_id="synthetic/dev/../../etc/vid/00000", identity="../../etc")
    expect[extra["clip_id"]] = {"unreadable"}
    expect[hostile["clip_id"]] = {"ok"}
    import pyarrow as pa

    write_manifest(pa.Table.from_pylist(rows + [extra, hostile], schema=table.schema), params.paths.manifest)
    assert preprocess_stage.run(params, SimpleNamespace(executor="local")) == 0  # the stage: shards + metrics
    summary = json.loads((Path(params.paths.metrics) / "preprocess.json").read_text())
    got = outcomes(Path(params.paths.shards))
    assert set(got) == set(expect)
    for clip, outcome in got.items():
        assert outcome in expect[clip], (clip, outcome, expect[clip])
    assert summary["clips_in"] == len(expect) == summary["clips_ok"] + summary["clips_failed"]
    # every shard is inside the shard root, and sample keys are path-safe
    for tar in Path(params.paths.shards).rglob("*.tar"):
        assert Path(params.paths.shards).resolve() in tar.resolve().parents
        with tarfile.open(tar) as t:
            assert all(".." not in m.name.split("/") for m in t.getmembers())
    index = pq.read_table(Path(params.paths.shards) / "index.parquet").to_pylist()
    by_clip = {r["clip_id"]: r for r in index}
    assert by_clip["synthetic/dev/id_good/vid/00001"]["n_frames"] == 50  # 60 frames at 30 fps -> 2 s at 25
    assert abs(by_clip["synthetic/dev/id_good/vid/00002"]["n_frames"] - 50) <= 1  # 48 at 23.976
    assert by_clip["synthetic/dev/id_good/vid/00005"]["n_frames"] == 37  # audio covers 1.5 s
    assert summary["failed_by_reason"]["no_audio"] == 1 and summary["clips_ok"] == len(index)
    (r,) = stage_runs(params.tracking.tracking_uri, "preprocess")
    assert r.data.metrics["clips_ok"] == summary["clips_ok"] and r.data.metrics["failed_by_reason.no_audio"] == 1
    assert r.data.params["preprocess.shard_size"] == "3" and r.data.params["face.crop_size"] == "128"
    assert r.artifacts == {"preprocess.json"}


def test_ray_executor_is_deterministic_and_matches_local(tmp_path):
    a = params_for(tmp_path / "a")
    write_small_manifest(tmp_path / "a", a, val=NO_VAL)
    b = params_for(tmp_path / "b")
    b.paths.manifest = a.paths.manifest
    build_shards(a, executor="ray")
    build_shards(b, executor="local")
    ba, bb = shard_bytes(Path(a.paths.shards)), shard_bytes(Path(b.paths.shards))
    assert list(ba) == ["test/shard-000000.tar", "train/shard-000000.tar", "train/shard-000001.tar"]
    assert ba == bb  # same names, same bytes
    # rerun: nothing to do, nothing changes
    again = build_shards(a, executor="local")
    assert again["clips_processed_this_run"] == 0 and shard_bytes(Path(a.paths.shards)) == ba


def test_params_change_rebuilds(tmp_path):
    p = params_for(tmp_path)
    write_small_manifest(tmp_path, p)
    build_shards(p, executor="local")
    p.preprocess.jpeg_quality = 80
    s = build_shards(p, executor="local")
    assert s["clips_processed_this_run"] == 7


@pytest.mark.parametrize("kill_after", [1.5, 4.0])
def test_kill_9_and_rerun_gives_the_same_shards(tmp_path, kill_after):
    ref = params_for(tmp_path / "ref")
    write_small_manifest(tmp_path / "ref", ref)
    build_shards(ref, executor="local")
    expected = shard_bytes(Path(ref.paths.shards))
    out = tmp_path / "run" / "shards"
    args = [sys.executable, "-m", "stylesync", "preprocess", "--executor", "local", "--params", os.devnull,
            "-S", f"paths.manifest={ref.paths.manifest}", "-S", f"paths.shards={out}",
            "-S", f"paths.metrics={tmp_path / 'run' / 'metrics'}", "-S", "preprocess.shard_size=3",
            "-S", "face.crop_size=128", "-S", "tracking.enabled=false"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert shard_bytes(out) == expected
    index = pq.read_table(out / "index.parquet").to_pylist()
    assert len(index) == len({r["clip_id"] for r in index}) == 7  # no duplicate, none missing
    assert not (out / ".staging").exists() or not any((out / ".staging").rglob("*.tar"))
