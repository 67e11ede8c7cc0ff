"""ONE training step, shared by the backbone and personalization (paper Sec. 3.2 and 3.3).

    G step:  L_g = adv + lambda_rec (L1 + lambda_vgg VGG) + lambda_sync (1 - cos)   (Eq. 5)
             [+ penalty(aux), e.g. personalization's lambda_p (||Delta W||^2 + ||Delta P||^2), Eq. 6]
    D step:  L_D = softplus(D(I')) + softplus(-D(I)) on the G step's fakes (detached)  (Eq. 3)
    R1 step: every d_reg_every steps, r1/2 * E||grad D(I)||^2 * d_reg_every  (lazy R1)
    EMA of G.
What the G step trains is whatever `opt_g` holds: all of G for the backbone; MLP_dw and Delta P for
personalization (E_a and E_face frozen there).

Non-finite losses (`nan_policy`, train.nan_policy): every loss term is checked before its update
(across DDP ranks, so that all ranks take the same decision). "stop" raises `NonFiniteLossError`
naming the step and the term(s); "skip" drops the update (G: the whole step, nothing changes; D: the
D/R1 update only) and counts it in `StepModules.extra["nonfinite_skipped"]`, logged as
`nonfinite_skipped` (cumulative).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import nn

from ..config import LossConfig, OptimConfig
from ..runtime.device import autocast
from ..runtime.faults import nan_fault
from .losses import d_logistic_loss, g_nonsaturating_loss, perceptual_loss, r1_penalty, sync_loss

log = logging.getLogger(__name__)


NAN_POLICIES = ("stop", "skip")


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN/inf (train.nan_policy: stop)."""


def _bad_terms(terms: dict[str, torch.Tensor]) -> list[str]:
    """The non-finite terms: one host sync for all of them (names looked up only when one is bad)."""
    if bool(torch.isfinite(torch.stack([t.detach().float().reshape(()) for t in terms.values()])).all()):
        return []
    return [k for k, v in terms.items() if not math.isfinite(float(v))]


def _any_rank(bad: bool, device: torch.device) -> bool:
    """True if `bad` on any DDP rank (every rank must skip or stop together)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return bad
    flag = torch.tensor([1.0 if bad else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item() > 0)


def _nonfinite(m: "StepModules", terms: dict[str, torch.Tensor], step: int, phase: str, policy: str,
               device: torch.device) -> bool:
    """Apply the policy to this update's loss terms. True = skip the update."""
    bad = _bad_terms(terms)
    if not _any_rank(bool(bad), device):
        return False
    shown = ", ".join(f"{k}={float(v)}" for k, v in terms.items())
    where = f"non-finite {phase} loss at step {step}: " + (
        f"term(s) {', '.join(bad)} ({shown})" if bad else "on another DDP rank")
    if policy == "skip":
        m.extra["nonfinite_skipped"] = m.extra.get("nonfinite_skipped", 0) + 1
        log.warning("%s: update skipped (train.nan_policy: skip; %d skipped so far)", where,
                    m.extra["nonfinite_skipped"])
        return True
    raise NonFiniteLossError(f"{where} (train.nan_policy: stop; set it to 'skip' to drop such steps)")


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside DDP / torch.compile wrappers."""
    while True:
        if hasattr(module, "module"):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod
        else:
            return module


@dataclass
class StepModules:
    G: nn.Module  # the generator, possibly DDP / compiled
    D: nn.Module  # the discriminator, possibly DDP / compiled
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    mask: torch.Tensor  # (1, 1, S, S) lower-face mask, 1 = generated region
    syncnet: Optional[nn.Module] = None  # frozen expert (eval mode)
    vgg: Optional[nn.Module] = None  # frozen VGG19 features; None = no perceptual term
    g_ema: Optional[nn.Module] = None
    amp_dtype: Optional[torch.dtype] = None  # torch.bfloat16 on GPU
    channels_last: bool = False
    extra: dict = field(default_factory=dict)


def backbone_param_groups(G: nn.Module, cfg: OptimConfig) -> list[dict]:
    """What the generalized training optimizes (all of G but MLP_dw / Delta P), as Adam groups:
    E_a at `cfg.lr_audio` (its plain convs need a far smaller lr than the equalized-lr layers), the rest at lr_g."""
    g = unwrap(G)
    audio = {id(p) for p in g.audio_encoder.parameters()}
    params = g.backbone_parameters()
    rest = [p for p in params if id(p) not in audio]
    ea = [p for p in params if id(p) in audio]
    return [{"params": rest}, {"params": ea, "lr": cfg.lr_g if cfg.lr_audio is None else cfg.lr_audio}]


def make_optimizers(g_params, d_params, cfg: OptimConfig, d_reg_every: int) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for G and D; D's lr and betas are scaled for lazy R1 (StyleGAN2: c = k / (k + 1)).
    `g_params`: parameters, or Adam groups (`backbone_param_groups`; a group without "lr" gets lr_g)."""
    c = d_reg_every / (d_reg_every + 1) if d_reg_every else 1.0
    b1, b2 = cfg.betas
    opt_g = torch.optim.Adam(g_params, lr=cfg.lr_g, betas=(b1, b2))
    opt_d = torch.optim.Adam(d_params, lr=cfg.lr_d * c, betas=(b1**c, b2**c))
    return opt_g, opt_d


