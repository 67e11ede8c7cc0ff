"""Benchmark the generator and discriminator: forward and forward+backward time, images/s, FLOPs
per image, achieved GFLOP/s and peak memory, at the paper size (256) and the demo size.

    python bench/model.py                       # CPU, sizes 256 and the demo size, batch 4
    python bench/model.py --device cuda --bf16 --compile
    python bench/model.py --sizes 256 --models G --modes fwd --precision both \
        --authors-code /path/to/StyleSync_PyTorch  # ours fp32 / bf16 beside the authors' generator, one run

`--authors-code` is a checkout of the authors' released model code (github.com/guanjz20/StyleSync_PyTorch,
never part of this project): its `FullGenerator(256, 512, 8, face_z=True)` forward is timed with the same
loop, inputs and thread count (CPU only: on CUDA it would build their extension ops). bf16 rows also
report how far the output is from the fp32 forward of the same weights.

Each configuration runs in a fresh process so that peak memory (RSS on CPU, allocator peak on GPU)
is its own. Results: a Markdown table on stdout and JSON lines in bench/results/.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import resource
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from isolated import run_isolated  # bench/ is on sys.path when a bench runs as a script

from stylesync.config import load_params
from stylesync.eval.metrics import psnr
from stylesync.models.card import generator_inputs
from stylesync.models.discriminator import Discriminator
from stylesync.models.generator import StyleSyncGenerator


def _configs(params, size: int, fused: bool):
    g = params.model.generator
    d = params.model.discriminator
    if size == 256:  # the paper's model, whatever the demo params say
        g = type(g)(fused_modconv=fused)
        d = type(d)()
    else:
        g = type(g)(**{**g.__dict__, "fused_modconv": fused})
    return g, d


def authors_generator(code_dir: str) -> torch.nn.Module:
    """The authors' FullGenerator at 256 (L = 14, channel multiplier 2, n_mlp 8, face_z) from their code."""
    sys.path.insert(0, code_dir)
    try:
        import utils  # type: ignore[import-not-found]  # noqa: F401  # first, as their inference.py:
        from stylesync_model import FullGenerator  # type: ignore[import-not-found]  # the two import each other
    except ImportError as e:
        raise SystemExit(f"--authors-code {code_dir}: cannot import the authors' stylesync_model ({e}); it needs "
                         "a checkout of github.com/guanjz20/StyleSync_PyTorch (and its imports, e.g. `pip install munch`)")
    return FullGenerator(256, 512, 8, channel_multiplier=2, narrow=1, face_z=True, device="cpu")


def _model_and_inputs(job: dict, params, device: torch.device):
    b, size = job["batch"], job["size"]
    if job["model"] == "authors_G":  # their forward takes cat(masked, reference) and one mel window per frame
        return authors_generator(job["authors_code"]).to(device), [torch.rand(b, 6, size, size, device=device),
                                                                   torch.randn(b, 1, 80, 16, device=device)]
    gcfg, dcfg = _configs(params, size, job["fused"])
    if job["model"] == "G":
        return StyleSyncGenerator(gcfg).to(device), [x.to(device) for x in generator_inputs(size, b)]
    return Discriminator(dcfg).to(device), [torch.rand(b, 3, size, size, device=device)]


