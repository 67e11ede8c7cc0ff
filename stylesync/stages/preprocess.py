"""Stage `preprocess`: manifest -> aligned faces + mel in WebDataset shards (data/build_shards.py),
summary in metrics/preprocess.json."""
from __future__ import annotations

import logging

from ..config import Params
from ..data.build_shards import build_shards
from ..storage import write_json
from ..layout import Layout

log = logging.getLogger(__name__)


def run(params: Params, args) -> int:
    summary = build_shards(params, executor=getattr(args, "executor", "ray"))
    write_json(Layout(params.paths).metrics("preprocess.json"), summary)
    log.info("preprocess: %d/%d clips ok, %d failed %s, %d frames, %.1f s",
             summary["clips_ok"], summary["clips_in"], summary["clips_failed"], summary["failed_by_reason"],
             summary["frames"], summary["wall_s"])
    return 0
