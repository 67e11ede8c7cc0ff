"""`make gpu-check`: the project's GPU readiness in one command (about 6-8 minutes on one H100/H200,
no network). Parts, each a subprocess with its own time limit:

1. model: the generator at 256, forward, batch 32: fp32, bf16 autocast (bench/model.py): frames/s,
   TFLOP/s, MFU against the card's peak (table below), the bf16 output's distance from fp32;
2. train_step: one paper-profile step (bench/train.py, bf16): images/s, peak memory, MFU;
3. sync: `stylesync sync` end to end at 256 (bench/infer.py, bf16, then fp32): frames/s, and how far
   the bf16 frames are from the fp32 ones;
4. model_compile: bf16 + torch.compile (after the others: it compiles for minutes);
5. stages: the demo stages with `device: cuda` at the demo size in a scratch directory: synth,
   manifest, preprocess, train-syncnet (100 steps), sync-check, train (200 steps), personalize (one
   identity), evaluate, render: wall time of each.

Writes bench/results/gpu-check.json (after every part, so a run cut short keeps what it measured)
and prints the BENCHMARKS.md rows. Without a GPU it says so and skips every part (exit 0); a part
whose packages this Python lacks (a bare GPU image without Ray, say) is skipped with their names,
never counted as run. `--device cpu --quick` runs every part on the CPU at tiny settings, which is
how the script itself is tested here (tests/test_gpu_check.py, slow).

    make gpu-check                                  # python bench/gpu_check.py
    python bench/gpu_check.py --device cpu --quick  # the dry run
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# dense peak TFLOP/s (bf16 tensor cores, fp32 without TF32) by device-name substring
PEAK_TFLOPS = {"H200": (989.0, 67.0), "H100": (989.0, 67.0), "A100": (312.0, 19.5), "L40S": (362.0, 91.6),
               "A10": (125.0, 31.2)}
TARGETS = {"g256_bf16_frames_per_s": 500, "end_to_end_frames_per_s": 100, "train_step_mfu": 0.35}
# top-level modules each part imports beyond torch (a part is skipped, with their names, when one is missing)
REQUIRES = {"model": ["omegaconf", "yaml"], "model_compile": ["omegaconf", "yaml"],
            "train_step": ["omegaconf", "yaml", "cv2"],
            "stages": ["omegaconf", "ray", "mlflow", "webdataset", "av", "librosa", "pyarrow", "pandas",
                       "scenedetect", "cv2", "skimage", "dlib"],
            "sync": ["omegaconf", "av", "decord", "librosa", "scenedetect", "cv2", "skimage", "safetensors"]}
BENCH = Path(__file__).resolve().parent
PY = sys.executable


def peak_of(name: str) -> tuple[float, float] | None:
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def _run(cmd: list[str], limit_s: float, cwd: Path | None = None, env: dict | None = None) -> tuple[int, str, float]:
    """(return code, last output lines, wall seconds) of one part; a part over its limit is killed (rc 124)."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                           timeout=limit_s)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = 124, f"{e.stdout or ''}{e.stderr or ''}"[-4000:] + f"\n(killed after {limit_s:.0f} s)"
    return rc, "\n".join(out.splitlines()[-15:]), time.perf_counter() - t0


def missing_modules(part: str) -> list[str]:
    """The modules `part` needs that this Python cannot import."""
    return [m for m in REQUIRES.get(part, []) if importlib.util.find_spec(m) is None]


def _newest(pattern: str, since: float) -> Path | None:
    files = [f for f in (BENCH / "results").glob(pattern) if f.stat().st_mtime >= since]
    return max(files, key=lambda f: f.stat().st_mtime) if files else None


def part_model(dev: str, quick: bool, peak, compiled: bool = False) -> dict:
    """G forward at 256: fp32 and bf16 eager, or (`compiled`) bf16 under torch.compile."""
    size, batch, secs = ("demo", 2, "1") if quick else ("256", 32, "5")
    out = {}
    variants = (("bf16_compile", ["--bf16", "--compile"]),) if compiled else (("fp32", []), ("bf16", ["--bf16"]))
    for name, flags in variants:
        t0 = time.time()
        rc, tail, wall = _run([PY, str(BENCH / "model.py"), "--device", dev, "--sizes", size, "--models", "G",
                               "--modes", "fwd", "--batch", str(batch), "--seconds", secs, *flags], 300 if compiled else 150)
        f = _newest(f"model-{dev}-*.jsonl", t0)
        if rc or f is None:
            out[name] = {"rc": rc, "tail": tail}
            continue
        r = json.loads(f.read_text().splitlines()[0])
        tflops = r["gflops_per_s"] / 1e3
        top = peak[0 if "bf16" in name else 1] if peak else None
        out[name] = {"frames_per_s": round(r["images_per_s"], 2), "tflops": round(tflops, 2),
                     "mfu": round(tflops / top, 4) if top else None, "peak_mem_gib": round(r["peak_mem_gib"], 2),
                     "size": r["size"], "batch": r["batch"], "vs_fp32": r.get("vs_fp32"), "wall_s": round(wall, 1)}
    return out


