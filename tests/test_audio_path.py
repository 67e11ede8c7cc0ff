"""The audio path stays alive in training: after a few tiny-model backbone steps on real (synthetic)
frames and their mel, the generated mouth still changes with the audio. The floor sits between the
two regimes measured here (tiny model, 8 steps, seed 0): E_a at lr_audio 1e-4 moves the mouth box
by ~1e-2 mean absolute (0..1 pixels) between two audio windows, a collapsed E_a (E_a at the
StyleGAN lr_g, the defect of tests/test_training_defects.py) by ~1e-5."""
from __future__ import annotations

import copy

import numpy as np
import torch

from stylesync.audio import melspectrogram, mel_windows
from stylesync.config import DiscriminatorConfig, LossConfig, MaskConfig, OptimConfig, SynthConfig
from stylesync.data.synthetic import ClipJob, make_clip
from stylesync.eval.metrics import mouth_crop
from stylesync.face.align import alignment_matrices, warp_faces
from stylesync.face.mask import mask_tensor
from stylesync.face.template import ALIGN_TEMPLATE
from stylesync.models.discriminator import Discriminator
from stylesync.models.generator import StyleSyncGenerator
from stylesync.train.step import StepModules, backbone_param_groups, make_optimizers, train_step

from helpers import tiny_generator_config

AUDIO_EFFECT_FLOOR = 1e-3  # mean |G(mel a) - G(mel b)| in the mouth box; alive ~1e-2, collapsed ~1e-5
S, W = 32, 5


def _clip():
    """A 2 s synthetic clip aligned as preprocessing does: frames (T, 3, S, S) in [0, 1], windows (T, 1, 80, 16)."""
    clip = make_clip(SynthConfig(seconds=2.0, yaw=0.0, exposure=0.0), ClipJob("dev", 2, 0, 0))
    mats = alignment_matrices(clip.landmarks.astype(np.float64), ALIGN_TEMPLATE, 128)
    x = torch.from_numpy(warp_faces(clip.frames, mats, 128)).permute(0, 3, 1, 2).float().div(255)
    frames = torch.nn.functional.interpolate(x, size=(S, S), mode="area")
    mel = melspectrogram(clip.audio.astype(np.float32))
    return frames, torch.from_numpy(mel_windows(mel, np.arange(len(frames)))).unsqueeze(1).float()


def _batch(frames, mels, rng) -> dict:
    starts = rng.integers(0, len(frames) - 2 * W, 4)
    refs = (starts + W + rng.integers(0, 10, 4)) % (len(frames) - W)
    win = lambda x, s: torch.stack([x[i:i + W] for i in s])  # noqa: E731  (B, W, ...)
    mel = win(mels, starts)
    return {"target": win(frames, starts), "reference": win(frames, refs), "mel": mel, "sync_mel": mel[:, 2]}


def audio_effect_after_steps(lr_audio, steps: int = 8) -> float:
    torch.manual_seed(0)
    frames, mels = _clip()
    g = StyleSyncGenerator(tiny_generator_config())
    d = Discriminator(DiscriminatorConfig(size=S, channel_multiplier=1, narrow=1 / 16))
    optim = OptimConfig(lr_g=0.005, lr_d=0.005, betas=[0.9, 0.99], lr_audio=lr_audio)
    opt_g, opt_d = make_optimizers(backbone_param_groups(g, optim), d.parameters(), optim, 16)
    mask = mask_tensor(S, MaskConfig())
    m = StepModules(g, d, opt_g, opt_d, mask, None, None, copy.deepcopy(g))
    rng = np.random.default_rng(0)
    for step in range(steps):
        train_step(m, _batch(frames, mels, rng), step, LossConfig(sync=False, d_reg_every=0), optim)
    g.eval()
    with torch.no_grad():  # the same masked frames and reference, two different stretches of audio
        x, ref = frames[:16] * (1 - mask), frames[20:21].expand(16, -1, -1, -1)
        a, b = g(x, ref, mels[:16], mask), g(x, ref, mels[25:41], mask)
    return (mouth_crop(a) - mouth_crop(b)).abs().mean().item()


def test_generated_mouth_still_changes_with_the_audio_after_training_steps():
    assert audio_effect_after_steps(1e-4) > AUDIO_EFFECT_FLOOR


def test_the_audio_effect_floor_catches_a_collapsed_audio_encoder():
    assert audio_effect_after_steps(None) < AUDIO_EFFECT_FLOOR  # E_a at lr_g: f_a collapses
