"""upfirdn2d and the fused activation against straightforward references (values and gradients)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylesync.models.layers import Blur, ModulatedConv2d, Upsample
from stylesync.models.ops import fused_leaky_relu, fused_leaky_relu_, make_kernel, upfirdn2d


def upfirdn2d_reference(x: np.ndarray, k: np.ndarray, up: int, down: int, pad: tuple[int, int]) -> np.ndarray:
    """The definition, written with loops: zero-insert, pad (negative = crop), true convolution, stride."""
    n, c, h, w = x.shape
    xu = np.zeros((n, c, h * up, w * up))
    xu[:, :, ::up, ::up] = x
    p0, p1 = pad
    xp = np.pad(xu, ((0, 0), (0, 0), (max(p0, 0), max(p1, 0)), (max(p0, 0), max(p1, 0))))
    xp = xp[:, :, max(-p0, 0) : xp.shape[2] - max(-p1, 0), max(-p0, 0) : xp.shape[3] - max(-p1, 0)]
    kh, kw = k.shape
    oh, ow = xp.shape[2] - kh + 1, xp.shape[3] - kw + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i : i + kh, j : j + kw]
            # true convolution: out[i, j] = sum_{a,b} x[i + a, j + b] * k[kh-1-a, kw-1-b]
            out[:, :, i, j] = (patch * k[::-1, ::-1]).sum(axis=(2, 3))
    return out[:, :, ::down, ::down]


@pytest.mark.parametrize("up,down,pad", [(1, 1, (1, 1)), (2, 1, (2, 1)), (1, 2, (1, 1)), (2, 2, (1, 2)), (1, 1, (-1, 2))])
def test_upfirdn2d_matches_definition(up, down, pad):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 7, 9))
    k = rng.normal(size=(4, 3))  # asymmetric: catches a missing flip
    ref = upfirdn2d_reference(x, k, up, down, pad)
    out = upfirdn2d(torch.from_numpy(x), torch.from_numpy(k), up=up, down=down, pad=pad).numpy()
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)


def test_upfirdn2d_gradients():
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    k = make_kernel([1, 3, 3, 1]).double()
    assert torch.autograd.gradcheck(lambda t: upfirdn2d(t, k, up=2, down=1, pad=(2, 1)), (x,))
    assert torch.autograd.gradgradcheck(lambda t: upfirdn2d(t, k, up=1, down=2, pad=(1, 1)), (x,))


def _in_place(x, b):
    """fused_leaky_relu_ as the layers call it: on a fresh intermediate (here x * 1, a new tensor)."""
    return fused_leaky_relu_(x * 1, b)


@pytest.mark.parametrize("act", [fused_leaky_relu, _in_place], ids=["out-of-place", "in-place (what the layers run)"])
def test_fused_leaky_relu_values_and_gradients(act):
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    y = act(x, b)
    z = x + b.view(1, -1, 1, 1)
    ref = torch.where(z >= 0, z, 0.2 * z) * np.sqrt(2)
    assert torch.allclose(y, ref)
    assert torch.autograd.gradcheck(act, (x, b))
    assert torch.autograd.gradgradcheck(act, (x, b))  # R1 differentiates through it twice
    # 2-D input (EqualLinear with activation)
    x2 = torch.randn(3, 4, dtype=torch.float64)
    assert torch.allclose(act(x2, b), F.leaky_relu(x2 + b, 0.2) * np.sqrt(2))


def test_blur_and_upsample_shapes_and_gain():
    x = torch.ones(1, 2, 8, 8)
    assert Blur([1, 3, 3, 1], pad=(2, 2))(x).shape == (1, 2, 9, 9)
    up = Upsample([1, 3, 3, 1])(x)
    assert up.shape == (1, 2, 16, 16)
    # the x4 gain keeps a constant image constant away from the border after zero insertion
    assert torch.allclose(up[..., 4:12, 4:12], torch.ones(1, 2, 8, 8))


@pytest.mark.parametrize("upsample", [False, True])
def test_modulated_conv_fused_equals_unfused(upsample):
    conv = ModulatedConv2d(6, 5, 3, 8, upsample=upsample).double()
    x, s = torch.randn(3, 6, 8, 8, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    a = conv(x, s)
    conv.fused = False
    b = conv(x, s)
    assert a.shape == (3, 5, 16 if upsample else 8, 16 if upsample else 8)
    assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv_gradients(fused):
    """Both paths (the unfused one with its in-place `mul_`) differentiate correctly, twice (R1)."""
    torch.manual_seed(0)
    conv = ModulatedConv2d(3, 2, 3, 4, upsample=False).double()
    conv.fused = fused
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    s = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, s: conv(x, s), (x, s))
    assert torch.autograd.gradgradcheck(lambda x, s: conv(x, s), (x, s))
    w = conv.weight
    grads = torch.autograd.grad(conv(x, s).pow(2).sum(), [w, x, s])
    conv.fused = not fused
    other = torch.autograd.grad(conv(x, s).pow(2).sum(), [w, x, s])
    assert all(torch.allclose(a, b, atol=1e-9) for a, b in zip(grads, other))  # fused == unfused, gradients too


def test_modulated_conv_demodulation_normalises_weights():
    conv = ModulatedConv2d(16, 8, 3, 4)
    x = torch.zeros(1, 16, 5, 5)
    x[:, :, 2, 2] = 1.0  # a single pixel of ones probes the per-output weight sums
    s = torch.randn(1, 4)
    out = conv(x, s)
    w = conv.scale * conv.weight[0] * conv.modulation(s).view(1, 16, 1, 1)
    w = w * torch.rsqrt(w.pow(2).sum([1, 2, 3], keepdim=True) + 1e-8)
    assert torch.allclose(out[0, :, 2, 2], w[:, :, 1, 1].sum(1), atol=1e-5)