def _round(x):
    return float(f"{x:.4g}") if isinstance(x, float) else x


def part_train(dev: str, quick: bool, peak) -> dict:
    t0 = time.time()
    prof, batch = ("demo", "1,2") if quick else ("paper", "8,4")
    rc, tail, wall = _run([PY, str(BENCH / "train.py"), "--device", dev, "--profiles", prof, "--batch", batch,
                           "--seconds", "2" if quick else "20", *([] if quick else ["--bf16"]),
                           "--peak-tflops", str(peak[0] if peak else 0)], 300)
    f = _newest(f"train-{dev}-*.json", t0)
    if rc or f is None:
        return {"rc": rc, "tail": tail}
    r = json.loads(f.read_text())[0]
    return {k: _round(r.get(k)) for k in ("profile", "batch", "images_per_s", "peak_mem_gib", "achieved_tflops", "mfu")} | {
        "wall_s": round(wall, 1)}


def demo_stages(quick: bool) -> list[tuple[str, list[str]]]:
    """(name, `stylesync` arguments) of the demo stages, in order."""
    steps = ("10", "10", "4") if quick else ("100", "200", "50")
    return [("synth", ["synth"]), ("manifest", ["manifest"]), ("preprocess", ["preprocess"]),
            ("train_syncnet", ["train-syncnet", "-S", f"syncnet_train.steps={steps[0]}",
                               "-S", f"syncnet_train.eval_every={steps[0]}"]),
            ("sync_check", ["sync-check"]),
            ("train_backbone", ["train", "-S", f"train.steps={steps[1]}", "-S", f"train.checkpoint_every={steps[1]}"]),
            ("personalize", ["personalize", "-S", f"personalize.identities=[{'id00002' if quick else 'id00016'}]"]),
            ("evaluate", ["evaluate", "-S", f"evaluate.max_clips={2 if quick else 8}"]),
            ("render", ["render", "-S", "render.videos=2"])]


def part_stages(dev: str, quick: bool, root: Path) -> dict:
    """The demo stages with `device` in a scratch copy of params.yaml's layout under `root`."""
    common = ["-S", f"device={dev}", "-S", f"synth.out={root}/raw", "-S", f"manifest.sources[0].root={root}/raw",
              *[x for k in ("data", "manifest", "shards", "models", "metrics", "plots", "reports", "runs")
                for x in ("-S", f"paths.{k}={root}/{k}" + (".parquet" if k == "manifest" else ""))],
              "-S", f"render.out={root}/renders", "-S", f"tracking.tracking_uri=sqlite:///{root}/mlflow.db",
              # the sync check runs and is timed, but its table is not applied: an expert of 100 steps cannot
              # rank offsets, and every clip would fail its confidence threshold
              "-S", "sync_check.apply=false"]
    if quick:
        common += ["-S", "synth.identities_dev=2", "-S", "synth.identities_test=2", "-S", "synth.seconds=2.0",
                   "-S", "personalize.epochs=0.2"]
    out = {}
    for name, args in demo_stages(quick):
        rc, tail, wall = _run([PY, "-m", "stylesync", *args, *common], 600)
        out[name] = {"rc": rc, "wall_s": round(wall, 1)} | ({"tail": tail} if rc else {})
        if rc:
            break
    return out


def part_sync(dev: str, quick: bool) -> dict:
    t0 = time.time()
    rc, tail, wall = _run([PY, str(BENCH / "infer.py"), "--device", dev, "--batch", "2" if quick else "16",
                           "--seconds", "1" if quick else "8", "--amp", "bf16", "--compare-fp32"], 400)
    f = _newest(f"infer-{dev}-*.json", t0)
    if rc or f is None:
        return {"rc": rc, "tail": tail}
    r = json.loads(f.read_text())
    return {k: _round(r.get(k)) for k in ("generator_256_frames_per_s", "end_to_end_frames_per_s", "realtime_factor",
                                          "fp32_end_to_end_frames_per_s", "vs_fp32")} | {
        "wall_s": round(wall, 1)}


