"""What the training loaders do with the `sync_check` table (data/sync.parquet).

Convention: `offset` k means video frame t is heard at audio frame t + k (k > 0: the audio is late).
The loaders pair frame t with the audio at t + k (`SyncPlan.offsets`); clips under the scorer's
confidence threshold or with |k| over `max_offset` are skipped (`SyncPlan.select`). The offsets
are found by eval/av_offset.py.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from ..config import Params, SyncCheckConfig
from ..storage import exists, read_parquet
from ..layout import Layout

log = logging.getLogger(__name__)
_WARNED: set[str] = set()


def skip_reason(row: dict, cfg: SyncCheckConfig) -> Optional[str]:
    """Why a scored clip is skipped by the loaders (None: it is used, shifted by its offset)."""
    min_confidence, max_offset = cfg.thresholds(row["scorer"])
    if row["confidence"] < min_confidence:
        return "low_confidence"
    if abs(row["offset"]) > max_offset:
        return "offset_too_large"
    return None


@dataclass
class SyncPlan:
    offsets: dict[str, int] = field(default_factory=dict)  # clip -> k, the clips to shift
    skipped: dict[str, str] = field(default_factory=dict)  # clip -> why it is not used
    status: str = "off"  # applied | off (sync_check.apply: false) | no table (and the path)

    def select(self, meta: dict) -> bool:
        return meta["clip_id"] not in self.skipped

    def key(self) -> list:
        """What the plan changes in the data (for run names and fingerprints)."""
        return [sorted(self.offsets.items()), sorted(self.skipped)]

    def check_left(self, clip_ids: list[str], what: str) -> None:
        """Raise when the plan skips every one of `clip_ids` (a loader over them would yield nothing)."""
        if clip_ids and all(c in self.skipped for c in clip_ids):
            raise ValueError(f"{what}: all {len(clip_ids)} clips fail the sync check "
                             f"({dict(Counter(self.skipped[c] for c in clip_ids))}); see sync_check.min_confidence / max_offset")

    def check_split(self, layout: Layout, split: str, what: str) -> None:
        """`check_left` over the clips of `split` in the shard index."""
        if self.skipped:
            rows = read_parquet(layout.shard_index).to_pylist()
            self.check_left([r["clip_id"] for r in rows if r["split"] == split], f"{what} ({split} split)")

    def summary(self) -> dict:
        return {"status": self.status, "clips_shifted": len(self.offsets), "clips_skipped": len(self.skipped),
                "skipped_by_reason": dict(sorted(Counter(self.skipped.values()).items()))}


def load_sync_plan(params: Params) -> SyncPlan:
    """The loaders' shifts and skips from the sync table (an empty plan when `apply` is off or
    there is no table yet, said loudly)."""
    cfg, path = params.sync_check, Layout(params.paths).sync_table
    if not cfg.apply:
        return SyncPlan()
    if not exists(path):
        if path not in _WARNED:  # once per process (run names and loaders both read the plan)
            _WARNED.add(path)
            log.warning("sync_check.apply is on but %s does not exist (run `stylesync sync-check`): clips are used "
                        "as they are, unshifted and unfiltered", path)
        return SyncPlan(status=f"no table at {path}")
    return plan_from_rows(read_parquet(path).to_pylist(), cfg)


def plan_from_rows(rows: list[dict], cfg: SyncCheckConfig, status: str = "applied") -> SyncPlan:
    """The shifts and skips of scored clips (rows of the sync table: clip_id, offset, confidence, scorer)."""
    plan = SyncPlan(status=status)
    for row in rows:
        why = skip_reason(row, cfg)
        if why is not None:
            plan.skipped[row["clip_id"]] = why
        elif row["offset"] != 0:
            plan.offsets[row["clip_id"]] = int(row["offset"])
    return plan
