"""`TrackingHooks`: a training loop's MLflow run (opened, resumed by id, losses per log interval)."""
from __future__ import annotations

import contextlib
from typing import Optional

from ..config import TrackingConfig
from ..runtime import tracking
from ..train.loop import LoopHooks


class TrackingHooks(LoopHooks):
    """Opens (or resumes) the run `name` of experiment `family` and logs each record's numbers.
    `log_params` is logged once, when the run is new (with the loop's own `info`)."""

    def __init__(self, cfg: TrackingConfig, family: str, name: str, log_params: Optional[dict] = None):
        self.cfg, self.family, self.name, self.log_params = cfg, family, name, log_params or {}
        self.tracks = cfg.enabled
        self._stack: Optional[contextlib.ExitStack] = None

    def start(self, run_id: Optional[str], info: dict) -> Optional[str]:
        self._stack = contextlib.ExitStack()
        active = self._stack.enter_context(tracking.run(self.cfg, self.family, self.name, run_id=run_id))
        if active is None:
            return run_id
        if run_id is None:
            tracking.log_params({**self.log_params, **info})
        return active.info.run_id

    def log(self, step: int, record: dict) -> None:
        if self.tracks:
            import mlflow

            mlflow.log_metrics({k: v for k, v in record.items() if k != "step"}, step=step)

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None
