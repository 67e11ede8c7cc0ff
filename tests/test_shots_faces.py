"""Shot cuts (PySceneDetect) and several faces (IoU tracks) on real media: a video of two shots is
split at the cut in preprocessing and inference, one face track is followed without switching
people, a video with no face is a recorded failure."""
import numpy as np
import pytest
import cv2

from stylesync.config import FaceConfig, InferConfig, LandmarksConfig, PreprocessConfig, ScenesConfig
from stylesync.data.preprocess import process_clip, stage_align, stage_decode, stage_landmarks
from stylesync.face.landmarks import DlibLandmarks, LandmarkTrack, smooth_landmarks
from stylesync.face.template import canonical_landmarks
from stylesync.face.track import link_tracks, rank_tracks
from stylesync.infer import Lipsyncer
from stylesync.shots import detect_cuts, detector_frames, shot_ranges
from stylesync.video import read_audio, read_video, write_video

from helpers import CUT, SPEECH, carphone_25, two_shots

def with_speech(path, frames: np.ndarray) -> None:
    write_video(path, frames, 25.0, read_audio(SPEECH)[: int(len(frames) / 25 * 16000)])


def test_the_cut_between_two_shots_is_found_and_none_in_one_shot():
    assert detect_cuts(two_shots(), ScenesConfig()) == [CUT]
    assert detect_cuts(two_shots(), ScenesConfig(detector="adaptive", threshold=3.0)) == [CUT]
    assert detect_cuts(carphone_25(), ScenesConfig()) == []  # a real talking face: no false cut
    assert detect_cuts(two_shots(), ScenesConfig(detector="none")) == []
    assert shot_ranges(120, [CUT]) == [(0, CUT), (CUT, 120)]


