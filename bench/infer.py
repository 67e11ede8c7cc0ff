"""Inference speed: the generator alone at 256 (frames/s, batched) and `stylesync sync` end to end
(decode, precomputed landmarks, alignment, generator, paste-back, encode) on a 256-model, on a
synthetic 224x224 clip with a landmark sidecar.

    python bench/infer.py                                  # CPU, fp32
    python bench/infer.py --amp bf16 --compare-fp32        # CPU bf16 (AVX512-BF16/AMX), and its output error
    python bench/infer.py --device cuda --amp bf16 --compile

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--amp", default="off", choices=["auto", "bf16", "off"], help="infer.amp of the runs")
    ap.add_argument("--compare-fp32", action="store_true", help="also run fp32 and report the output difference")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of the end-to-end clip")
    args = ap.parse_args()
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
        rep = syncer.run(clip, clip, d / "out.mp4", landmarks=sidecar, progress=False)
        res["end_to_end_frames_per_s"] = rep.fps
        res["end_to_end_frames"] = rep.frames
        res["realtime_factor"] = rep.fps / 25.0
        if args.compare_fp32:
            ours = syncer.last_frames.astype(np.int16)
            syncer.cfg = InferConfig(batch_size=args.batch, amp="off")
            ref = syncer.run(clip, clip, d / "fp32.mp4", landmarks=sidecar, progress=False)
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
