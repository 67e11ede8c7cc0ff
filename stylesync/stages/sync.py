"""`stylesync sync`: lip-sync a video (or a folder of videos) to an audio track with infer.Lipsyncer."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ..config import Params
from ..infer import Lipsyncer
from ..layout import Layout
from ..runtime.device import resolve_device

log = logging.getLogger(__name__)
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm"}


def pairs(video: Path, audio: Path, output: Path) -> list[tuple[Path, Path, Path]]:
    """Batch mode: a folder of videos, with one audio for all or an audio folder matched by name."""
    if not video.is_dir():
        return [(video, audio, output)]
    vids = sorted(p for p in video.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    out = []
    for v in vids:
        a = audio if not audio.is_dir() else next((p for p in audio.iterdir() if p.stem == v.stem), None)
        if a is None:
            log.warning("no audio named %s.* in %s: skipped", v.stem, audio)
            continue
        out.append((v, a, output / f"{v.stem}.mp4"))
    return out


def run(params: Params, args) -> int:
    layout = Layout(params.paths)
    gen_dir = args.checkpoint or layout.generator  # local path or URI
    personal = layout.personal(args.identity) if args.identity else None
    lm = params.preprocess.landmarks
    if lm.backend == "precomputed":  # real videos: detect landmarks (sidecar files come with --landmarks)
        lm = dataclasses.replace(lm, backend="auto")
    if args.face is not None:
        lm = dataclasses.replace(lm, face=args.face)
    syncer = Lipsyncer.from_dirs(gen_dir, personal, cfg=params.infer, landmarks=lm, scenes=params.preprocess.scenes,
                                 device=resolve_device(params.device))
    for v, a, o in pairs(Path(args.video), Path(args.audio), Path(args.output)):
        syncer.run(v, a, o, landmarks=args.landmarks, start=args.start, end=args.end)
    return 0