def rows(res: dict) -> list[str]:
    """BENCHMARKS.md rows of a run: one per measured configuration, one per skipped part."""
    parts, head = res["parts"], f"| {res['device_name']} | {res['date']} |"
    models = {**parts.get("model", {}), **parts.get("model_compile", {})}
    out = [f"{head} G {v.get('size')} fwd {k} (batch {v.get('batch')}): {v.get('frames_per_s')} frames/s, {v.get('tflops')} TFLOP/s, "
           f"MFU {v.get('mfu')}, peak {v.get('peak_mem_gib')} GiB |" if "rc" not in v else f"{head} G 256 fwd {k}: failed (rc {v['rc']}) |"
           for k, v in models.items()]
    if "train_step" in parts:
        t = parts["train_step"]
        out.append(f"{head} train step ({t.get('profile')}, batch {t.get('batch')}): {t.get('images_per_s')} images/s, "
                   f"{t.get('achieved_tflops')} TFLOP/s, MFU {t.get('mfu')}, peak {t.get('peak_mem_gib')} GiB |")
    if "stages" in parts:
        out.append(f"{head} demo stages: " + ", ".join(f"{k} {v['wall_s']} s" + (f" (rc {v['rc']})" if v.get("rc") else "")
                                                      for k, v in parts["stages"].items()) + " |")
    if "sync" in parts:
        s = parts["sync"]
        out.append(f"{head} `stylesync sync` at 256: G alone {s.get('generator_256_frames_per_s')} frames/s, "
                   f"end to end {s.get('end_to_end_frames_per_s')} frames/s |")
    out += [f"{head} {part}: skipped ({why}) |" for part, why in res.get("skipped", {}).items()]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --quick: the dry run)")
    ap.add_argument("--quick", action="store_true", help="tiny settings (the CPU dry run)")
    ap.add_argument("--parts", default="model,train_step,sync,model_compile,stages",
                    help="in this order (the slowest to build last: a run cut short keeps the others)")
    ap.add_argument("--out", default=str(BENCH / "results" / "gpu-check.json"))
    args = ap.parse_args()
    import torch

    (BENCH / "results").mkdir(parents=True, exist_ok=True)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        res = {"gpu": None, "date": time.strftime("%Y-%m-%d"), "skipped": args.parts.split(","),
               "why": "no GPU: torch.cuda.is_available() is False on this machine"}
        print("gpu-check: NO GPU on this machine (torch.cuda.is_available() is False): every part is skipped. "
              "Run it on a GPU machine, or `python bench/gpu_check.py --device cpu --quick` for the dry run.")
        _write(args.out, res)
        return 0
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"cpu x{os.cpu_count()}"
    peak = peak_of(name)
    res = {"gpu": name if args.device.startswith("cuda") else None, "device_name": name, "quick": args.quick,
           "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "peak_tflops_bf16_fp32": peak,
           "targets": TARGETS, "parts": {}, "skipped": {}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as root:
        runs = {"model": lambda: part_model(args.device, args.quick, peak),
                "model_compile": lambda: part_model(args.device, args.quick, peak, compiled=True),
                "train_step": lambda: part_train(args.device, args.quick, peak),
                "stages": lambda: part_stages(args.device, args.quick, Path(root)),
                "sync": lambda: part_sync(args.device, args.quick)}
        for part in args.parts.split(","):
            lacks = missing_modules(part)
            if lacks:
                res["skipped"][part] = f"this Python lacks {', '.join(lacks)}"
                print(f"gpu-check: {part} SKIPPED: this Python lacks {', '.join(lacks)}", flush=True)
                continue
            print(f"gpu-check: {part} ...", flush=True)
            res["parts"][part] = runs[part]()
            print(json.dumps(res["parts"][part]), flush=True)
            res["wall_s"] = round(time.perf_counter() - t0, 1)
            _write(args.out, res)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    _write(args.out, res)
    print("\n".join(rows(res)))
    failed = [p for p, v in res["parts"].items() if v.get("rc") or any(isinstance(x, dict) and x.get("rc") for x in v.values())]
    print(f"gpu-check: {res['wall_s']} s; " + (f"failed parts: {', '.join(failed)}" if failed else "every part that ran passed")
          + (f"; skipped: {', '.join(res['skipped'])}" if res["skipped"] else ""))
    return 1 if failed else 0


def _write(path: str, res: dict) -> None:
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(res, indent=2))
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
