"""A NaN loss in backbone training (injected into the L1 term at step 3, every time that step runs):
`train.nan_policy: stop` ends the run with a message naming the step and the term (Ray Train's
retry from the last checkpoint meets the same NaN); `skip` drops that update, counts it and trains
to the end."""
from __future__ import annotations

import json
import math
import time

from safetensors.torch import load_file

from harness import (  # noqa: F401 (fixtures)
    SUITE, fault_corpus, record, run_to_completion, stage_params, with_models, write_params,
)

pytestmark = SUITE

FAULT = {"STYLESYNC_FAULT": "loss@3:nan"}


def test_nan_loss_stop_and_skip(fault_corpus, tmp_path):
    t_case = time.time()
    out = {}
    for policy in ("stop", "skip"):
        d = tmp_path / policy
        p = stage_params(fault_corpus, d)
        p.train.nan_policy = policy
        with_models(p)
        argv = ["train", "--params", str(write_params(p, d / "params.yaml"))]
        rc, wall, orphans = run_to_completion(d, argv, env=FAULT, name=policy, expect_rc=None)
        log = (d / f"{policy}.log").read_text()
        assert not orphans
        if policy == "stop":
            assert rc != 0, log[-3000:]
            assert "non-finite G loss at step 3: term(s) l1, g_total (g_adv=" in log and "l1=nan" in log, log[-3000:]
            assert not (d / "models" / "backbone" / "generator").exists()  # nothing exported
            out["stop"] = f"exit {rc}: NonFiniteLossError 'non-finite G loss at step 3: term(s) l1, g_total (...)'"
        else:
            assert rc == 0, log[-3000:]
            m = json.loads((d / "metrics" / "train.json").read_text())
            assert m["steps"] == p.train.steps and m["nonfinite_skipped"] == 1, m
            assert "update skipped (train.nan_policy: skip; 1 skipped so far)" in log
            g = load_file(str(d / "models" / "backbone" / "generator" / "model.safetensors"))
            assert all(math.isfinite(float(v.float().abs().max())) for v in g.values())
            out["skip"] = f"exit 0: {m['steps']} steps, nonfinite_skipped={m['nonfinite_skipped']}, weights finite"
        out[f"{policy}_s"] = round(wall, 1)
    record("NaN loss (train.nan_policy stop / skip)", 2, "pass", time.time() - t_case, **out)
