"""Inference speed: the generator alone at 256 (frames/s, batched) and `stylesync sync` end to end
(decode, precomputed landmarks, alignment, generator, paste-back, encode) on a 256-model, on a
synthetic 224x224 clip with a landmark sidecar.

    python bench/infer.py                                  # CPU, fp32
    python bench/infer.py --amp bf16 --compare-fp32        # CPU bf16 (AVX512-BF16/AMX), and its output error
    python bench/infer.py --device cuda --amp bf16 --compile

    python bench/infer.py --memory 60 300                  # peak RSS of `sync` on 1- and 5-minute 720p inputs

`--memory S ...` writes a 1280x720 25-fps clip of S seconds (a face with its landmark sidecar and a
tone), lip-syncs it with the demo-size generator (params.yaml) in a fresh process per length and
reports that process's peak resident memory: streaming keeps it flat in the video's length
(`--code DIR` runs another checkout's stylesync in the child, e.g. the commit before streaming).

`--compare-fp32` re-runs the end-to-end clip in fp32 and reports how far the frames written under
`--amp` are from it (uint8 frames: max and mean absolute difference, PSNR).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from stylesync.infer import Lipsyncer
t0 = time.time()
syncer = Lipsyncer.from_dirs(sys.argv[2])
rep = syncer.run(sys.argv[3], sys.argv[4], sys.argv[5], landmarks=sys.argv[6], progress=False)
print(json.dumps({"frames": rep.frames, "wall_s": round(time.time() - t0, 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def memory_clip(path: Path, seconds: float, width: int = 1280, height: int = 720) -> str:
    """A face (skimage's astronaut) drifting over a 720p frame, its landmark sidecar and a tone."""
    import cv2
    import soundfile
    from skimage.data import astronaut

    from stylesync.face.align import similarity
    from stylesync.face.template import canonical_landmarks
    from stylesync.video import VideoWriter

    face = cv2.resize(astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    points = np.array([[203, 102], [247, 103], [203, 140], [250, 140], [227, 178]], np.float64) / 2  # eyes, mouth, chin
    lm = canonical_landmarks()
    m0 = similarity(np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[48], lm[54], lm[8]]), points)
    lm0 = lm @ m0[:, :2].T + m0[:, 2] + [(width - 256) / 2, (height - 256) / 2]
    base = np.zeros((height, width, 3), np.uint8)
    base[:] = (40, 60, 80)
    base[(height - 256) // 2 : (height + 256) // 2, (width - 256) // 2 : (width + 256) // 2] = face
    n, lms = int(seconds * 25), []
    with VideoWriter(path, 25.0, crf=23, preset="ultrafast") as w:
        for t in range(n):
            m = cv2.getRotationMatrix2D((width / 2, height / 2), 2.0 * np.sin(t / 6), 1.0)
            m[:, 2] += (20 * np.sin(t / 40), 10 * np.cos(t / 30))
            w.write(cv2.warpAffine(base, m, (width, height), borderMode=cv2.BORDER_REFLECT))
            lms.append(lm0 @ m[:, :2].T + m[:, 2])
    np.save(path.with_suffix(".landmarks.npy"), np.stack(lms).astype(np.float32))
    soundfile.write(path.with_suffix(".wav"), 0.3 * np.sin(2 * np.pi * 190 * np.arange(n * 640) / 16000), 16000)
    return str(path.with_suffix(".landmarks.npy"))


def memory(seconds: list[float], code: str) -> dict:
    import subprocess
    import sys

    from stylesync.config import FaceConfig, load_params
    from stylesync.models.generator import StyleSyncGenerator
    from stylesync.models.store import save_generator

    params = load_params("params.yaml")
    torch.manual_seed(0)
    res = {"mode": "memory", "code": code, "generator_size": params.model.generator.size, "runs": []}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        save_generator(d / "gen", StyleSyncGenerator(params.model.generator).eval(), FaceConfig())
        for s in seconds:
            clip = d / f"clip{int(s)}.mp4"
            sidecar = memory_clip(clip, s)
            out = subprocess.run([sys.executable, "-c", CHILD, code, str(d / "gen"), str(clip), str(clip.with_suffix(".wav")),
                                  str(d / f"out{int(s)}.mp4"), sidecar], capture_output=True, text=True)
            if out.returncode:
                row = {"seconds": s, "error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}
            else:
                row = {"seconds": s, "input": "1280x720 25 fps", **json.loads(out.stdout.strip().splitlines()[-1])}
            print(json.dumps(row), flush=True)
            res["runs"].append(row)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--amp", default="off", choices=["auto", "bf16", "off"], help="infer.amp of the runs")
    ap.add_argument("--compare-fp32", action="store_true", help="also run fp32 and report the output difference")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of the end-to-end clip")
    ap.add_argument("--memory", type=float, nargs="+", metavar="SECONDS", help="peak RSS of sync on 720p inputs")
    ap.add_argument("--code", default=str(Path(__file__).resolve().parents[1]), help="stylesync checkout the child runs")
    args = ap.parse_args()
    if args.memory:
        res = memory(args.memory, args.code)
        res["date"], res["machine"] = time.strftime("%Y-%m-%d"), f"cpu x{torch.get_num_threads()}"
        Path("bench/results").mkdir(parents=True, exist_ok=True)
        Path(f"bench/results/infer-memory-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(res, indent=2))
        return
    from stylesync.config import FaceConfig, GeneratorConfig, InferConfig, SynthConfig
    from stylesync.data.synthetic import generate_corpus
    from stylesync.infer import Lipsyncer
    from stylesync.models.card import generator_inputs
    from stylesync.models.generator import StyleSyncGenerator
    from stylesync.models.store import save_generator
    from stylesync.runtime.device import amp_dtype, autocast

    dev = torch.device(args.device)
    torch.manual_seed(0)
    g = StyleSyncGenerator(GeneratorConfig()).to(dev).eval()
    res = {"device": torch.cuda.get_device_name(0) if dev.type == "cuda" else f"cpu x{torch.get_num_threads()}",
           "amp": args.amp, "batch": args.batch, "compile": args.compile}
    fn = torch.compile(g) if args.compile else g
    inp = [x.to(dev) for x in generator_inputs(256, args.batch)]
    if dev.type == "cuda":
        inp = [x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 and x.shape[1] > 1 else x for x in inp]
    with torch.no_grad(), autocast(dev, amp_dtype(args.amp, dev)):
        fn(*inp)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 10 or n < 2:
            fn(*inp)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            n += 1
        res["generator_256_frames_per_s"] = n * args.batch / (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        generate_corpus(SynthConfig(out=str(d / "raw"), identities_dev=1, identities_test=0, videos_per_identity=1,
                                    clips_per_video=1, seconds=args.seconds, workers=1))
        clip = next((d / "raw").rglob("*.mp4"))
        save_generator(d / "gen", g.cpu(), FaceConfig())
        sidecar = str(clip.with_name(clip.stem + ".landmarks.npy"))
        syncer = Lipsyncer.from_dirs(d / "gen", cfg=InferConfig(batch_size=args.batch, amp=args.amp), device=dev)
        syncer.run(clip, clip, d / "warm.mp4", landmarks=sidecar, progress=False)
        rep = syncer.run(clip, clip, d / "out.mp4", landmarks=sidecar, progress=False, keep_frames=True)
        res["end_to_end_frames_per_s"] = rep.fps
        res["end_to_end_frames"] = rep.frames
        res["realtime_factor"] = rep.fps / 25.0
        if args.compare_fp32:
            ours = syncer.last_frames.astype(np.int16)
            syncer.cfg = InferConfig(batch_size=args.batch, amp="off")
            ref = syncer.run(clip, clip, d / "fp32.mp4", landmarks=sidecar, progress=False, keep_frames=True)
            diff = np.abs(ours - syncer.last_frames.astype(np.int16))
            mse = float((diff.astype(np.float64) ** 2).mean())
            res["fp32_end_to_end_frames_per_s"] = ref.fps
            res["vs_fp32"] = {"max_abs": int(diff.max()), "mean_abs": round(float(diff.mean()), 4),
                              "pixels_off_by_more_than_2": round(float((diff > 2).mean()), 5),
                              "psnr_db": round(10 * np.log10(255**2 / mse), 2) if mse else None}
    res["date"] = time.strftime("%Y-%m-%d")
    print(json.dumps(res, indent=2))
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path(f"bench/results/infer-{args.device}-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
