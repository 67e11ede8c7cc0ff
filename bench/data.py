"""Data-path benchmarks (results in BENCHMARKS.md):

1. preprocessing throughput (frames/s per core, precomputed landmarks) next to decode-only
   throughput of the same clips in the same run;
2. the face-alignment backend's per-frame cost (S3FD every N frames + batched FAN; random weights
   in face-alignment's own format: the cost does not depend on the weights' values);
3. the training loader (samples/s per core) at 256 and at the demo size;
4. the Wav2Lip mel of 10 s of audio, cold (fresh process) and warm;
5. the frame codec of the shards: JPEG vs H.264 (bytes/frame, PSNR, decode time for a window).

    python bench/data.py --clips 16            # makes its own synthetic clips in a temp dir
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_corpus(root: Path, n: int, seconds: float) -> Path:
    from stylesync.config import ManifestConfig, SourceConfig, SynthConfig
    from stylesync.data.manifest import build_manifest, write_manifest
    from stylesync.data.synthetic import generate_corpus

    generate_corpus(SynthConfig(out=str(root / "raw"), identities_dev=max(1, n // 2), identities_test=1,
                                videos_per_identity=1, clips_per_video=2, seconds=seconds, workers=2))
    table = build_manifest(ManifestConfig(sources=[SourceConfig("synthetic", str(root / "raw"))], workers=4))
    write_manifest(table, root / "manifest.parquet")
    return root / "manifest.parquet"


def bench_preprocess(root: Path, manifest: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from stylesync.config import Params
    from stylesync.data.build_shards import build_shards
    from stylesync.video import read_audio, read_video

    rows = pq.read_table(manifest).to_pylist()
    p = Params()
    p.paths.manifest, p.paths.shards, p.paths.metrics = str(manifest), str(root / "shards"), str(root / "metrics")
    p.preprocess.shard_size = 8
    # Warm worker: one clip through the whole stage first (imports, the mel's numba JIT, the first
    # parquet/shard writes), as a long-running Ray worker pays that once per process.
    warm = copy.deepcopy(p)
    warm.paths.manifest, warm.paths.shards = str(root / "warmup.parquet"), str(root / "warmup_shards")
    pq.write_table(pa.Table.from_pylist(rows[:1]), warm.paths.manifest)
    t0 = time.perf_counter()
    build_shards(warm, executor="local")
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    frames = 0
    for r in rows:  # decode only: what every preprocessing must do anyway
        f, _ = read_video(r["path"])
        read_audio(r["path"])
        frames += len(f)
    decode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    s = build_shards(p, executor="local")
    pre_s = time.perf_counter() - t0
    return {"clips": len(rows), "frames": frames, "decode_only_frames_per_s_per_core": frames / decode_s,
            "preprocess_frames_per_s_per_core": s["frames"] / pre_s, "ratio": (s["frames"] / pre_s) / (frames / decode_s),
            "warmup_one_clip_s": warmup_s,
            "note": "one warm process (torch threads 1); the Ray stage runs one such worker per core"}


def bench_face_alignment(root: Path, manifest: Path, detect_every: int) -> dict:
    import pyarrow.parquet as pq
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    from stylesync.config import LandmarksConfig
    from stylesync.face.landmarks import FAN_FILE, S3FD_FILE, FaceAlignmentLandmarks
    from stylesync.video import read_video

    home = root / "torch_home"
    ck = home / "hub" / "checkpoints"
    ck.mkdir(parents=True, exist_ok=True)
    torch.save(FAN(4).state_dict(), ck / FAN_FILE)
    torch.save(s3fd().state_dict(), ck / S3FD_FILE)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    fa = FaceAlignmentLandmarks(LandmarksConfig(backend="face_alignment", weights_dir=str(home),
                                                detect_every=detect_every, batch_size=32), device)
    frames, _ = read_video(pq.read_table(manifest).to_pylist()[0]["path"])
    frames = frames[:50]
    fa(frames[:10])  # warm-up (numba JIT of the heatmap decoding)
    t0 = time.perf_counter()
    fa(frames)
    dt = time.perf_counter() - t0
    return {"device": device, "frames": len(frames), "detect_every": detect_every, "s_per_frame": dt / len(frames),
            "frame_size": list(frames.shape[1:3])}


def bench_loader(shards: Path, size: int, seconds: float = 20.0) -> dict:
    from stylesync.config import LoaderConfig, PathsConfig
    from stylesync.data.loader import make_loader, training_pipeline
    from stylesync.layout import Layout

    cfg = LoaderConfig(batch_size=8, windows_per_clip=4, shuffle_buffer=64, workers=0)
    it = iter(make_loader(training_pipeline(Layout(PathsConfig(shards=str(shards))).shard_urls("train"), cfg, size), 0))
    next(it)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += len(next(it)["clip_id"])
    dt = time.perf_counter() - t0
    return {"size": size, "samples_per_s_per_core": n / dt,
            "sample": "5 target + 5 reference frames, 5 mel windows, 1 sync window"}


def bench_mel() -> dict:
    code = ("import time, numpy as np; t=time.perf_counter(); from stylesync.audio import melspectrogram; "
            "x=np.random.default_rng(0).standard_normal(160000).astype(np.float32)*0.1; melspectrogram(x); "
            "cold=time.perf_counter()-t; t=time.perf_counter(); [melspectrogram(x) for _ in range(10)]; "
            "print(cold, (time.perf_counter()-t)/10)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return {"cold_s_including_import": float(out[0]), "warm_s": float(out[1]), "audio_s": 10.0}


def bench_codecs(shards: Path) -> dict:
    from stylesync.config import PathsConfig
    from stylesync.data.loader import iter_clips
    from stylesync.data.sample import decode_frames, encode_frames
    from stylesync.layout import Layout
    from stylesync.eval.metrics import psnr

    meta, frames, _ = next(iter_clips(Layout(PathsConfig(shards=str(shards))).shard_urls("train")))
    out = {}
    for codec, kw in (("jpeg", {"quality": 95}), ("h264", {"crf": 12})):
        field, blob = encode_frames(frames, codec, **kw)
        sample = {field: blob}
        t0 = time.perf_counter()
        for _ in range(5):
            got = decode_frames(sample, indices=list(range(10, 20)))  # one training example: 10 frames
        dt = (time.perf_counter() - t0) / 5
        ref = torch.from_numpy(frames[10:20]).permute(0, 3, 1, 2).float() / 255
        q = psnr(torch.from_numpy(got).permute(0, 3, 1, 2).float() / 255, ref).mean().item()
        out[codec] = {"bytes_per_frame": len(blob) / len(frames), "psnr_db": q, "decode_10_frames_ms": dt * 1000}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--detect-every", type=int, default=5)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    torch.set_num_threads(1)  # per-core figures
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(".cache/numba").resolve()))
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        manifest = make_corpus(root, args.clips, args.seconds)
        res = {"preprocess": bench_preprocess(root, manifest)}
        res["loader"] = [bench_loader(root / "shards", s) for s in (256, 64)]
        res["codecs"] = bench_codecs(root / "shards")
        res["mel"] = bench_mel()
        res["face_alignment"] = bench_face_alignment(root, manifest, args.detect_every)
    res["machine"] = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(res, indent=2))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"data-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(res, indent=2))
    print(json.dumps({"preprocess_decode_ratio": round(res["preprocess"]["ratio"], 3)}))  # the one-line summary


if __name__ == "__main__":
    main()
