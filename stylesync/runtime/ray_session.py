"""Start or join Ray from `RayConfig` (local by default, `address` for a cluster)."""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

from ..config import RayConfig

log = logging.getLogger(__name__)


@contextlib.contextmanager
def ray_session(cfg: RayConfig) -> Iterator[None]:
    """Use the running Ray if there is one; else start (or connect) and shut down afterwards."""
    import ray

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    kwargs = dict(include_dashboard=cfg.include_dashboard, log_to_driver=True, configure_logging=False)
    if cfg.address:
        ray.init(address=cfg.address, **kwargs)
    else:
        ray.init(num_cpus=cfg.num_cpus, **kwargs)
    log.info("ray: %s", ray.cluster_resources())
    try:
        yield
    finally:
        ray.shutdown()
