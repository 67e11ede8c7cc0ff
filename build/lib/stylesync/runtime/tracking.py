"""MLflow helpers: experiments per stage family, flattened params, images, registered models.

The default tracking store is `sqlite:///mlflow.db` in the working directory; artifacts of an
experiment created here go to `mlartifacts/` beside the database (sqlite stores) so that a run's
files stay with the repository.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from ..config import TrackingConfig

log = logging.getLogger(__name__)


def flatten(d: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts/lists -> {"a.b.c": "value"} (MLflow params are flat strings)."""
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = str(d)[:6000]
    return out


def experiment_name(cfg: TrackingConfig, family: str) -> str:
    return f"{cfg.experiment_prefix}-{family}"


def _artifact_location(uri: str, name: str) -> Optional[str]:
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):]).resolve()
        return (db.parent / "mlartifacts" / name).as_uri()
    return None


def setup(cfg: TrackingConfig, family: str) -> str:
    """Point MLflow at the store and make sure the experiment exists. Returns the experiment id."""
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    mlflow.set_tracking_uri(cfg.tracking_uri)
    name = experiment_name(cfg, family)
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        exp_id = mlflow.create_experiment(name, artifact_location=_artifact_location(cfg.tracking_uri, name))
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


@contextlib.contextmanager
def run(cfg: TrackingConfig, family: str, run_name: str, run_id: Optional[str] = None, nested: bool = False,
        system_metrics: bool = True, tags: Optional[dict] = None) -> Iterator[Optional[Any]]:
    """An MLflow run (resumed when `run_id` is given); yields None when tracking is disabled."""
    if not cfg.enabled:
        yield None
        return
    import mlflow

    setup(cfg, family)
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, nested=nested,
                          log_system_metrics=system_metrics, tags=tags) as active:
        yield active


def log_params(params: dict) -> None:
    import mlflow

    flat = list(flatten(params).items())
    for i in range(0, len(flat), 100):  # the store's batch limit
        mlflow.log_params(dict(flat[i : i + 100]))


def numbers(d: Any, prefix: str = "") -> dict[str, float]:
    """The finite numbers of nested dicts as {"a.b.c": value} (MLflow metrics); text, bools, None,
    NaN and lists are left out."""
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(numbers(v, f"{prefix}{k}."))
    elif isinstance(d, (int, float)) and not isinstance(d, bool) and math.isfinite(d):
        out[prefix[:-1]] = float(d)
    return out


def log_stage(cfg: TrackingConfig, family: str, run_name: str, params: Optional[dict] = None,
              metrics: Optional[dict] = None, files: Iterable[str] = (), artifact_path: Optional[str] = None,
              dicts: Optional[dict[str, Any]] = None) -> Optional[str]:
    """One MLflow run of a stage without a training loop: `params` (flattened), the finite numbers
    of `metrics` (nested keys joined by '.'), local `files` as artifacts (under `artifact_path`) and
    `dicts` ({file name: JSON-able}) as JSON artifacts. Returns the run id (None: tracking is off)."""
    with run(cfg, family, run_name, system_metrics=False) as active:
        if active is None:
            return None
        import mlflow

        if params:
            log_params(params)
        if metrics:
            mlflow.log_metrics(numbers(metrics))
        for f in files:
            mlflow.log_artifact(str(f), artifact_path=artifact_path)
        for name, obj in (dicts or {}).items():
            mlflow.log_dict(obj, name)
        return active.info.run_id


def log_image(image: np.ndarray, key: str, step: int) -> None:
    """An RGB uint8 image (H, W, 3) as an image series entry."""
    import mlflow

    mlflow.log_image(image, key=key, step=step)


def register(run_id: str, artifact_path: str, name: str, alias: Optional[str] = None,
             tags: Optional[dict] = None) -> str:
    """Register `runs:/<run_id>/<artifact_path>` (a plain artifact directory) as a new version of
    model `name`, optionally under `alias`. Returns the version."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        client.create_registered_model(name)
    except MlflowException as e:  # already exists
        if "already exists" not in str(e).lower() and "RESOURCE_ALREADY_EXISTS" not in str(e):
            raise
    mv = client.create_model_version(name, source=f"runs:/{run_id}/{artifact_path}", run_id=run_id, tags=tags)
    if alias:
        client.set_registered_model_alias(name, alias, mv.version)
    return str(mv.version)


def image_grid(rows: list[list[np.ndarray]]) -> np.ndarray:
    """rows of equally sized RGB images -> one image (rows stacked vertically, columns side by side)."""
    return np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
