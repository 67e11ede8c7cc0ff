"""The synthetic corpus: determinism, VoxCeleb2 layout, media properties, identities, audio-driven
mouth, blinks, head motion, resume."""
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from stylesync.face.template import JAW_DROP
import pytest

from stylesync.config import ManifestConfig, SynthConfig, TrackingConfig
from stylesync.data import synthetic
from stylesync.data.synth_audio import frame_means
from stylesync.data.synth_face import FaceRenderer, frame_landmarks, head_transform, sample_motion
from stylesync.stages import synth as synth_stage
from stylesync.video import probe, read_audio, read_video

from helpers import stage_runs

SECONDS, RES, FPS = 2.0, 96, 25.0
N_FRAMES = int(SECONDS * FPS)


def tiny(out, **kw) -> SynthConfig:
    base = dict(out=str(out), seed=0, identities_dev=1, identities_test=1, videos_per_identity=1,
                clips_per_video=1, seconds=SECONDS, resolution=RES, workers=1)
    base.update(kw)
    return SynthConfig(**base)


def clips(root) -> list[Path]:
    return sorted(Path(root).glob("*/mp4/id*/*/*.mp4"))


def sidecars(mp4: Path) -> tuple[np.ndarray, dict]:
    return np.load(mp4.with_suffix(".landmarks.npy")), json.loads(mp4.with_suffix(".json").read_text())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    cfg = tiny(tmp_path_factory.mktemp("synth") / "a")
    return cfg, synthetic.generate_corpus(cfg)


def test_layout_and_media(corpus):
    cfg, summary = corpus
    assert summary["identities"] == 2 and summary["clips"] == 2 and summary["generated"] == 2
    assert summary["frames"] == 2 * N_FRAMES and summary["audio_seconds"] == pytest.approx(2 * SECONDS)
    paths = clips(cfg.out)
    rel = [p.relative_to(cfg.out).parts for p in paths]
    assert [(r[0], r[1], r[2], r[4]) for r in rel] == [("dev", "mp4", "id00000", "00001.mp4"),
                                                      ("test", "mp4", "id00001", "00001.mp4")]
    for r in rel:
        assert re.fullmatch(r"[A-Za-z0-9_-]{11}", r[3])
    for p in paths:
        info = probe(p)
        assert info.fps == pytest.approx(FPS) and (info.width, info.height) == (RES, RES)
        assert info.video_codec == "h264" and info.audio_codec == "aac" and info.audio_rate == 16000
        assert info.duration_s == pytest.approx(SECONDS, abs=0.05) and info.n_frames == N_FRAMES
        lm, meta = sidecars(p)
        assert lm.dtype == np.float32 and lm.shape == (N_FRAMES, 68, 2)
        assert (lm > 0).all() and (lm < RES).all()
        drop = JAW_DROP * np.asarray(meta["mouth_open"]) * (lm[:, 8, 1] - lm[:, 17:27, 1].mean(1)) / 71.0
        span = (lm[:, 8, 1] - drop - lm[:, 17:27, 1].mean(1)) / RES  # eyebrows to chin, the jaw closed
        assert ((span > 0.45) & (span < 0.6)).all()
        assert len(meta["mouth_open"]) == len(meta["eye_open"]) == N_FRAMES


def test_deterministic_and_clip_alone_equals_corpus(corpus, tmp_path):
    cfg, _ = corpus
    again = tiny(tmp_path / "b", workers=2)  # also: parallel == in-process
    synthetic.generate_corpus(again)
    for p, q in zip(clips(cfg.out), clips(again.out), strict=True):
        assert p.relative_to(cfg.out) == q.relative_to(again.out)
        (lm_p, meta_p), (lm_q, meta_q) = sidecars(p), sidecars(q)
        np.testing.assert_array_equal(lm_p, lm_q)
        assert meta_p == meta_q
        np.testing.assert_array_equal(read_audio(p), read_audio(q))
        assert p.read_bytes() == q.read_bytes()  # write_video turns x264's mb-tree off: reproducible
    # one clip alone (in memory) is the clip of the corpus
    job = synthetic.ClipJob("test", 1, 0, 0)
    alone = synthetic.make_clip(cfg, job)
    lm, meta = sidecars(synthetic.clip_paths(cfg, job)[0])
    np.testing.assert_array_equal(alone.landmarks, lm)
    assert json.loads(json.dumps(alone.meta)) == meta
    frames = read_video(synthetic.clip_paths(cfg, job)[0])[0]
    assert np.abs(frames.astype(float) - alone.frames).mean() < 3  # H.264 at crf 18
    np.testing.assert_array_equal(synthetic.make_clip(cfg, job).frames, alone.frames)  # rendering is exact
    other = synthetic.make_clip(tiny(cfg.out, seed=1), job)
    assert not np.allclose(other.landmarks, alone.landmarks)


def test_identities_differ(corpus):
    cfg, _ = corpus
    (a, b) = clips(cfg.out)
    fa, fb = read_video(a)[0], read_video(b)[0]
    assert np.linalg.norm(fa.reshape(-1, 3).mean(0) - fb.reshape(-1, 3).mean(0)) > 10
    # the face (skin under the nose) differs as well as the background
    (la, ma), (lb, mb) = sidecars(a), sidecars(b)
    skin = [f[0, int(lm[0, 30, 1]) + 2, int(lm[0, 30, 0]) - 4].astype(float) for f, lm in ((fa, la), (fb, lb))]
    assert np.linalg.norm(skin[0] - skin[1]) > 10
    assert ma["style"] != mb["style"] and ma["appearance"]["jaw_width"] != mb["appearance"]["jaw_width"]
    ids = [synthetic.make_identity(0, i) for i in range(6)]
    gains = [i.style.gain for i in ids]
    assert all(0.6 <= g <= 1.5 for g in gains) and np.ptp(gains) > 0.2
    assert len({i.appearance.background for i in ids}) > 1 and len({i.appearance.skin for i in ids}) == 6


