"""Stage `synth`: the embedded synthetic talking-face corpus (data/synthetic.py) in the VoxCeleb2 layout;
MLflow: the corpus settings and its counts."""
from __future__ import annotations

import dataclasses
import logging

from ..config import Params, SynthConfig, to_dict
from ..data.manifest import val_identities
from ..data.synthetic import generate_corpus
from ..runtime import tracking

log = logging.getLogger(__name__)


def synth_config(params: Params) -> SynthConfig:
    """The corpus settings with the manifest's val identities kept in sync (their clips are the
    demo check's ground truth)."""
    cfg = params.synth
    dev = [f"id{i:05d}" for i in range(cfg.identities_dev)]
    keep = sorted(set(cfg.in_sync_identities) | val_identities(dev, params.manifest.val))
    return dataclasses.replace(cfg, in_sync_identities=keep)


def run(params: Params, args) -> int:
    cfg = synth_config(params)
    s = generate_corpus(cfg)
    tracking.log_stage(params.tracking, "synth", "synth", {"synth": to_dict(cfg)}, s, dicts={"synth.json": s})
    log.info("synthetic corpus %s: %d identities (%d dev, %d test), %d clips (%d generated, %d skipped), "
             "%d frames, %.1f s of audio in %.1f s", s["root"], s["identities"], s["identities_dev"],
             s["identities_test"], s["clips"], s["generated"], s["skipped"], s["frames"], s["audio_seconds"],
             s["wall_s"])
    return 0