def _measure(job: dict, queue) -> None:
    torch.manual_seed(0)
    device = torch.device(job["device"])
    model, inputs = _model_and_inputs(job, load_params(job["params"]), device)
    b = job["batch"]
    if job["channels_last"]:
        inputs = [x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 and x.shape[1] > 1 else x for x in inputs]
    train = job["mode"] == "fwd+bwd"
    model.train(train)
    fn = torch.compile(model) if job["compile"] else model
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=job["bf16"])

    def step():
        with amp:
            if train:
                out = fn(*inputs)
                out.float().mean().backward()
            else:
                with torch.no_grad():
                    fn(*inputs)
        if device.type == "cuda":
            torch.cuda.synchronize()

    with FlopCounterMode(display=False) as counter:
        with amp:
            out = model(*inputs)
            if train:
                out.float().mean().backward()
    flops = counter.get_total_flops() / b
    model.zero_grad(set_to_none=True)
    vs_fp32 = _vs_fp32(model, inputs, amp) if job["bf16"] and not train else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    step()  # warm-up (and compilation)
    warm = time.perf_counter() - t0
    times = []
    deadline = time.perf_counter() + job["seconds"]
    while len(times) < job["min_repeats"] or (time.perf_counter() < deadline and len(times) < job["max_repeats"]):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    sec = sorted(times)[len(times) // 2]
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    queue.put({**job, "flops_per_image": flops, "s_per_batch": sec, "images_per_s": b / sec,
               "gflops_per_s": flops * b / sec / 1e9, "peak_mem_gib": peak / 2**30, "warmup_s": warm,
               "repeats": len(times), "vs_fp32": vs_fp32})


def _vs_fp32(model, inputs, amp) -> dict:
    """How far the autocast forward is from the fp32 forward of the same weights (outputs in [0, 1])."""
    with torch.no_grad():
        ref = model(*inputs).float()
        with amp:
            out = model(*inputs).float()
    d = (out - ref).abs()
    return {"max_abs": round(d.max().item(), 5), "mean_abs": round(d.mean().item(), 6),
            "psnr_db": round(psnr(out.clamp(0, 1), ref.clamp(0, 1)).mean().item(), 2)}


def peak_gflops(device: str) -> dict:
    """Reference throughput of this machine: a large fp32 matmul and the largest 3x3 conv of G at 256."""
    dev = torch.device(device)
    a = torch.randn(4096, 4096, device=dev)
    x = torch.randn(4, 512, 128, 128, device=dev).contiguous(memory_format=torch.channels_last)
    w = torch.randn(256, 512, 3, 3, device=dev)
    out = {}
    for name, fn, flops in [("matmul_4096", lambda: a @ a, 2 * 4096**3),
                            ("conv3x3_512_256_128", lambda: torch.nn.functional.conv2d(x, w, padding=1),
                             2 * 4 * 256 * 512 * 9 * 128 * 128)]:
        with torch.no_grad():
            fn()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(3):
                fn()
            if dev.type == "cuda":
                torch.cuda.synchronize()
        out[name] = flops * 3 / (time.perf_counter() - t0) / 1e9
    return out


def _variant(r: dict) -> str:
    if r["model"] == "authors_G":
        return "authors' code"
    return (f"{'fused' if r['fused'] else 'unfused'}{' CL' if r['channels_last'] else ''}{' bf16' if r['bf16'] else ''}"
            f"{' compile' if r['compile'] else ''}")


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="256,demo")
    ap.add_argument("--models", default="G,D")
    ap.add_argument("--modes", default="fwd,fwd+bwd")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--fused", default="false", help="modconv form(s): false, true or both")
    ap.add_argument("--channels-last", default="true", help="true, false or both")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (= --precision bf16)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "both"])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--authors-code", help="a checkout of the authors' model code: time their G at 256 too (CPU)")
    ap.add_argument("--seconds", type=float, default=10.0, help="time budget per configuration")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    precisions = {"fp32": [False], "bf16": [True], "both": [False, True]}["bf16" if args.bf16 else args.precision]
    demo = load_params(args.params).model.generator.size
    sizes = [demo if s == "demo" else int(s) for s in args.sizes.split(",")]
    opts = {"true": [True], "false": [False], "both": [False, True]}
    common = dict(params=args.params, device=args.device, batch=args.batch, compile=args.compile, seconds=args.seconds,
                  min_repeats=2, max_repeats=50)
    jobs = [dict(common, size=s, model=m, mode=mode, fused=f, channels_last=cl, bf16=bf)
            for s in sizes for m in args.models.split(",") for mode in args.modes.split(",")
            for f in (opts[args.fused] if m == "G" else [False]) for cl in opts[args.channels_last] for bf in precisions]
    if args.authors_code:  # their code as released: fp32, NCHW, eager
        jobs.append(dict(common, size=256, model="authors_G", mode="fwd", fused=False, channels_last=False, bf16=False,
                         compile=False, authors_code=args.authors_code))
    peak = peak_gflops(args.device)
    print(f"machine: {machine()}; reference GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()))
    print("| model | size | mode | variant | batch | s/image | images/s | GFLOP/image | GFLOP/s | peak mem GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    results = []
    for job in jobs:
        r = run_isolated(_measure, job)
        if r is None:
            print(f"failed: {job}")
            continue
        results.append(r)
        print(f"| {r['model']} | {r['size']} | {r['mode']} | {_variant(r)} | {r['batch']} | {r['s_per_batch'] / r['batch']:.3f} | {r['images_per_s']:.2f} "
              f"| {r['flops_per_image'] / 1e9:.2f} | {r['gflops_per_s']:.1f} | {r['peak_mem_gib']:.2f} |", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y-%m-%dT%H%M%S")
    with open(out / f"model-{args.device}-{stamp}.jsonl", "w") as f:
        for r in results:
            f.write(json.dumps({**r, "machine": machine(), "date": stamp, "torch": torch.__version__,
                                "reference_gflops": peak}) + "\n")
    g256 = [r for r in results if r["model"] == "G" and r["size"] == 256 and r["mode"] == "fwd"]
    if args.device == "cpu" and g256:  # the one-line summary: the fastest G forward at 256 measured here
        best = min(g256, key=lambda r: r["s_per_batch"])
        authors = [r for r in results if r["model"] == "authors_G"]
        print(json.dumps({"g256_cpu_s_per_frame": round(best["s_per_batch"] / best["batch"], 3),
                          "path": _variant(best), "vs_fp32": best["vs_fp32"],
                          "authors_s_per_frame": round(authors[0]["s_per_batch"] / authors[0]["batch"], 3) if authors else None,
                          "matmul_gflops": round(peak["matmul_4096"], 1)}))


if __name__ == "__main__":
    main()
