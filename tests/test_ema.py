"""The EMA of G and its ramp-up (StyleGAN2-ADA): a short run's EMA must not keep its initialisation."""
from __future__ import annotations

import math

import torch
from torch import nn

from stylesync.config import OptimConfig
from stylesync.train.step import ema_decay_at, ema_update


def test_ema_decay_without_rampup_is_constant():
    o = OptimConfig(ema_decay=0.995)
    assert ema_decay_at(o, 0) == ema_decay_at(o, 10_000) == 0.995


def test_ema_rampup_half_life_grows_with_steps_and_is_capped():
    o = OptimConfig(ema_decay=0.995, ema_rampup=0.05)
    # half-life = 0.05 x steps: after 200 updates, 10 updates
    assert math.isclose(ema_decay_at(o, 199) ** 10, 0.5, rel_tol=1e-9)
    decays = [ema_decay_at(o, s) for s in range(0, 20_000, 50)]
    assert all(a <= b for a, b in zip(decays, decays[1:]))
    assert decays[-1] == 0.995  # the cap: ema_decay's half-life (138 updates) is reached at 2772 updates


def test_ema_rampup_forgets_the_initialisation():
    """After 200 updates towards a fixed target, a ramped EMA keeps < 1e-3 of its start, a plain 0.995 EMA ~37%."""
    model, plain, ramped = nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        for m in (plain, ramped):
            m.weight.zero_(), m.bias.zero_()
        model.weight.fill_(1.0), model.bias.fill_(1.0)
    o_plain, o_ramp = OptimConfig(ema_decay=0.995), OptimConfig(ema_decay=0.995, ema_rampup=0.05)
    for step in range(200):
        ema_update(plain, model, ema_decay_at(o_plain, step))
        ema_update(ramped, model, ema_decay_at(o_ramp, step))
    assert 0.3 < 1 - plain.weight.mean().item() < 0.4
    assert 1 - ramped.weight.mean().item() < 1e-3
