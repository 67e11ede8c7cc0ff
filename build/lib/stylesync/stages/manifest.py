"""Stage `manifest`: scan the source roots (data/manifest.py) into data/manifest.parquet; MLflow: the
manifest settings and its counts (clips per dataset/split, identities, probe errors)."""
from __future__ import annotations

import logging

from ..config import Params, to_dict
from ..data.manifest import ManifestError, build_manifest, summary, write_manifest
from ..runtime import tracking

log = logging.getLogger(__name__)


def run(params: Params, args) -> int:
    out = getattr(args, "output", None) or params.paths.manifest
    try:
        table = build_manifest(params.manifest)
    except ManifestError as e:
        log.error("manifest: %s", e)
        return 2
    write_manifest(table, out)
    s = summary(table)
    tracking.log_stage(params.tracking, "manifest", "manifest", {"manifest": to_dict(params.manifest)}, s,
                       dicts={"manifest.json": s})
    log.info("manifest: %d clips (%s), %d identities, %d probe errors -> %s", s["clips"],
             ", ".join(f"{k}: {v}" for k, v in s["per_split"].items()), s["identities"], s["probe_errors"], out)
    if s["probe_errors"]:
        for r in table.filter(table.column("probe_error").is_valid()).slice(0, 5).to_pylist():
            log.warning("probe error: %s: %s", r["clip_id"], r["probe_error"])
    return 0
