"""`stylesync sync`: lip-sync a video (or a folder of videos) to an audio track with infer.Lipsyncer.

Checked before any frame is generated: the inputs exist and decode, the output folder is writable,
no output is an input. A folder batch goes on past a failing file and reports every failure (file,
reason) at the end and in `<output>/sync_report.json`; the exit status is 1 when any file failed.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from pathlib import Path

from ..config import Params
from ..infer import Lipsyncer
from ..layout import Layout
from ..runtime.device import resolve_device
from ..storage import exists, glob, join, write_json
from ..video import MediaError, probe, probe_audio_file

log = logging.getLogger(__name__)
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm"}


def pairs(video: Path, audio: Path, output: Path) -> list[tuple[Path, Path, Path]]:
    """(video, audio, output) jobs. Batch mode: a folder of videos, with one audio for all or an
    audio folder matched by file name (stem); refuses a job whose output is one of its inputs."""
    for what, p in (("--video", video), ("--audio", audio)):
        if not p.exists():
            raise FileNotFoundError(f"{what} {p}: no such file or folder")
    if not video.is_dir():
        if output.is_dir():
            output = output / f"{video.stem}.mp4"
        jobs = [(video, audio, output)]
    else:
        if output.exists() and not output.is_dir():
            raise ValueError(f"-o {output}: a folder of videos needs an output folder, not a file")
        vids = sorted(p for p in video.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        jobs, unmatched = [], []
        for v in vids:
            a = audio if not audio.is_dir() else next((p for p in sorted(audio.iterdir()) if p.stem == v.stem), None)
            if a is None:
                unmatched.append(v.name)
                continue
            jobs.append((v, a, output / f"{v.stem}.mp4"))
        if not jobs:
            why = f"none of its {len(vids)} videos has an audio of the same name in {audio}" if vids else \
                f"it holds no video ({', '.join(sorted(VIDEO_SUFFIXES))})"
            raise ValueError(f"--video {video}: nothing to do: {why}")
        for name in unmatched:
            log.warning("%s: no audio named %s.* in %s: skipped", name, Path(name).stem, audio)
    for v, a, o in jobs:
        if o.resolve() in (v.resolve(), a.resolve()):
            raise ValueError(f"-o {o} is an input of the job ({v} + {a}): refusing to overwrite it; choose another output")
    return jobs


def preflight(video: Path, audio: Path, output: Path) -> None:
    """What can fail before the expensive part, in one clear line each: unreadable inputs, an
    output folder that cannot be written."""
    info = probe(str(video))  # raises MediaError naming the file
    if info.n_frames == 0:
        raise MediaError(f"--video {video}: no frames")
    duration, _ = probe_audio_file(str(audio))
    if duration <= 0:
        raise MediaError(f"--audio {audio}: the audio is empty")
    folder = output.parent if str(output.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe_path = tempfile.mkstemp(prefix=".stylesync-write-test-", dir=folder)
        os.close(fd)
        os.remove(probe_path)
    except OSError as e:
        raise PermissionError(f"-o {output}: cannot write in {folder} ({e.strerror or e})") from e


def personal_dir(params: Params, identity: str) -> str:
    """models/personal/<identity>, or an error that lists the identities there are."""
    layout = Layout(params.paths)
    d = layout.personal(identity)
    if not exists(join(d, "config.json")):
        have = sorted(p.rstrip("/").rsplit("/", 2)[-2] for p in glob(layout.personal_root, "*/config.json"))
        raise FileNotFoundError(f"--identity {identity}: no personal model in {d}; personalized identities: "
                                f"{', '.join(have) if have else 'none (run `stylesync personalize`)'}")
    return d


def run(params: Params, args) -> int:
    device = resolve_device(params.device)  # the device policy first: a CUDA that is not there is an early error too
    jobs = pairs(Path(args.video), Path(args.audio), Path(args.output))
    batch = Path(args.video).is_dir()
    if not batch:
        preflight(*jobs[0])
    layout = Layout(params.paths)
    gen_dir = args.checkpoint or layout.generator  # local path or URI
    personal = personal_dir(params, args.identity) if args.identity else None
    lm = params.preprocess.landmarks
    if lm.backend == "precomputed":  # real videos: detect landmarks (sidecar files come with --landmarks)
        lm = dataclasses.replace(lm, backend="auto")
    if args.face is not None:
        lm = dataclasses.replace(lm, face=args.face)
    syncer = Lipsyncer.from_dirs(gen_dir, personal, cfg=params.infer, landmarks=lm, scenes=params.preprocess.scenes,
                                 device=device)
    if not batch:
        syncer.run(*jobs[0], landmarks=args.landmarks, start=args.start, end=args.end)
        return 0
    done, failed = [], []
    for v, a, o in jobs:  # one bad file does not stop the batch
        try:
            preflight(v, a, o)
            rep = syncer.run(v, a, o, landmarks=args.landmarks, start=args.start, end=args.end)
            done.append({"video": str(v), "audio": str(a), "output": str(o), "frames": rep.frames,
                         "frames_without_face": rep.frames_without_face})
        except Exception as e:  # noqa: BLE001 - recorded with its reason, the batch goes on
            reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            failed.append({"video": str(v), "audio": str(a), "reason": reason})
            log.error("%s: failed: %s", v, reason)
    report = Path(args.output) / "sync_report.json"
    write_json(report, {"ok": len(done), "failed": len(failed), "done": done, "failures": failed})
    log.info("sync: %d of %d videos done, %d failed (report: %s)", len(done), len(jobs), len(failed), report)
    for f in failed:
        log.error("failed: %s: %s", f["video"], f["reason"])
    return 1 if failed else 0
