"""Training checkpoints damaged after writing: a truncated file, a pickle-bearing state file (with a
manifest that matches it, so that only `torch.load(weights_only=True)` stands in the way), then
every checkpoint broken. Ray Train keeps `train.keep_checkpoints` (2) checkpoints; the training loop
must refuse a bad one, fall back to the older one and still end equal to an uninterrupted run, or
stop with a clear error when none is intact."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from harness import (  # noqa: F401 (fixtures)
    SUITE, backbone_weights, fault_corpus, record, run_to_completion, same_weights, stage_params, train_reference,
    with_models, write_params,
)

pytestmark = SUITE


class _Payload:
    """Pickles to `os.system("touch <marker>")`: runs only if the file is unpickled unrestricted."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _checkpoints(d: Path) -> list[Path]:
    """Ray Train's checkpoint folders of the run, oldest first (names are timestamps)."""
    return sorted(c for c in (d / "runs").glob("*/checkpoint_*") if c.is_dir())


def _step(c: Path) -> int:
    return json.loads((c / "manifest.json").read_text())["step"]


def test_truncated_and_pickle_bearing_checkpoints(fault_corpus, train_reference, tmp_path):
    from stylesync.train.checkpointing import STATE, write_manifest

    t_case = time.time()
    _, _, reference = train_reference
    d = tmp_path / "run"
    p = stage_params(fault_corpus, d)
    with_models(p)
    pf = str(write_params(p, d / "params.yaml"))

    def train(steps: int, name: str, rc: int | None = 0):
        return run_to_completion(d, ["train", "--params", pf, "-S", f"train.steps={steps}"], name=name, expect_rc=rc)

    notes = {}
    # 1. four steps: checkpoints at steps 2 and 4; the newest one's generator is cut in half
    train(4, "first")
    ckpts = _checkpoints(d)
    assert [_step(c) for c in ckpts] == [2, 4]
    g = ckpts[-1] / "G.safetensors"
    g.write_bytes(g.read_bytes()[: g.stat().st_size // 2])
    # 2. resume to 6: the step-4 checkpoint is refused (size differs from its manifest), step 2 is used
    train(6, "after-truncation")
    log = (d / "after-truncation.log").read_text()
    assert "G.safetensors" in log and "truncated or altered file" in log, log[-3000:]
    assert "resuming from an older checkpoint (step 2)" in log
    notes["truncated"] = "refused (size differs from manifest), resumed from step 2"
    # 3. the newest checkpoint's state.pt replaced by a pickle-bearing file whose manifest matches it
    ckpts = _checkpoints(d)
    assert [_step(c) for c in ckpts] == [4, 6]
    newest = ckpts[-1]
    blob = torch.load(newest / STATE, weights_only=True)
    marker = tmp_path / "payload-ran"
    blob["extra"]["note"] = _Payload(marker)
    torch.save(blob, newest / STATE)
    write_manifest(newest, ["G.safetensors", "D.safetensors", "g_ema.safetensors", STATE], 6)
    train(8, "after-pickle")
    log = (d / "after-pickle.log").read_text()
    assert "refused, the file holds pickled Python objects" in log, log[-3000:]
    assert "resuming from an older checkpoint (step 4)" in log
    assert not marker.exists(), "the pickled payload ran"
    notes["pickle"] = "refused (weights_only), payload not run, resumed from step 4"
    # the run still ends where an uninterrupted one does, bit for bit
    assert json.loads((d / "metrics" / "train.json").read_text())["steps"] == 8
    equal = same_weights(backbone_weights(d), reference)
    assert equal, "weights differ from the uninterrupted 8-step run"
    # 4. every checkpoint broken: a clear error, nothing exported
    for c in _checkpoints(d):
        st = c / STATE
        st.write_bytes(st.read_bytes()[:100])
    exported = (d / "models" / "backbone" / "generator" / "model.safetensors").read_bytes()
    rc, _, _ = train(10, "all-broken", rc=None)
    log = (d / "all-broken.log").read_text()
    assert rc != 0 and "no intact checkpoint to resume from" in log, log[-3000:]
    assert (d / "models" / "backbone" / "generator" / "model.safetensors").read_bytes() == exported
    notes["all_broken"] = "run fails: 'no intact checkpoint to resume from: ...' (each reason listed); exported model untouched"
    record("checkpoint truncated / pickle-bearing / all broken", 4, "pass", time.time() - t_case,
           weights_equal_uninterrupted=equal, **notes)
