"""Stage `model_card`: parameter counts and FLOPs of the configured models -> metrics/model.json; MLflow:
the model settings, the card's numbers and file."""
from __future__ import annotations

import logging

from ..config import Params, to_dict
from ..storage import write_json
from ..layout import Layout
from ..models.card import model_card
from ..runtime import tracking

log = logging.getLogger(__name__)


def run(params: Params, args) -> int:
    card = model_card(params.model)
    out = args.output or Layout(params.paths).metrics("model.json")
    write_json(out, card)
    tracking.log_stage(params.tracking, "model_card", "model-card", {"model": to_dict(params.model)}, card, [out])
    g = card["generator"]
    log.info("generator %dx%d: %.2fM params, %.2f GFLOP/image; discriminator %.2fM; SyncNet %.2fM -> %s",
             g["size"], g["size"], g["params"] / 1e6, g["flops_per_image"] / 1e9,
             card["discriminator"]["params"] / 1e6, card["syncnet"]["params"] / 1e6, out)
    return 0
