"""Stage `render`: demo test videos lip-synced to another identity's audio (renders/*.mp4, index.json),
each with a strip PNG (reports/strips/): the lower face of the audio's own video above the render's."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from ..config import Params, to_dict
from ..face.landmarks import load_sidecar
from ..infer import Lipsyncer
from ..storage import atomic_write_bytes, read_parquet, safe_name, write_json
from ..layout import Layout
from ..runtime import tracking
from ..runtime.device import resolve_device
from ..video import read_video

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
    out_dir, strips = Path(params.render.out), Path(params.paths.reports) / "strips"
    done = []
    for i, video in enumerate(picked):
        voice = picked[(i + 1) % len(picked)]
        out = out_dir / f"{safe_name(video['identity'])}_says_{safe_name(voice['identity'])}.mp4"
        rep = syncer.run(video["path"], voice["audio_path"] or voice["path"], out,
                         landmarks=video.get("landmarks_path"), progress=False)
        strip = write_strip(voice["path"], voice.get("landmarks_path"), out, video.get("landmarks_path"),
                            strips / f"{out.stem}.png")
        done.append({"video": video["clip_id"], "audio": voice["clip_id"], "output": str(out), "frames": rep.frames,
                     "frames_without_face": rep.frames_without_face, "fps": round(rep.fps, 2), "strip": str(strip)})
    write_json(out_dir / "index.json", done)
    _log_strips(params, done)
    return done


# ------------------------------------------------------------------------------ mouth strips
TILE, GAP, LABEL_H = 112, 2, 16  # tile side, gap between tiles/rows, label band above each row (px)
LOWER_FACE = np.r_[4:13, 48:68]  # lower jaw 4-12 and mouth 48-67 (iBUG 68)
NOSE_TIP = 33


def crop_box(landmarks: Optional[np.ndarray], shape: tuple[int, int], scale: float = 1.3) -> tuple[int, int, int, int]:
    """One fixed (x0, y0, x1, y1) box around the lower face of a clip.

    landmarks: (T, 68, 2) frame pixels (NaN rows: no face) or None; shape: the frame's (H, W).
    A square `scale` times the median size of the box of lower jaw + mouth below the nose tip,
    centred on it; without usable landmarks the lower-centre half of the frame."""
    h, w = shape
    ok = None if landmarks is None else landmarks[np.isfinite(landmarks).all(axis=(1, 2))]  # (T', 68, 2)
    if ok is None or not len(ok):
        return w // 4, h // 2, w - w // 4, h
    pts = ok[:, LOWER_FACE]  # (T', 29, 2)
    x0, x1 = pts[..., 0].min(1), pts[..., 0].max(1)  # (T',)
    y0, y1 = np.maximum(pts[..., 1].min(1), ok[:, NOSE_TIP, 1]), pts[..., 1].max(1)
    side = max(1, int(round(min(scale * np.median(np.maximum(x1 - x0, y1 - y0)), w, h))))
    left = int(np.clip(round(np.median((x0 + x1) / 2) - side / 2), 0, w - side))  # shifted, not cut, into the frame
    top = int(np.clip(round(np.median((y0 + y1) / 2) - side / 2), 0, h - side))
    return left, top, left + side, top + side


def strip_indices(times_a: np.ndarray, times_b: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n frame indices (n,) into each of two clips, at the same times evenly spaced over the shorter one."""
    ta, tb = times_a - times_a[0], times_b - times_b[0]  # (Ta,), (Tb,)
    ts = np.linspace(0.0, min(ta[-1], tb[-1]), n)  # (n,)
    return tuple(np.abs(t[None] - ts[:, None]).argmin(1) for t in (ta, tb))


def _tiles(frames: np.ndarray, idx: np.ndarray, box: tuple[int, int, int, int], label: str) -> np.ndarray:
    """frames (T, H, W, 3) RGB -> one labelled row (LABEL_H + TILE, n * (TILE + GAP) - GAP, 3)."""
    x0, y0, x1, y1 = box
    interp = cv2.INTER_CUBIC if x1 - x0 < TILE else cv2.INTER_AREA
    tiles = [cv2.resize(np.ascontiguousarray(frames[i, y0:y1, x0:x1]), (TILE, TILE), interpolation=interp) for i in idx]
    row = np.full((LABEL_H + TILE, len(idx) * (TILE + GAP) - GAP, 3), 255, np.uint8)
    for k, t in enumerate(tiles):
        row[LABEL_H:, k * (TILE + GAP) : k * (TILE + GAP) + TILE] = t
    cv2.putText(row, label, (2, LABEL_H - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return row


def _landmarks(path: Optional[str]) -> Optional[np.ndarray]:
    """A sidecar's main-face track (T, 68, 2), or None."""
    return None if not path else load_sidecar(path).landmarks


def write_strip(voice_video: str | Path, voice_landmarks: Optional[str], render_video: str | Path,
                render_landmarks: Optional[str], out_png: str | Path, n: int = 10) -> Path:
    """A PNG of the lower face at n times: the driving audio's own video on top, the render below.

    Rows are (LABEL_H + TILE) high with GAP between them; n tiles of TILE x TILE, GAP apart."""
    (fa, ta), (fb, tb) = read_video(voice_video), read_video(render_video)  # (T, H, W, 3) RGB, (T,)
    ia, ib = strip_indices(ta, tb, n)
    top = _tiles(fa, ia, crop_box(_landmarks(voice_landmarks), fa.shape[1:3]), "audio's own video")
    bottom = _tiles(fb, ib, crop_box(_landmarks(render_landmarks), fb.shape[1:3]), "render")
    img = np.concatenate([top, np.full((GAP, top.shape[1], 3), 255, np.uint8), bottom])  # (2 * (LABEL_H + TILE) + GAP, W, 3)
    ok, png = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"{out_png}: PNG encoding failed")
    atomic_write_bytes(out_png, png.tobytes())
    return Path(out_png)


def _log_strips(params: Params, done: list[dict]) -> None:
    """One MLflow run of the render stage: its settings, frame counts, the index and the strips (strips/)."""
    counts = {k: sum(d[k] for d in done) for k in ("frames", "frames_without_face")}
    tracking.log_stage(params.tracking, "render", "render",
                       {"render": to_dict(params.render), "infer": to_dict(params.infer)},
                       {"videos": len(done), **counts}, [d["strip"] for d in done], "strips", {"index.json": done})


def run(params: Params, args) -> int:
    for d in render(params):
        log.info("rendered %s", d["output"])
    return 0
