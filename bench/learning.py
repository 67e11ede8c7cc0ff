"""Does the demo backbone lip-sync on every seed and on a perturbed copy of its data? Trains the
expert and the backbone from the demo params (params.yaml) for each seed and each data variant, in
a scratch directory, through the same commands `dvc repro` runs (`stylesync train-syncnet`,
`sync-check`, `train`), and prints one row per run with the demo check (val split) and its
criteria (eval/demo_check.py `lip_sync_criteria`). Rows are appended to --out as each run ends, so a
cut-off bench loses none. About 17 min per run on a 2-core CPU.

    python bench/learning.py --seeds 0 1 2 --variant jpeg94=preprocess.jpeg_quality=94
    python bench/learning.py --seeds 0 --steps 200 --syncnet-steps 100        # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW_KEYS = ["mouth_psnr", "mouth_psnr_copy_reference", "mouth_psnr_open", "mouth_psnr_open_copy_reference",
            "mouth_psnr_swapped_audio", "sync_score", "sync_score_shuffled_audio", "sync_score_ground_truth",
            "mouth_opening_corr", "mouth_opening_corr_swapped_audio", "mouth_opening_gain"]


def stylesync(command: str, overrides: list[str], log: Path) -> None:
    """One stage command with overrides, its output appended to `log`; raises on failure."""
    args = [sys.executable, "-m", "stylesync", command]
    for o in overrides:
        args += ["-S", o]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "a") as f:
        f.write(f"$ {' '.join(args)}\n")
        f.flush()
        rc = subprocess.run(args, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    if rc:
        raise RuntimeError(f"`stylesync {command}` failed (exit {rc}); see {log}")


def data_overrides(work: Path, variant: str) -> list[str]:
    """Where a data variant lives: the corpus is shared (deterministic), manifest and shards are its own."""
    d = work / f"data-{variant}"
    return [f"synth.out={work / 'raw'}", f"manifest.sources.0.root={work / 'raw'}",
            f"paths.manifest={d / 'manifest.parquet'}", f"paths.shards={d / 'shards'}", f"paths.metrics={d / 'metrics'}",
            f"paths.data={d}", "tracking.enabled=false"]


def run_overrides(run_dir: Path, seed: int) -> list[str]:
    return [f"seed={seed}", f"paths.models={run_dir / 'models'}", f"paths.runs={run_dir / 'runs'}",
            f"paths.metrics={run_dir / 'metrics'}", f"paths.plots={run_dir / 'plots'}",
            f"paths.reports={run_dir / 'reports'}", f"paths.data={run_dir / 'data'}"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=KEY=VALUE",
                    help="a perturbed copy of the shards, e.g. jpeg94=preprocess.jpeg_quality=94 (run at the first seed)")
    ap.add_argument("--variant-seed", type=int, help="the seed of the variant runs (default: the first of --seeds)")
    ap.add_argument("--variants-only", action="store_true", help="train only the variant runs (the seeds' base runs exist)")
    ap.add_argument("--add-run", action="append", default=[], type=Path, metavar="DIR",
                    help="also report a finished run from its metrics/ folder (e.g. the checkout's own `dvc repro`), seed 0")
    ap.add_argument("--work", type=Path, default=Path("/tmp/stylesync-learning"), help="scratch directory")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "learning.jsonl")
    ap.add_argument("--steps", type=int, help="backbone steps (default: params.yaml)")
    ap.add_argument("--syncnet-steps", type=int, help="expert steps (default: params.yaml)")
    ap.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE", help="extra overrides for every run")
    ap.add_argument("--table", type=Path, metavar="JSONL", help="print the markdown table of a results file and exit")
    args = ap.parse_args()
    if args.table:
        print(table([json.loads(line) for line in args.table.read_text().splitlines() if line.strip()]))
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    extra = list(args.set)
    if args.steps:
        extra += [f"train.steps={args.steps}", f"train.checkpoint_every={args.steps}"]
    if args.syncnet_steps:
        extra += [f"syncnet_train.steps={args.syncnet_steps}"]
    variants = {"base": []} | {v.split("=", 1)[0]: [v.split("=", 1)[1]] for v in args.variant}
    vseed = args.seeds[0] if args.variant_seed is None else args.variant_seed
    runs = [] if args.variants_only else [(seed, "base") for seed in args.seeds]
    runs += [(vseed, v) for v in variants if v != "base"]
    failed = sum(report(args.out, d.resolve(), "base-dvc-repro", 0, "base", []) for d in args.add_run)
    for variant, perturb in variants.items():  # the data first: synth, manifest, shards of each variant
        log = args.work / f"data-{variant}.log"
        for cmd in ("synth", "manifest", "preprocess"):
            print(f"[{variant}] {cmd} ...", flush=True)
            stylesync(cmd, data_overrides(args.work, variant) + perturb + extra, log)
    for seed, variant in runs:
        name = f"{variant}-seed{seed}"
        run_dir = args.work / name
        o = data_overrides(args.work, variant) + variants[variant] + run_overrides(run_dir, seed) + extra
        t0 = time.time()
        for cmd in ("train-syncnet", "sync-check", "train"):
            print(f"[{name}] {cmd} ...", flush=True)
            stylesync(cmd, o, run_dir.with_suffix(".log"))
        failed += report(args.out, run_dir / "metrics", name, seed, variant, variants[variant], time.time() - t0)
    n = len(runs) + len(args.add_run)
    print(f"{n - failed} passed, {failed} failed (runs whose demo check meets every criterion)")
    return 1 if failed else 0


def report(out: Path, metrics: Path, name: str, seed: int, variant: str, perturbation: list[str],
           wall_s: float | None = None) -> bool:
    """Append the run's row (its demo check, criteria, expert and sync check) to `out`; True if it failed."""
    sys.path.insert(0, str(ROOT))
    from stylesync.eval.demo_check import lip_sync_criteria

    train = json.loads((metrics / "train.json").read_text())
    expert = json.loads((metrics / "syncnet.json").read_text())
    sync = json.loads((metrics / "sync.json").read_text())
    check = train["demo_check"]
    row = {"run": name, "seed": seed, "variant": variant, "perturbation": perturbation,
           **{k: check.get(k) for k in ROW_KEYS},
           "expert_val_acc": expert["val_acc"], "expert_val_acc_clear": expert.get("val_acc_clear"),
           "expert_ambiguous_fraction": expert.get("val_ambiguous_fraction"),
           "injected_offsets": sync.get("injected", {}).get("clips"),
           "injected_recovered_within_1": sync.get("injected", {}).get("recovered_within_1"),
           "failed": [k for k, ok in lip_sync_criteria(check).items() if not ok],
           "wall_s": None if wall_s is None else round(wall_s, 1), "steps": train["steps"],
           "date": time.strftime("%Y-%m-%d"), "machine": machine()}
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    return bool(row["failed"])


