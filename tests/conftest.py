"""Shared fixtures. Tests run on CPU, offline, with small model sizes unless marked slow."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from stylesync.config import DiscriminatorConfig, GeneratorConfig, SyncNetConfig  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def tiny_generator_config(**kw) -> GeneratorConfig:
    base = dict(size=32, style_dim=64, n_mlp=2, channel_multiplier=1, narrow=1 / 16, audio_dim=64, face_dim=64)
    base.update(kw)
    return GeneratorConfig(**base)


@pytest.fixture
def tiny_gcfg() -> GeneratorConfig:
    return tiny_generator_config()


@pytest.fixture
def tiny_dcfg() -> DiscriminatorConfig:
    return DiscriminatorConfig(size=32, channel_multiplier=1, narrow=1 / 16)


@pytest.fixture
def tiny_scfg() -> SyncNetConfig:
    return SyncNetConfig(size=48, base_channels=8, embed_dim=128)


def lower_half_mask(size: int) -> torch.Tensor:
    m = torch.zeros(1, 1, size, size)
    m[..., size // 2 :, :] = 1
    return m
