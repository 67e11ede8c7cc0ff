"""The paper's objectives (Sec. 3.2-3.3): StyleGAN2 adversarial losses with lazy R1, L1 + VGG19
perceptual reconstruction (Eq. 2), the SyncNet lip-sync loss (Eq. 4), the expert's BCE, the personalization penalty (Eq. 6)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F


def d_logistic_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    """E[log D(I)] + E[log(1 - D(I'))] as a loss (Eq. 3, discriminator side)."""
    return F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()


def g_nonsaturating_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss -E[log D(I')]."""
    return F.softplus(-fake_pred).mean()


def r1_penalty(real_pred: torch.Tensor, real: torch.Tensor, input_gain: float = 1.0) -> torch.Tensor:
    """E ||grad_u D||^2 on real images, u = what D's first layer sees (create_graph for the double
    backward). D maps the [0, 1] image x to u = input_gain * x - 1 (our D: gain 2, StyleGAN2's
    [-1, 1]), so grad_u = grad_x / input_gain and `r1` keeps StyleGAN2's meaning of gamma."""
    (grad,) = torch.autograd.grad(real_pred.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean() / input_gain**2


def perceptual_loss(vgg, fake: torch.Tensor, real: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """sum_m w_m * ||VGG_m(I') - VGG_m(I)||_1 (Eq. 2, second term; mean absolute error per layer)."""
    f_fake, f_real = vgg(fake), vgg(real)
    return sum(w * F.l1_loss(a, b.detach()) for w, a, b in zip(weights, f_fake, f_real))


def sync_loss(syncnet, frames: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """Eq. 4, -cos(S_v(I'_{t:t+4}), S_a(a)), reported as 1 - cos (same gradient, >= 0).
    frames: (B, 5, 3, S, S) generated; mel: (B, 1, 80, 16)."""
    return (1 - syncnet(frames, mel)).mean()


def syncnet_bce(cos: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Wav2Lip's expert objective: BCE on the cosine of the embeddings (in [0, 1])."""
    return F.binary_cross_entropy(cos.clamp(1e-7, 1 - 1e-7), label)


def delta_penalty(delta_w: Optional[torch.Tensor], delta_p_squared_norm: torch.Tensor | float,
                  lambda_p: float) -> torch.Tensor | float:
    """Eq. 6: lambda_p (||Delta W||^2 + sum ||Delta P||^2). delta_w: (B, L, D) or None (Delta W off),
    squared per sample and averaged over the batch; delta_p_squared_norm: sum ||Delta P||^2 measured
    on the effective (run-time scaled) weights (`DeltaP.squared_norm`)."""
    dw = delta_w.pow(2).flatten(1).sum(1).mean() if delta_w is not None else 0.0
    return lambda_p * (dw + delta_p_squared_norm)