def table(rows: list[dict]) -> str:
    """The BENCHMARKS.md table: one row per run, the criteria it fails (none: all pass)."""
    def f(v, d=2):
        return "n/a" if v is None else f"{v:.{d}f}"
    head = ("| run | mouth PSNR (copy-ref) | open frames (copy-ref) | swapped audio | sync (shuffled, real) | "
            "opening corr (swapped) | gain | expert val acc | offsets recovered | fails |")
    lines = [head, "|---" * 10 + "|"]
    for r in rows:
        lines.append(
            f"| {r['run']} | {f(r['mouth_psnr'])} ({f(r['mouth_psnr_copy_reference'])}) | "
            f"{f(r['mouth_psnr_open'])} ({f(r['mouth_psnr_open_copy_reference'])}) | {f(r['mouth_psnr_swapped_audio'])} | "
            f"{f(r['sync_score'], 3)} ({f(r['sync_score_shuffled_audio'], 3)}, {f(r['sync_score_ground_truth'], 3)}) | "
            f"{f(r['mouth_opening_corr'])} ({f(r['mouth_opening_corr_swapped_audio'])}) | {f(r['mouth_opening_gain'])} | "
            f"{f(r['expert_val_acc'], 3)} | {f(r['injected_recovered_within_1'])} of {r['injected_offsets']} | "
            f"{', '.join(r['failed']) or 'none'} |")
    return "\n".join(lines)


def machine() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = "unknown CPU"
    return f"{model}, {os.cpu_count()} cores"


if __name__ == "__main__":
    sys.exit(main())
