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

    # Ray Train (v2) patches `print` in its workers to log each line through the root logger, whose
    # console handler writes it to the worker's stderr; as a Ray worker's sys.stdout is never
    # sys.__stdout__ (ray/_private/workers/default_worker.py wraps it), the patch also tees the line
    # to stdout (ray/train/v2/_internal/logging/patch_print.py), and log_to_driver forwards both:
    # every worker print (the progress lines, the demo check) showed twice on the console. Without
    # the patch a print goes to the worker's stdout only, forwarded once. Read by the driver when a
    # trainer starts and passed on to the controller and workers (also on a cluster or a joined Ray).
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
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
