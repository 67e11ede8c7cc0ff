"""One training step (G step + D step, sync loss, EMA; R1 amortised over d_reg_every) at the paper
size (256, params/paper.yaml) and the demo size: images/s, peak memory, achieved TFLOP/s and MFU.

    python bench/train.py                          # CPU, fp32
    python bench/train.py --device cuda --bf16 --compile --peak-tflops 989   # H100 bf16 dense

Images = windows x 5 frames. FLOPs are counted by torch's FlopCounterMode on one step.
"""
from __future__ import annotations

import argparse
import copy
import json
import resource
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from isolated import run_isolated  # bench/ is on sys.path when a bench runs as a script


def _job(job: dict, q) -> None:
    from stylesync.config import LossConfig, load_params
    from stylesync.models.discriminator import Discriminator
    from stylesync.models.generator import StyleSyncGenerator
    from stylesync.models.syncnet import ExpertSyncNet
    from stylesync.profiles import load_profile
    from stylesync.face.mask import mask_tensor
    from stylesync.train.step import StepModules, backbone_param_groups, make_optimizers, train_step

    torch.manual_seed(0)
    dev = torch.device(job["device"])
    p = load_profile("params.yaml", "params/paper.yaml")[0] if job["profile"] == "paper" else load_params("params.yaml")
    g = StyleSyncGenerator(p.model.generator).to(dev)
    d = Discriminator(p.model.discriminator).to(dev)
    s = ExpertSyncNet(p.model.syncnet).to(dev).eval().requires_grad_(False)
    og, od = make_optimizers(backbone_param_groups(g, p.train.optim), d.parameters(), p.train.optim, 0)
    cl = job["channels_last"]
    m = StepModules(torch.compile(g) if job["compile"] else g, torch.compile(d) if job["compile"] else d, og, od,
                    mask_tensor(g.size, p.face.mask, dev), s, None, copy.deepcopy(g),
                    torch.bfloat16 if job["bf16"] else None, cl)
    b, t, size = job["batch"], 5, g.size
    batch = {"target": torch.rand(b, t, 3, size, size, device=dev), "reference": torch.rand(b, t, 3, size, size, device=dev),
             "mel": torch.randn(b, t, 1, 80, 16, device=dev), "sync_mel": torch.randn(b, 1, 80, 16, device=dev)}
    loss = LossConfig(d_reg_every=0)  # R1 measured apart: it runs once every 16 steps

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    with FlopCounterMode(display=False) as fc:
        train_step(m, batch, 1, loss, p.train.optim)
    flops = fc.get_total_flops()
    train_step(m, batch, 2, loss, p.train.optim)  # warm-up (and compilation)
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    t_end = time.perf_counter() + job["seconds"]
    while len(times) < 2 or (time.perf_counter() < t_end and len(times) < 50):
        t0 = time.perf_counter()
        train_step(m, batch, 3, loss, p.train.optim)
        sync()
        times.append(time.perf_counter() - t0)
    sec = sorted(times)[len(times) // 2]
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tflops = flops / sec / 1e12
    q.put({**job, "size": size, "images_per_step": b * t, "s_per_step": sec, "images_per_s": b * t / sec,
           "tflop_per_step": flops / 1e12, "achieved_tflops": tflops,
           "mfu": tflops / job["peak_tflops"] if job["peak_tflops"] else None, "peak_mem_gib": peak / 2**30})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--profiles", default="paper,demo")
    ap.add_argument("--batch", default="1,4", help="windows per step for paper,demo")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="the device's peak, for MFU")
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    batches = dict(zip(["paper", "demo"], (int(x) for x in args.batch.split(","))))
    rows = []
    for prof in args.profiles.split(","):
        job = dict(device=args.device, profile=prof, batch=batches[prof], bf16=args.bf16, compile=args.compile,
                   channels_last=args.channels_last, peak_tflops=args.peak_tflops, seconds=args.seconds)
        r = run_isolated(_job, job)
        if r is not None:
            rows.append(r)
            print(json.dumps(r), flush=True)
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path(f"bench/results/train-{args.device}-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