def _cl(x: torch.Tensor, on: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if on else x


def generate(G: nn.Module, batch: dict, mask: torch.Tensor, channels_last: bool = False, return_delta_w: bool = False):
    """Run G on every frame of the windows: (B, T, 3, S, S) -> (B, T, 3, S, S) [, Delta W]."""
    b, t = batch["target"].shape[:2]
    target = batch["target"].flatten(0, 1)  # (B*T, 3, S, S)
    masked = _cl(target * (1 - mask), channels_last)
    reference = _cl(batch["reference"].flatten(0, 1), channels_last)
    out = G(masked, reference, batch["mel"].flatten(0, 1), mask, return_delta_w=return_delta_w)
    img, dw = out if return_delta_w else (out, None)
    img = img.reshape(b, t, *img.shape[1:])
    return (img, dw) if return_delta_w else img


def ema_decay_at(optim: OptimConfig, step: int) -> float:
    """The EMA decay of update `step` (0-based): `ema_decay`, or with `ema_rampup` = r the smaller of
    it and the decay whose half-life is r x the updates so far (StyleGAN2-ADA's ramp-up), so that
    the EMA of a short run does not keep a share of the random initialisation."""
    if not optim.ema_rampup:
        return optim.ema_decay
    return min(optim.ema_decay, 0.5 ** (1.0 / (optim.ema_rampup * (step + 1))))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, on parameters (buffers are copied)."""
    for (name, pe), (_, pm) in zip(ema.named_parameters(), model.named_parameters()):
        pe.lerp_(pm.detach().to(pe.dtype), 1 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def train_step(m: StepModules, batch: dict, step: int, loss: LossConfig, optim: OptimConfig,
               penalty: Optional[Callable[[dict], torch.Tensor]] = None, nan_policy: str = "stop") -> dict[str, torch.Tensor]:
    """One G step, then one D step on the same (detached) fakes (+ lazy R1), then the EMA.
    One generator forward per step. `batch` tensors are already on the device. Non-finite losses:
    see `nan_policy` in the module docstring. The logs are detached 0-d tensors (read them with
    float() once per log interval, train/loop.LossMeter): the only host syncs of a step are the
    finiteness checks, one per update."""
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    device = batch["target"].device
    real = _cl(batch["target"].flatten(0, 1), m.channels_last)  # (B*T, 3, S, S)
    logs: dict[str, torch.Tensor] = {}

    # ---------------------------------------------------------------- G step
    m.D.requires_grad_(False)
    with autocast(device, m.amp_dtype):
        out = generate(m.G, batch, m.mask, m.channels_last, return_delta_w=penalty is not None)
        fake, delta_w = out if penalty is not None else (out, None)
        flat = fake.flatten(0, 1).float()  # (B*T, 3, S, S)
        g_adv = g_nonsaturating_loss(m.D(_cl(flat, m.channels_last)).float())
        l1 = (flat - real).abs().mean()
        if nan_fault("loss", step):  # fault injection: a NaN in the reconstruction term
            l1 = l1 * float("nan")
        total = loss.lambda_adv * g_adv + loss.lambda_rec * l1
        logs.update(g_adv=g_adv.detach(), l1=l1.detach())
        if m.vgg is not None and loss.lambda_vgg > 0:
            vgg = perceptual_loss(m.vgg, flat, real, loss.vgg_layer_weights)
            total = total + loss.lambda_rec * loss.lambda_vgg * vgg
            logs["vgg"] = vgg.detach()
        if loss.sync and m.syncnet is not None and loss.lambda_sync > 0:
            s = sync_loss(m.syncnet, fake.float(), batch["sync_mel"])
            total = total + loss.lambda_sync * s
            logs["sync"] = s.detach()
        if penalty is not None:
            p = penalty({"delta_w": delta_w})
            total = total + p
            logs["penalty"] = p.detach()
    if _nonfinite(m, {**logs, "g_total": total.detach()}, step, "G", nan_policy, device):
        return {"nonfinite_skipped": torch.tensor(float(m.extra["nonfinite_skipped"]))}  # nothing updated (G, D, EMA)
    m.opt_g.zero_grad(set_to_none=True)
    total.backward()
    if optim.grad_clip:
        params = [p for g in m.opt_g.param_groups for p in g["params"]]
        logs["g_grad_norm"] = torch.nn.utils.clip_grad_norm_(params, optim.grad_clip).detach()
    m.opt_g.step()
    logs["g_total"] = total.detach()

    # ---------------------------------------------------------------- D step
    m.D.requires_grad_(True)
    with autocast(device, m.amp_dtype):
        fake_pred = m.D(_cl(flat.detach(), m.channels_last))
        real_pred = m.D(real)
        d_loss = d_logistic_loss(real_pred.float(), fake_pred.float())
    d_skip = _nonfinite(m, {"d_loss": d_loss.detach()}, step, "D", nan_policy, device)
    if d_skip:
        logs["nonfinite_skipped"] = torch.tensor(float(m.extra["nonfinite_skipped"]))
        if m.g_ema is not None and optim.ema_decay > 0:
            ema_update(m.g_ema, unwrap(m.G), ema_decay_at(optim, step))  # G was updated: its EMA follows
        return logs
    m.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    if optim.grad_clip:
        torch.nn.utils.clip_grad_norm_(unwrap(m.D).parameters(), optim.grad_clip)
    m.opt_d.step()
    logs.update(d_loss=d_loss.detach(), real_score=real_pred.detach().float().mean(),
                fake_score=fake_pred.detach().float().mean())
    if loss.d_reg_every and loss.r1 > 0 and step % loss.d_reg_every == 0:
        real_r1 = real.detach().requires_grad_(True)
        pred = m.D(real_r1)  # fp32: the gradient penalty needs the precision
        r1 = r1_penalty(pred, real_r1, unwrap(m.D).INPUT_GAIN)
        if not _nonfinite(m, {"r1": r1.detach()}, step, "R1", nan_policy, device):
            m.opt_d.zero_grad(set_to_none=True)
            (loss.r1 / 2 * r1 * loss.d_reg_every + 0 * pred[0, 0]).backward()
            m.opt_d.step()
            logs["r1"] = r1.detach()

    if m.g_ema is not None and optim.ema_decay > 0:
        ema_update(m.g_ema, unwrap(m.G), ema_decay_at(optim, step))
    if nan_policy == "skip":
        logs["nonfinite_skipped"] = torch.tensor(float(m.extra.get("nonfinite_skipped", 0)))
    return logs
