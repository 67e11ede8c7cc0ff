"""Image metrics (torchmetrics; checked against scikit-image in the tests) and the mouth region."""
from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from ..face.template import TEMPLATE_BOX, canonical_landmarks, template_to_pixels


MAX_PSNR = 100.0  # identical images (the paper's GT row reads 100.00)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of (N, 3, H, W) images in [0, 1] -> (N,), capped at MAX_PSNR."""
    out = peak_signal_noise_ratio(pred.float(), target.float(), data_range=1.0, reduction="none", dim=(1, 2, 3))
    return out.clamp(max=MAX_PSNR)


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Gaussian window 11, sigma 1.5) of (N, 3, H, W) images in [0, 1] -> (N,)."""
    return structural_similarity_index_measure(pred.float(), target.float(), data_range=1.0, reduction="none")


MOUTH_BOX_OPEN = 16.0  # lip gap (template units) the mouth box holds: ~p90 of a real speaker (docs/MODELS.md)


def mouth_box(size: int, margin: float = 0.15) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) around the template mouth (landmarks 48-67) opened by MOUTH_BOX_OPEN, in an
    aligned crop of `size`, enlarged by `margin` of its size on each side."""
    lm = template_to_pixels(canonical_landmarks(mouth_open=MOUTH_BOX_OPEN)[48:68], size)
    (x0, y0), (x1, y1) = lm.min(0), lm.max(0)
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    return (max(int(y0 - my), 0), min(int(np.ceil(y1 + my)), size), max(int(x0 - mx), 0), min(int(np.ceil(x1 + mx)), size))


def mouth_crop(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) -> the mouth region (N, 3, h, w)."""
    y0, y1, x0, x1 = mouth_box(images.shape[-1])
    return images[..., y0:y1, x0:x1]


def mouth_psnr(pred: torch.Tensor, gt: torch.Tensor, keep: torch.Tensor | None = None) -> float:
    """Mean PSNR of the mouth boxes of (N, 3, S, S) frames, over the frames `keep` selects (N,) bool;
    NaN when it selects none."""
    if keep is not None:
        if not keep.any():
            return float("nan")
        pred, gt = pred[keep], gt[keep]
    return psnr(mouth_crop(pred), mouth_crop(gt)).mean().item()


MOUTH_DARK = 0.3  # luminance below which a mouth-box pixel counts as mouth interior (synthetic: 0.07)


def mouth_opening(images: torch.Tensor, dark: float = MOUTH_DARK) -> torch.Tensor:
    """Lip opening read from the image, (N, 3, S, S) in [0, 1] -> (N,) in template units.

    The dark mouth interior's "height": sum over the mouth box of max(0, dark - luminance) / dark
    (a soft count of interior pixels), divided by the box width and scaled from pixels to template
    units (the square crop is 100 units high). 0 for a closed mouth. On the synthetic corpus it follows the
    ground-truth lip gap (correlation checked in tests/test_demo_check.py); the scale differs
    between identities (teeth and tongue fill part of the interior), so compare a generated frame
    with its ground-truth frame measured the same way, never with the landmark gap directly."""
    y0, y1, x0, x1 = mouth_box(images.shape[-1])
    rgb = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32).view(1, 3, 1, 1)
    lum = (images[..., y0:y1, x0:x1].float() * rgb).sum(1)  # (N, h, w)
    mass = (dark - lum).clamp(min=0).sum((1, 2)) / dark  # interior pixels
    return mass / (x1 - x0) * TEMPLATE_BOX[1] / images.shape[-1]  # (N,)


MIN_MOVE = 0.3  # std (template units) of the real opening track under which a clip's mouth "does not move"


def opening_agreement(generated: torch.Tensor, real: torch.Tensor) -> tuple[float, float]:
    """Image-read opening tracks (T,) of generated and real frames -> (Pearson correlation, std
    ratio generated / real); both NaN where the real mouth does not move (std < MIN_MOVE), the
    correlation 0 where the generated track is flat while the real one moves."""
    g, r = generated.double(), real.double()
    if r.std() < MIN_MOVE:
        return float("nan"), float("nan")
    gain = (g.std() / r.std()).item()
    if g.std() < 1e-6:
        return 0.0, gain
    return torch.corrcoef(torch.stack([g, r]))[0, 1].item(), gain
