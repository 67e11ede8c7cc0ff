"""Stage `render`: demo test videos lip-synced to another identity's audio (renders/*.mp4, index.json)."""
from __future__ import annotations

import logging
from pathlib import Path

from ..config import Params
from ..infer import Lipsyncer
from ..io import read_parquet, safe_name, write_json
from ..layout import Layout
from ..runtime.device import resolve_device

log = logging.getLogger(__name__)


def render(params: Params) -> list[dict]:
    rows = [r for r in read_parquet(params.paths.manifest).to_pylist() if r["split"] == "test" and not r.get("probe_error")]
    picked, seen = [], set()
    for r in sorted(rows, key=lambda r: r["clip_id"]):  # one clip per identity, in a fixed order
        if r["identity"] not in seen:
            picked.append(r)
            seen.add(r["identity"])
        if len(picked) == params.render.videos:
            break
    if len(picked) < 2:
        raise ValueError("render needs test clips of at least two identities")
    syncer = Lipsyncer.from_dirs(Layout(params.paths).generator, cfg=params.infer,
                                 landmarks=params.preprocess.landmarks, scenes=params.preprocess.scenes,
                                 device=resolve_device(params.device))
    out_dir = Path(params.render.out)
    done = []
    for i, video in enumerate(picked):
        voice = picked[(i + 1) % len(picked)]
        out = out_dir / f"{safe_name(video['identity'])}_says_{safe_name(voice['identity'])}.mp4"
        rep = syncer.run(video["path"], voice["audio_path"] or voice["path"], out,
                         landmarks=video.get("landmarks_path"), progress=False)
        done.append({"video": video["clip_id"], "audio": voice["clip_id"], "output": str(out), "frames": rep.frames,
                     "frames_without_face": rep.frames_without_face, "fps": round(rep.fps, 2)})
    write_json(out_dir / "index.json", done)
    return done


def run(params: Params, args) -> int:
    for d in render(params):
        log.info("rendered %s", d["output"])
    return 0
