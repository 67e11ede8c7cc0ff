"""Shared fixtures. Tests run on CPU, offline, with small model sizes unless marked slow."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from stylesync.config import (  # noqa: E402
    DiscriminatorConfig, FaceConfig, GeneratorConfig, LossConfig, MaskConfig, OptimConfig, SyncNetConfig,
)
from stylesync.face.mask import mask_tensor  # noqa: E402
from stylesync.models.discriminator import Discriminator  # noqa: E402
from stylesync.models.generator import StyleSyncGenerator  # noqa: E402
from stylesync.models.store import save_generator  # noqa: E402
from stylesync.train.step import StepModules, make_optimizers, train_step  # noqa: E402

# Shared helpers live in helpers.py, where test modules import them from. tiny_generator_config is
# also named here because tests/test_storage.py still imports it from conftest.
from helpers import (  # noqa: E402
    params_for, tiny_discriminator_config, tiny_generator_config, tiny_syncnet_config, write_small_manifest,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def tiny_gcfg() -> GeneratorConfig:
    return tiny_generator_config()


@pytest.fixture
def tiny_dcfg() -> DiscriminatorConfig:
    return tiny_discriminator_config()


@pytest.fixture
def tiny_scfg() -> SyncNetConfig:
    return tiny_syncnet_config()


@pytest.fixture(scope="session")
def small_shards(tmp_path_factory) -> Path:
    """A directory with the 7 drawn clips of `small_corpus` (3 identities: 1 val, 2 train; 2 test
    clips), their manifest and their shards (helpers.params_for layout). Read it, never write it."""
    from stylesync.data.build_shards import build_shards

    tmp = tmp_path_factory.mktemp("small_shards")
    p = params_for(tmp)
    write_small_manifest(tmp, p)
    build_shards(p, executor="local")
    return tmp


@pytest.fixture(scope="session")
def small_trained_model(tmp_path_factory):
    """A tiny generator trained for a few steps on random windows (weights that are not the init)."""
    torch.manual_seed(0)
    cfg = tiny_generator_config(size=64)
    g = StyleSyncGenerator(cfg)
    d = Discriminator(DiscriminatorConfig(size=64, channel_multiplier=1, narrow=1 / 16))
    og, od = make_optimizers(g.parameters(), d.parameters(), OptimConfig(), 16)
    m = StepModules(g, d, og, od, mask_tensor(64, MaskConfig()), None, None)
    for step in range(3):
        batch = {"target": torch.rand(1, 5, 3, 64, 64), "reference": torch.rand(1, 5, 3, 64, 64),
                 "mel": torch.randn(1, 5, 1, 80, 16), "sync_mel": torch.randn(1, 1, 80, 16)}
        train_step(m, batch, step, LossConfig(sync=False), OptimConfig())
    out = tmp_path_factory.mktemp("model") / "generator"
    save_generator(out, g, FaceConfig(crop_size=128))
    return out
