"""Stage `synth`: the embedded synthetic talking-face corpus (data/synthetic.py) in the VoxCeleb2 layout."""
from __future__ import annotations

import logging

from ..config import Params
from ..data.synthetic import generate_corpus

log = logging.getLogger(__name__)


def run(params: Params, args) -> int:
    s = generate_corpus(params.synth)
    log.info("synthetic corpus %s: %d identities (%d dev, %d test), %d clips (%d generated, %d skipped), "
             "%d frames, %.1f s of audio in %.1f s", s["root"], s["identities"], s["identities_dev"],
             s["identities_test"], s["clips"], s["generated"], s["skipped"], s["frames"], s["audio_seconds"],
             s["wall_s"])
    return 0
