"""`make gpu-check`: says clearly that there is no GPU (and skips) without one; its dry run on the
CPU (`--device cpu --quick`) runs every part through the same code (slow)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _check(tmp_path, *args, env=None, timeout=60):
    out = tmp_path / "gpu-check.json"
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--out", str(out), *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    return p, json.loads(out.read_text())


def test_without_a_gpu_it_says_so_and_skips(tmp_path):
    p, res = _check(tmp_path, env={"CUDA_VISIBLE_DEVICES": ""})
    assert p.returncode == 0, p.stderr
    assert "NO GPU" in p.stdout and res["gpu"] is None and res["skipped"] == ["model", "train_step", "sync", "model_compile", "stages"]


@pytest.mark.slow
def test_the_dry_run_runs_every_part_on_the_cpu(tmp_path):
    p, res = _check(tmp_path, "--device", "cpu", "--quick", timeout=1500)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    parts = res["parts"]
    assert parts["model"]["fp32"]["frames_per_s"] > 0 and parts["model"]["bf16"]["frames_per_s"] > 0
    assert parts["train_step"]["images_per_s"] > 0
    assert list(parts["stages"]) == ["synth", "manifest", "preprocess", "train_syncnet", "sync_check",
                                     "train_backbone", "personalize", "evaluate", "render"]
    assert all(v["rc"] == 0 for v in parts["stages"].values())
    assert parts["sync"]["end_to_end_frames_per_s"] > 0
