"""Eq. 6's penalty, lambda_p (||Delta W||^2 + sum ||Delta P||^2): the closed form of `delta_penalty`,
and `DeltaP.squared_norm` with `effective_scales` measuring Delta P on the weights as the layers use
them (equalized-lr weights are stored unscaled and multiplied at run time)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

import stylesync.models.layers as layers
from stylesync.models.generator import StyleSyncGenerator, effective_scales
from stylesync.models.layers import ConstantInput, NoiseInjection, ToRGB
from stylesync.train.losses import delta_penalty

from helpers import lower_half_mask, tiny_generator_config


# ------------------------------------------------------------------------------ closed form
def test_delta_p_alone_is_scaled_by_lambda_p():
    assert delta_penalty(None, 6.0, 0.5) == pytest.approx(3.0)  # Delta W off: lambda_p * sum ||Delta P||^2
    dp = torch.tensor(6.0, requires_grad=True)
    out = delta_penalty(None, dp, 0.5)
    out.backward()
    assert out.item() == pytest.approx(3.0) and dp.grad.item() == pytest.approx(0.5)
    assert delta_penalty(None, 6.0, 0.0) == 0.0


def test_delta_w_is_the_batch_mean_of_per_sample_squared_norms():
    dw = torch.stack([torch.ones(3, 4), torch.full((3, 4), 2.0)])  # (B=2, L=3, D=4): ||.||^2 = 12 and 48
    # mean over the batch of the per-sample sums: (12 + 48) / 2 = 30 (not the sum 60, not the element mean 2.5)
    assert delta_penalty(dw, 6.0, 0.1).item() == pytest.approx(0.1 * (30 + 6))
    assert delta_penalty(dw, torch.tensor(0.0), 1.0).item() == pytest.approx(30.0)
    g = torch.Generator().manual_seed(0)
    dw = torch.randn(5, 7, 3, generator=g, requires_grad=True)
    lam = 0.37
    out = delta_penalty(dw, 2.0, lam)
    expected = lam * (sum(dw[b].pow(2).sum() for b in range(5)) / 5 + 2.0)
    assert out.item() == pytest.approx(expected.item(), rel=1e-6)
    out.backward()
    torch.testing.assert_close(dw.grad, 2 * lam * dw.detach() / 5)  # d/dDelta W of lambda mean_b ||Delta W_b||^2
    # linear in lambda_p
    assert delta_penalty(dw, 2.0, 3 * lam).item() == pytest.approx(3 * out.item(), rel=1e-6)


# ------------------------------------------------------------------------------ Delta P on the run-time weights
class _Consumed(TorchFunctionMode):
    """Records the weight and bias tensors that reach F.linear / F.conv2d / F.conv_transpose2d: the
    weights as the layers use them (scaled at run time), not as they are stored."""

    OPS = (F.linear, F.conv2d, F.conv_transpose2d)

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.OPS:
            self.seen.append(args[1] if len(args) > 1 else kwargs["weight"])
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            if bias is not None:
                self.seen.append(bias)
        return func(*args, **kwargs)


def _run_time_tensors(G, f_a, f_f, noises, monkeypatch) -> list[torch.Tensor]:
    """Every parameter-derived tensor the mapping + synthesis forward hands to a linear/conv op or,
    as a bias, to the fused leaky ReLU; in call order."""
    mode = _Consumed()
    fused = layers.fused_leaky_relu_

    def recording(x, bias):
        if bias is not None:
            mode.seen.append(bias)
        return fused(x, bias)

    monkeypatch.setattr(layers, "fused_leaky_relu_", recording)
    with torch.no_grad(), mode:
        G.synthesize(G.styles(f_a, f_f), noises)
    monkeypatch.setattr(layers, "fused_leaky_relu_", fused)
    return [t.detach().clone() for t in mode.seen]


def _shift_energy(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    assert len(a) == len(b)
    return float(sum((x.double() - y.double()).pow(2).sum() for x, y in zip(a, b)))


def test_squared_norm_with_effective_scales_is_measured_on_the_run_time_weights(monkeypatch):
    torch.manual_seed(0)
    # mapping included: its EqualLinear layers run with lr_mul = 0.01 (weights and biases)
    G = StyleSyncGenerator(tiny_generator_config(delta_p_scope="synthesis+mapping", fused_modconv=False)).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        f_f, maps = G.encode_face(x * (1 - lower_half_mask(32)), torch.rand(2, 3, 32, 32))
        f_a = G.encode_audio(torch.randn(2, 1, 80, 16))
        noises = G.spatial_noises(maps, lower_half_mask(32))
    dp = G.enable_delta_p()
    scales = effective_scales(G)
    base = _run_time_tensors(G, f_a, f_f, noises, monkeypatch)
    g = torch.Generator().manual_seed(1)
    delta = {k: torch.randn(s.shape, generator=g) for k, s in dp.shifts.items()}
    modules = dict(G.named_modules())
    direct = []  # parameters the layers use as stored (elementwise), not through a linear/conv/bias op
    for k, d in delta.items():  # one shift at a time: which run-time tensor it moves, and by how much
        with torch.no_grad():
            for s in dp.shifts.values():
                s.zero_()
            dp.shifts[k].copy_(d)
        energy = _shift_energy(_run_time_tensors(G, f_a, f_f, noises, monkeypatch), base)
        if energy == 0:
            direct.append(k)
            continue
        assert energy == pytest.approx(dp.squared_norm(scales).item(), rel=1e-5), k
    # what no linear/conv/bias op consumed is used as stored: the constant input, noise strengths, ToRGB biases
    assert direct and all(scales.get(k, 1.0) == 1.0 for k in direct)
    assert all(isinstance(modules[k.rsplit(":", 1)[0].replace(":", ".")], (ConstantInput, NoiseInjection, ToRGB))
               for k in direct), direct
    assert any(scales[k] != 1.0 for k in delta if k.startswith("mapping") and k.endswith("bias"))  # lr_mul biases
    # all shifts at once: sum ||Delta P||^2 = the squared run-time shifts (+ the directly used ones)
    with torch.no_grad():
        for k, s in dp.shifts.items():
            s.copy_(delta[k])
    run_time = _shift_energy(_run_time_tensors(G, f_a, f_f, noises, monkeypatch), base)
    run_time += sum(float(delta[k].pow(2).sum()) for k in direct)
    assert dp.squared_norm(scales).item() == pytest.approx(run_time, rel=1e-5)
    assert dp.squared_norm().item() > 10 * run_time  # stored units would weigh equalized weights wrongly

    # Eq. 6 as personalization computes it (Delta W from MLP_dw of the forward, Delta P on run-time weights)
    G.use_delta_w = True
    with torch.no_grad():
        G.mlp_dw[-1].weight.normal_(generator=g)
        _, dw = G(x, x, torch.randn(2, 1, 80, 16), lower_half_mask(32), return_delta_w=True)
    assert dw.shape == (2, G.n_latent, G.style_dim)
    penalty = delta_penalty(dw, dp.squared_norm(scales), 0.25)
    assert penalty.item() == pytest.approx(0.25 * (float(dw.double().pow(2).sum()) / 2 + run_time), rel=1e-5)
