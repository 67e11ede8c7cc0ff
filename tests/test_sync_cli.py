"""`stylesync sync` as a script sees it: exit codes, one-line errors that name the file, nothing
overwritten, errors before the expensive work, a folder batch that goes on past a bad file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from stylesync.cli import main
from stylesync.video import write_video

from helpers import tone_wav
from test_infer import astronaut_video


def _wav(path: Path, seconds: float = 1.2) -> Path:
    return tone_wav(path, seconds)


def sync(model: Path, *args: str) -> int:
    return main(["sync", "--checkpoint", str(model), "-S", "preprocess.landmarks.backend=dlib", *args])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in err if line.startswith("stylesync sync: error:")]
    assert len(lines) == 1 and "Traceback" not in "\n".join(err), err
    return lines[0]


def test_a_video_without_a_face_fails_with_the_count(tmp_path, small_trained_model, capsys):
    video = tmp_path / "blank.mp4"
    write_video(video, np.full((20, 96, 96, 3), 90, np.uint8), 25.0)
    assert sync(small_trained_model, "--video", str(video), "--audio", str(_wav(tmp_path / "a.wav")),
                "-o", str(tmp_path / "o.mp4")) == 1
    line = one_error_line(capsys)
    assert "blank.mp4" in line and "missing in 20 of 20 frames" in line
    assert not (tmp_path / "o.mp4").exists()


def test_a_face_that_is_not_there_fails(tmp_path, small_trained_model, capsys):
    video = tmp_path / "a.mp4"
    astronaut_video(video, n=20)
    assert sync(small_trained_model, "--video", str(video), "--audio", str(_wav(tmp_path / "a.wav")), "--face", "3",
                "--landmarks", str(tmp_path / "a.landmarks.npy"), "-o", str(tmp_path / "o.mp4")) == 1
    assert "(--face 3) is missing in 20 of 20 frames" in one_error_line(capsys)


def test_output_equal_to_the_input_is_refused_and_the_input_kept(tmp_path, small_trained_model, capsys):
    video = tmp_path / "a.mp4"
    astronaut_video(video, n=10)
    before = video.read_bytes()
    assert sync(small_trained_model, "--video", str(video), "--audio", str(_wav(tmp_path / "a.wav")),
                "-o", str(video)) == 1
    assert "refusing to overwrite" in one_error_line(capsys) and video.read_bytes() == before
    folder = tmp_path / "videos"
    folder.mkdir()
    astronaut_video(folder / "b.mp4", n=10)
    before = (folder / "b.mp4").read_bytes()
    assert sync(small_trained_model, "--video", str(folder), "--audio", str(tmp_path / "a.wav"), "-o", str(folder)) == 1
    assert "refusing to overwrite" in one_error_line(capsys) and (folder / "b.mp4").read_bytes() == before


def test_a_folder_with_no_matching_names_fails(tmp_path, small_trained_model, capsys):
    videos, audios = tmp_path / "videos", tmp_path / "audios"
    videos.mkdir()
    audios.mkdir()
    astronaut_video(videos / "one.mp4", n=10)
    _wav(audios / "other.wav")
    assert sync(small_trained_model, "--video", str(videos), "--audio", str(audios), "-o", str(tmp_path / "out")) == 1
    assert "nothing to do" in one_error_line(capsys)


def test_a_folder_batch_goes_on_past_a_corrupt_file(tmp_path, small_trained_model, caplog):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a_corrupt.mp4").write_bytes(b"not a video at all")
    astronaut_video(videos / "b_good.mp4", n=15)
    out = tmp_path / "out"
    assert sync(small_trained_model, "--video", str(videos), "--audio", str(_wav(tmp_path / "v.wav", 0.6)),
                "-o", str(out)) == 1  # the request was not fully met
    assert (out / "b_good.mp4").exists() and not (out / "a_corrupt.mp4").exists()  # the file after it was done
    report = json.loads((out / "sync_report.json").read_text())
    assert report["ok"] == 1 and report["failed"] == 1
    assert report["failures"][0]["video"].endswith("a_corrupt.mp4") and "cannot open" in report["failures"][0]["reason"]
    assert any("a_corrupt.mp4" in r.message and r.levelname == "ERROR" for r in caplog.records)  # on the console


@pytest.mark.parametrize("case", ["missing video", "corrupt video", "empty audio", "unwritable output"])
def test_user_errors_are_one_line_before_any_work(tmp_path, small_trained_model, capsys, case):
    video, audio, out = tmp_path / "a.mp4", _wav(tmp_path / "a.wav"), tmp_path / "o.mp4"
    astronaut_video(video, n=10)
    if case == "missing video":
        video = tmp_path / "nothing.mp4"
    elif case == "corrupt video":
        video = tmp_path / "bad.mp4"
        video.write_bytes(b"\x00" * 100)
    elif case == "empty audio":
        audio = tmp_path / "empty.wav"
        soundfile.write(audio, np.zeros(0, np.float32), 16000)
    else:
        (tmp_path / "a_file").write_text("x")
        out = tmp_path / "a_file" / "o.mp4"  # its folder cannot be made
    assert sync(small_trained_model, "--video", str(video), "--audio", str(audio), "-o", str(out)) == 1
    line = one_error_line(capsys)
    assert {"missing video": "nothing.mp4", "corrupt video": "bad.mp4", "empty audio": "empty.wav",
            "unwritable output": "cannot write"}[case] in line


def test_debug_shows_the_traceback(tmp_path, small_trained_model):
    with pytest.raises(FileNotFoundError):
        main(["--debug", "sync", "--checkpoint", str(small_trained_model), "--video", str(tmp_path / "x.mp4"),
              "--audio", str(tmp_path / "x.wav"), "-o", str(tmp_path / "o.mp4")])


def test_an_unknown_identity_lists_those_there_are(tmp_path, small_trained_model, capsys):
    video = tmp_path / "a.mp4"
    astronaut_video(video, n=10)
    (tmp_path / "models" / "personal" / "id00042").mkdir(parents=True)
    (tmp_path / "models" / "personal" / "id00042" / "config.json").write_text("{}")
    assert sync(small_trained_model, "-S", f"paths.models={tmp_path / 'models'}", "--identity", "id99999",
                "--video", str(video), "--audio", str(_wav(tmp_path / "a.wav")), "-o", str(tmp_path / "o.mp4")) == 1
    line = one_error_line(capsys)
    assert "id99999" in line and "id00042" in line


def test_params_from_another_folder_resolve_paths_there(tmp_path, capsys, monkeypatch):
    (tmp_path / "params.yaml").write_text("paths: {models: my_models}\n")
    monkeypatch.chdir(Path(__file__).resolve().parent)
    assert main(["params", "--params", str(tmp_path / "params.yaml")]) == 0
    assert str(tmp_path / "my_models") in capsys.readouterr().out
