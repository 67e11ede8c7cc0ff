"""Stage `preprocess`: manifest -> aligned faces + mel in WebDataset shards (data/build_shards.py),
summary in metrics/preprocess.json; MLflow: the preprocess and face settings, the summary's numbers and file."""
from __future__ import annotations

import logging

from ..config import Params, to_dict
from ..data.build_shards import build_shards
from ..storage import write_json
from ..layout import Layout
from ..runtime import tracking

log = logging.getLogger(__name__)


def run(params: Params, args) -> int:
    summary = build_shards(params, executor=getattr(args, "executor", "ray"))
    out = Layout(params.paths).metrics("preprocess.json")
    write_json(out, summary)
    tracking.log_stage(params.tracking, "preprocess", "preprocess", {"preprocess": to_dict(params.preprocess),
                       "face": to_dict(params.face)}, summary, [out])
    log.info("preprocess: %d/%d clips ok, %d failed %s, %d frames, %.1f s",
             summary["clips_ok"], summary["clips_in"], summary["clips_failed"], summary["failed_by_reason"],
             summary["frames"], summary["wall_s"])
    return 0
