"""Discriminator (R1 double backward, minibatch stddev), expert SyncNet sizes, official SyncNet shapes."""
import pytest
import torch

from stylesync.config import DiscriminatorConfig, SyncNetConfig
from stylesync.models.discriminator import Discriminator
from stylesync.models.layers import minibatch_stddev
from stylesync.models.syncnet import ExpertSyncNet
from stylesync.models.syncnet_official import SyncNetOfficial


def test_discriminator_full_size_and_r1_double_backward(tiny_dcfg):
    d = Discriminator(DiscriminatorConfig())
    assert sum(p.numel() for p in d.parameters()) == 28_864_129  # = rosinality's D at 256, cm 2
    d = Discriminator(tiny_dcfg)
    x = torch.rand(4, 3, 32, 32, requires_grad=True)
    out = d(x)
    assert out.shape == (4, 1)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    r1 = grad.pow(2).flatten(1).sum(1).mean()
    r1.backward()  # double backward through upfirdn2d, fused lrelu, stddev
    for name, p in d.named_parameters():
        if name.endswith("weight"):  # biases only move ReLU kinks: zero second derivative
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_minibatch_stddev_groups():
    x = torch.randn(8, 4, 4, 4)
    y = minibatch_stddev(x, 4, 1)
    assert y.shape == (8, 5, 4, 4)
    # group of 4: samples i and i + 2 share statistics
    assert torch.equal(y[0, 4], y[2, 4]) and not torch.equal(y[0, 4], y[1, 4])
    assert minibatch_stddev(torch.randn(6, 4, 4, 4), 4, 1).shape == (6, 5, 4, 4)  # B=6: group 3
    assert minibatch_stddev(torch.randn(1, 4, 4, 4), 4, 1).shape == (1, 5, 4, 4)


@pytest.mark.parametrize("size", [48, 64, 96, 128])
def test_expert_syncnet_sizes(size):
    s = ExpertSyncNet(SyncNetConfig(size=size, base_channels=8, embed_dim=128)).eval()
    frames = torch.rand(3, 5, 3, 80, 80)  # any crop size: resized to `size` first
    cos = s(frames, torch.randn(3, 1, 80, 16))
    assert cos.shape == (3,) and (cos >= 0).all() and (cos <= 1 + 1e-6).all()
    assert s.visual_input(frames).shape == (3, 15, size // 2, size)


def test_expert_syncnet_is_wav2lip_at_96():
    s = ExpertSyncNet(SyncNetConfig(size=96))
    assert sum(p.numel() for p in s.parameters()) == 16_435_072  # Wav2Lip SyncNet_color


def test_official_syncnet_shapes():
    s = SyncNetOfficial().eval()
    assert sum(p.numel() for p in s.parameters()) == 13_631_616
    with torch.no_grad():
        assert s.forward_aud(torch.randn(2, 1, 13, 20)).shape == (2, 1024)
        assert s.forward_lip(torch.rand(2, 3, 5, 224, 224) * 255).shape == (2, 1024)