def test_rendering_follows_landmarks():
    app = synthetic.make_identity(0, 3).appearance
    renderer, m = FaceRenderer(app, 224), head_transform(app, 224, 2.0, -1.0, 2.0, 1.02)
    lm = frame_landmarks(app, m, mouth_open=5.0, mouth_width=1.0, eye_open=1.0)
    frame = renderer.render(lm, m).astype(float)
    x, y = np.round((lm[62] + lm[66]) / 2).astype(int)  # the middle of the lip gap: the dark mouth
    assert np.linalg.norm(frame[y, x] - (48, 14, 20)) < 30
    closed = frame_landmarks(app, m, mouth_open=5.0, mouth_width=1.0, eye_open=0.0)
    blink = renderer.render(closed, m).astype(float)
    x, y = np.round(lm[[37, 38, 40, 41]].mean(0) + [0, -1]).astype(int)  # inside the open eye
    assert np.linalg.norm(frame[y, x] - blink[y, x]) > 40  # eyeball vs closed lid


def test_mouth_follows_audio(corpus):
    cfg, _ = corpus
    for p in clips(cfg.out):
        lm, meta = sidecars(p)
        mouth = np.array(meta["mouth_open"])  # (T,)
        wav = read_audio(p).astype(np.float64)
        rms = np.sqrt(frame_means(wav ** 2, N_FRAMES, FPS, 16000))  # each frame's 40 ms
        assert np.corrcoef(mouth, rms)[0, 1] > 0.5
        ahead = np.maximum(rms, np.r_[rms[1:], 0])  # the mouth anticipates the sound by < 1 frame
        quiet = ahead < 0.01 * rms.max()
        style = meta["style"]
        rest = cfg.open_cap * np.tanh(cfg.max_open * style["gain"] * cfg.rest_aperture ** style["exponent"] / cfg.open_cap)
        assert quiet.sum() >= 5 and np.abs(mouth[quiet] - rest).max() < 0.5  # lips apart at rest in pauses
        assert mouth.min() < 0.3 * rest and mouth.max() > rest + 3  # near shut (p, b, m) and wide open in speech
        gap = lm[:, 66, 1] - lm[:, 62, 1]  # inner-lip gap in pixels follows mouth_open
        assert np.corrcoef(gap, mouth)[0, 1] > 0.99


def test_blinks_and_head_motion(corpus):
    cfg, _ = corpus
    for p in clips(cfg.out):
        lm, meta = sidecars(p)
        eye = np.array(meta["eye_open"])
        assert eye.min() == 0 and eye.max() == 1
        lid = lm[:, 41, 1] - lm[:, 37, 1]  # left eye: lower minus upper lid
        assert np.abs(lid[eye == 0]).max() < 0.05 and lid[eye == 1].min() > 1
        nose = lm[:, 30]  # (T, 2)
        assert np.ptp(nose, axis=0).max() > 1.0  # the head moves (pixels)
        roll = np.degrees(np.arctan2(*(lm[:, 45] - lm[:, 36])[:, ::-1].T))
        assert np.ptp(roll) > 0.5
    mo = sample_motion(np.random.default_rng(0), 500, FPS)  # 20 s
    closed = np.r_[0, (mo.eye_open < 1).astype(int), 0]
    starts, ends = np.flatnonzero(np.diff(closed) == 1), np.flatnonzero(np.diff(closed) == -1)
    starts, ends = starts[ends < 500], ends[ends < 500]  # the last one may be cut by the clip's end
    assert len(starts) >= 4 and ((ends - starts >= 4) & (ends - starts <= 6)).all()
    assert ((np.diff(starts) >= 2 * FPS - 1) & (np.diff(starts) <= 5 * FPS + 1)).all()
    assert np.abs(mo.rot).max() <= 3 and np.abs(mo.scale - 1).max() <= 0.05 and np.abs(mo.tx).max() <= 4


def test_resume_skips_complete_and_regenerates_missing(corpus, tmp_path):
    cfg = tiny(tmp_path / "c")
    shutil.copytree(corpus[0].out, cfg.out)
    a, b = clips(cfg.out)
    before = {p: p.stat().st_mtime_ns for p in Path(cfg.out).rglob("*.*")}
    lm_b = np.load(b.with_suffix(".landmarks.npy"))
    b.with_suffix(".landmarks.npy").unlink()
    summary = synthetic.generate_corpus(cfg)
    assert summary["skipped"] == 1 and summary["generated"] == 1
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if p.parent == a.parent)
    assert b.stat().st_mtime_ns != before[b]
    np.testing.assert_array_equal(np.load(b.with_suffix(".landmarks.npy")), lm_b)
    tracked = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert synth_stage.run(SimpleNamespace(synth=cfg, manifest=ManifestConfig(), tracking=tracked), None) == 0  # all skipped
    (r,) = stage_runs(tracked.tracking_uri, "synth")
    assert r.data.metrics["skipped"] == 2 and r.data.params["synth.seconds"] == str(SECONDS) and r.artifacts == {"synth.json"}
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if p.exists() and p.parent == a.parent)