def test_the_detector_sees_each_frame_box_averaged_and_in_bgr():
    frames = two_shots()[:6]
    got = detector_frames(frames, 2)
    want = np.stack([cv2.resize(f, (f.shape[1] // 2, f.shape[0] // 2), interpolation=cv2.INTER_AREA)[..., ::-1]
                     for f in frames])
    np.testing.assert_array_equal(got, want)  # one call for the clip = the same as frame by frame
    np.testing.assert_array_equal(detector_frames(frames, 1), frames[..., ::-1])
    assert detect_cuts(two_shots(), ScenesConfig(downscale=1)) == [CUT]


def test_smoothing_never_crosses_a_cut():
    lm = np.tile(canonical_landmarks()[None].astype(np.float32), (40, 1, 1))
    lm[20:] += 50.0  # the face jumps at the cut
    across = smooth_landmarks(lm, sigma=2.0)
    per_shot = smooth_landmarks(lm, sigma=2.0, cuts=[20])
    assert np.abs(across[19] - lm[19]).max() > 5  # without the cut the jump leaks into shot 1
    np.testing.assert_allclose(per_shot, lm, atol=1e-4)  # with it each shot keeps its own (still) face


def test_preprocessing_keeps_one_shot(tmp_path):
    path = tmp_path / "two_shots.mp4"
    with_speech(path, two_shots())
    cfg = PreprocessConfig(landmarks=LandmarksConfig(backend="dlib"))
    clip = stage_decode({"clip_id": "two", "path": str(path)}, cfg)
    assert clip.cuts == [CUT] and clip.info["cuts"] == [CUT]
    clip = stage_landmarks(clip, DlibLandmarks(cfg.landmarks), cfg)
    clip = stage_align(clip, cfg, np.asarray(FaceConfig().template), 64, FaceConfig().smooth_sigma)
    start, stop = clip.info["trimmed"]
    assert stop <= CUT or start >= CUT, clip.info  # never spans the cut
    assert stop - start >= 0.9 * CUT and len(clip.crops) == len(clip.audio) / 640 == stop - start


def two_faces() -> tuple[np.ndarray, int]:
    """(100, 230, 480, 3): the clip at the left at its size, and a second person (the clip mirrored)
    at the right growing from 0.75x to 1.5x, so the largest face of a frame changes mid-clip.
    Returns the frames and the x dividing the two people."""
    f = carphone_25()
    out = np.full((len(f), 230, 480, 3), 90, np.uint8)
    out[:, 43:187, 10:186] = f
    for t, frame in enumerate(f):
        s = 0.75 + 0.75 * t / (len(f) - 1)
        b = cv2.resize(np.ascontiguousarray(frame[:, ::-1]), (round(176 * s), round(144 * s)))
        out[t, 115 - b.shape[0] // 2 : 115 - b.shape[0] // 2 + b.shape[0], 210 : 210 + b.shape[1]] = b
    return out, 198


def test_one_track_is_followed_without_switching_people():
    frames, split = two_faces()
    first, late = DlibLandmarks(LandmarksConfig(backend="dlib")).detect(frames[[0, 90]])
    width = lambda d, right: float(d[(d[:, 0] > split) == right][0, 2] - d[(d[:, 0] > split) == right][0, 0])  # noqa: E731
    assert width(first, False) > width(first, True) and width(late, True) > width(late, False)  # the largest switches
    for face, right in ((0, True), (1, False)):  # rank 0: the larger over the whole clip (the growing one)
        track = DlibLandmarks(LandmarksConfig(backend="dlib", face=face))(frames)
        found = np.isfinite(track.landmarks).all(axis=(1, 2))
        x = track.landmarks[found].mean(axis=1)[:, 0]
        assert found.mean() >= 0.9, (face, found.mean())
        assert ((x > split) if right else (x < split)).all(), (face, x)
    lost = DlibLandmarks(LandmarksConfig(backend="dlib", face=2))(frames)  # no third person: lost everywhere
    assert not np.isfinite(lost.landmarks).any()


def test_sidecar_faces_are_followed_as_one_track():
    a = canonical_landmarks()[None].repeat(30, 0) + [10, 10]  # (30, 68, 2): same size throughout
    b = canonical_landmarks()[None].repeat(30, 0) * np.linspace(0.7, 1.1, 30)[:, None, None] + [150, 10]  # grows
    faces = np.stack([a, b], 1).astype(np.float32)  # (30, 2, 68, 2)
    faces[10:12, 0] = np.nan  # the first person is missed on two frames
    per_frame_largest = LandmarkTrack(faces[:, 0], np.full(30, 2), np.ones(30, np.float32), faces)
    followed = per_frame_largest.follow([], LandmarksConfig(face=0))
    x = followed.landmarks[:, :, 0].mean(1)
    assert (x[np.isfinite(x)] < 100).all() and np.isnan(x[10:12]).all() and np.isfinite(x).sum() == 28
    assert (per_frame_largest.follow([], LandmarksConfig(face=1)).landmarks[:, :, 0].mean(1) > 100).all()
    after_cut = per_frame_largest.follow([20], LandmarksConfig(face=0)).landmarks[:, :, 0].mean(1)
    assert (after_cut[20:] > 100).all() and (after_cut[:20][np.isfinite(after_cut[:20])] < 100).all()  # after a cut the tracks are ranked again: b is larger there


def test_tracks_link_by_iou_and_rank_by_size():
    dets = [np.array([[0, 0, 10, 10, 1], [50, 50, 80, 80, 1]]), np.array([[51, 52, 81, 82, 1], [1, 0, 11, 10, 1]]),
            np.zeros((0, 5)), np.array([[2, 1, 12, 11, 1]])]
    tracks = rank_tracks(link_tracks([0, 5, 10, 15], dets, min_iou=0.3))
    assert [sorted(t) for t in tracks] == [[0, 5], [0, 5, 15]]  # the big face first, the small one bridged a miss
    assert len(link_tracks([0, 5, 10, 15], dets, min_iou=0.3, patience=1)) == 3  # without patience it splits


def test_inference_follows_the_chosen_face_and_redetects_after_a_cut(tmp_path, small_trained_model):
    frames, split = two_faces()
    video, out = tmp_path / "two_faces.mp4", tmp_path / "out.mp4"
    with_speech(video, frames)
    syncer = Lipsyncer.from_dirs(small_trained_model, cfg=InferConfig(batch_size=8),
                                 landmarks=LandmarksConfig(backend="dlib", face=1))  # the smaller, left person
    rep = syncer.run(video, video, out, progress=False, keep_frames=True)
    src, _ = read_video(video)
    assert rep.frames == 100 and rep.shots == 1 and rep.frames_without_face <= 10
    assert np.array_equal(syncer.last_frames[:, :, split:], src[:, :, split:])  # the other person is untouched
    assert not np.array_equal(syncer.last_frames[:, :, :split], src[:, :, :split])
    video2 = tmp_path / "two_shots.mp4"
    with_speech(video2, two_shots())
    rep = Lipsyncer.from_dirs(small_trained_model, cfg=InferConfig(batch_size=8),
                              landmarks=LandmarksConfig(backend="dlib")).run(video2, video2, out, progress=False)
    assert rep.shots == 2 and rep.frames == 120 and rep.frames_without_face <= 12


def test_a_video_without_a_face_is_a_recorded_failure(tmp_path):
    path = tmp_path / "no_face.mp4"
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (50, 144, 176, 3), dtype=np.uint8)
    with_speech(path, np.stack([cv2.GaussianBlur(f, (9, 9), 3) for f in noise]))
    cfg = PreprocessConfig(landmarks=LandmarksConfig(backend="dlib"))
    res = process_clip({"clip_id": "empty", "path": str(path)}, cfg, FaceConfig(crop_size=64),
                       landmarker=DlibLandmarks(cfg.landmarks))
    assert res.sample is None and res.failure["clip_id"] == "empty"
    assert (res.failure["stage"], res.failure["reason"]) == ("landmarks", "no_face"), res.failure
    assert "100%" in res.failure["detail"]


def test_sync_cli_takes_face():
    from stylesync.cli import build_parser

    args = build_parser().parse_args(["sync", "--video", "v.mp4", "--audio", "a.wav", "-o", "o.mp4", "--face", "1"])
    assert args.face == 1
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sync", "--video", "v", "--audio", "a", "-o", "o", "--face", "x"])
