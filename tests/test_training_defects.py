"""The review's training defects, each pinned by a test that failed before its fix: Delta W is not
trained in the backbone, R1 means StyleGAN2's gamma, E_a's plain convs keep their audio signal,
every method is scored on the same composite."""
from __future__ import annotations

import copy

import numpy as np
import torch

from stylesync.config import DiscriminatorConfig, LossConfig, MaskConfig, OptimConfig
from stylesync.eval.evaluate import Scorers, score_clip
from stylesync.models.discriminator import Discriminator
from stylesync.models.generator import StyleSyncGenerator
from stylesync.face.mask import mask_tensor
from stylesync.train.losses import r1_penalty
from stylesync.train.step import StepModules, backbone_param_groups, make_optimizers, train_step

from helpers import lower_half_mask, tiny_generator_config


def _batch(b: int = 2, t: int = 5, s: int = 32) -> dict:
    return {"target": torch.rand(b, t, 3, s, s), "reference": torch.rand(b, t, 3, s, s),
            "mel": torch.randn(b, t, 1, 80, 16), "sync_mel": torch.randn(b, 1, 80, 16)}


def test_backbone_step_leaves_delta_w_exactly_zero(tiny_dcfg):
    g = StyleSyncGenerator(tiny_generator_config())
    assert not g.use_delta_w  # Ours-G: Delta W = 0, not computed
    held = {id(p) for p in g.backbone_parameters()}
    assert not held & {id(p) for p in g.mlp_dw.parameters()}  # MLP_dw is out of the backbone's optimizer
    assert held == {id(p) for n, p in g.named_parameters() if not n.startswith("mlp_dw.")}
    d = Discriminator(tiny_dcfg)
    opt_g, opt_d = make_optimizers(g.backbone_parameters(), d.parameters(), OptimConfig(lr_g=0.01), 16)
    m = StepModules(g, d, opt_g, opt_d, mask_tensor(32, MaskConfig()), None, None, copy.deepcopy(g))
    mlp_before = {k: v.clone() for k, v in g.mlp_dw.state_dict().items()}
    synth_before = g.synthesis.to_rgb1.conv.weight.clone()
    for step in range(3):
        train_step(m, _batch(), step, LossConfig(sync=False), OptimConfig(lr_g=0.01))
    assert all(torch.equal(v, mlp_before[k]) for k, v in g.mlp_dw.state_dict().items())
    assert not torch.equal(g.synthesis.to_rgb1.conv.weight, synth_before)  # the rest of G trains
    assert torch.count_nonzero(g.delta_w(torch.randn(4, g.cfg.face_dim))) == 0


class LinearD(torch.nn.Module):
    """D(x) = <w, u>, u = INPUT_GAIN * x - 1: the gradient w.r.t. u is w, in closed form."""

    INPUT_GAIN = Discriminator.INPUT_GAIN

    def __init__(self, s: int = 8):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(3, s, s))

    def forward(self, x):
        return (x * self.INPUT_GAIN - 1).mul(self.w).flatten(1).sum(1, keepdim=True)


def test_r1_is_taken_on_what_the_first_layer_sees():
    d = LinearD()
    x = torch.rand(4, 3, 8, 8, requires_grad=True)
    r1 = r1_penalty(d(x), x, d.INPUT_GAIN)
    torch.testing.assert_close(r1, d.w.pow(2).sum(), rtol=1e-5, atol=1e-6)  # ||grad_u D||^2 = ||w||^2, not 4 ||w||^2


def test_discriminator_first_layer_sees_gain_times_image_minus_one(tiny_dcfg):
    d = Discriminator(tiny_dcfg)
    seen = {}
    d.convs[0].register_forward_pre_hook(lambda mod, inp: seen.update(u=inp[0]))
    x = torch.rand(2, 3, 32, 32)
    d(x)
    torch.testing.assert_close(seen["u"], x * Discriminator.INPUT_GAIN - 1)


def test_r1_weight_in_the_step_is_stylegan2_gamma(tiny_dcfg):
    """The step measures R1 as ||grad_u D||^2 (weighted gamma/2 * k, k = d_reg_every) on a linear D."""
    g = StyleSyncGenerator(tiny_generator_config())
    d = LinearD(32)
    frozen_d = OptimConfig(lr_d=0.0)  # w stays what it was when the penalty was measured
    opt_g, opt_d = make_optimizers(g.backbone_parameters(), d.parameters(), frozen_d, 4)
    m = StepModules(g, d, opt_g, opt_d, mask_tensor(32, MaskConfig()), None, None, None)
    logs = train_step(m, _batch(), 0, LossConfig(sync=False, r1=10.0, d_reg_every=4), frozen_d)
    torch.testing.assert_close(logs["r1"], d.w.detach().pow(2).sum(), rtol=1e-3, atol=1e-3)


def test_every_method_is_scored_on_the_composite_and_raw_crop_is_its_own_column():
    s = 32
    mask = lower_half_mask(s)
    gt = torch.rand(4, 3, s, s)
    clip = {"gt": gt, "ref": 0, "mel": np.zeros((80, 40), np.float32), "meta": {"crop_size": s}}
    scorers = Scorers.__new__(Scorers)
    scorers.fan = scorers.syncnet = scorers.arcface = None
    wrong_outside = gt * mask + torch.rand(4, 3, s, s) * (1 - mask)  # right in the mask, wrong elsewhere
    row = score_clip(wrong_outside, clip, {}, scorers, None, 15, mask)
    assert row["psnr"] == 100.0 and row["ssim"] > 0.999  # what paste-back shows equals the frame
    assert row["psnr_raw_crop"] < 20 and row["ssim_raw_crop"] < 0.9


def _audio_spread_after_steps(lr_audio, steps: int = 5) -> float:
    """Across-sample std of f_a after `steps` backbone steps at the demo lr, relative to its init."""
    torch.manual_seed(0)
    g = StyleSyncGenerator(tiny_generator_config())
    d = Discriminator(DiscriminatorConfig(size=32, channel_multiplier=1, narrow=1 / 16))
    optim = OptimConfig(lr_g=0.005, lr_d=0.005, betas=[0.9, 0.99], lr_audio=lr_audio)
    opt_g, opt_d = make_optimizers(backbone_param_groups(g, optim), d.parameters(), optim, 16)
    m = StepModules(g, d, opt_g, opt_d, mask_tensor(32, MaskConfig()), None, None, None)
    mel = torch.randn(16, 1, 80, 16)
    spread = lambda: g.encode_audio(mel).std(0).mean().item()  # noqa: E731
    with torch.no_grad():
        before = spread()
    torch.manual_seed(1)
    for step in range(steps):
        train_step(m, _batch(), step, LossConfig(sync=False, d_reg_every=0), optim)
    with torch.no_grad():
        return spread() / before


def test_audio_encoder_keeps_its_signal_at_the_stylegan_lr():
    assert _audio_spread_after_steps(None) < 0.01  # E_a at lr_g: f_a collapses to a constant (measured 4e-4)
    assert _audio_spread_after_steps(1e-4) > 0.2  # at lr_audio (Wav2Lip's lr) it still varies with the audio (0.44)
    groups = backbone_param_groups(StyleSyncGenerator(tiny_generator_config()), OptimConfig(lr_audio=3e-5))
    assert groups[1]["lr"] == 3e-5 and "lr" not in groups[0]
