"""StyleSyncGenerator (paper Sec. 3.1 and 3.3).

    [I_t^m, I_ref] --E_face--> f_f, F = {F_S .. F_4}      mel window --E_a--> f_a
    w = fuse(f_a, f_f);  W+ = w + Delta W,  Delta W = MLP_dw(f_f)          (Sec. 3.3, zero until trained)
    N_l = (1 - M) * F_l for the layers of Eq. 1, else F_l                   (Eq. 1)
    I'_t = sigmoid(G_{P + Delta P}(N, W+))                                   (Delta P = 0 in Ours-G)
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.func import functional_call

from ..config import GeneratorConfig
from .encoders import AudioEncoder, FaceEncoder
from .layers import EqualLinear
from .synthesis import MappingNetwork, SynthesisNetwork, encoder_noises, n_latent, noise_resolutions


EQ1_READINGS = ("relative", "absolute")
EQ1_ABSOLUTE_MIN_RES = 64  # the finest map Eq. 1 leaves unmasked at 256 is F_32


def masked_noise_layers(size: int, mask_n_noise: Optional[int], reading: str = "relative") -> list[bool]:
    """Which of the styled convs' noise inputs get Eq. 1's `(1 - M) *`.

    mask_n_noise None, reading "relative": Eq. 1, the convs with layer index l > floor(L / 2), where
    conv1 is l = 1 and convs[k] is l = k + 2 (the index of the style each one consumes, 1-based). At
    256 (L = 14) that is the six convs at 64, 128 and 256, i.e. the encoder maps F_64, F_128, F_256;
    at 64 (L = 10) F_32 and F_64.
    reading "absolute": the maps of 64 px and above (what Eq. 1 masks at 256); at 64 only F_64.
    mask_n_noise k: the noise inputs fed from the k highest-resolution encoder maps (0 = no masking,
    the paper's "w/o mask" ablation; the authors' Paddle port uses 4 at 256: F_32 .. F_256).
    """
    res = noise_resolutions(size)
    if reading not in EQ1_READINGS:
        raise ValueError(f"eq1_reading must be one of {EQ1_READINGS}, got {reading!r}")
    if mask_n_noise is None and reading == "absolute":
        return [r >= EQ1_ABSOLUTE_MIN_RES for r in res]
    if mask_n_noise is None:
        half = n_latent(size) // 2
        return [i + 1 > half for i in range(len(res))]
    masked_res = sorted(set(res), reverse=True)[:mask_n_noise]
    return [r in masked_res for r in res]


class DeltaP(nn.Module):
    """Parameter shifts Delta P kept apart from the base weights: the personal model runs with
    `base + Delta P`; all-zero shifts reproduce the base model bit for bit."""

    SEP = ":"

    def __init__(self, named_params: dict[str, torch.Tensor]):
        super().__init__()
        self.shifts = nn.ParameterDict(
            {k.replace(".", self.SEP): nn.Parameter(torch.zeros_like(v)) for k, v in named_params.items()}
        )

    def shifted(self, prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
        """{local parameter name: base + shift} for the parameters of `module` under `prefix`."""
        out = {}
        for name, p in module.named_parameters():
            key = f"{prefix}.{name}".replace(".", self.SEP)
            if key in self.shifts:
                out[name] = p + self.shifts[key]
        return out

    def squared_norm(self, scales: Optional[dict[str, float]] = None) -> torch.Tensor:
        """sum ||Delta P||^2; with `scales` (see `effective_scales`) measured on the weights as the
        layers use them (equalized-lr parameters are stored unscaled)."""
        scales = scales or {}
        return sum((scales.get(k, 1.0) ** 2) * s.pow(2).sum() for k, s in self.shifts.items())


def effective_scales(model: nn.Module, sep: str = DeltaP.SEP) -> dict[str, float]:
    """{parameter name (with `sep`): the run-time multiplier of that stored parameter}: the
    equalized-lr `scale` of EqualLinear / EqualConv2d / ModulatedConv2d weights, `lr_mul` of
    EqualLinear biases, 1 elsewhere."""
    from .layers import EqualConv2d, EqualLinear, ModulatedConv2d

    out = {}
    for mod_name, mod in model.named_modules():
        for p_name, _ in mod.named_parameters(recurse=False):
            key = f"{mod_name}.{p_name}".lstrip(".").replace(".", sep)
            if isinstance(mod, (EqualLinear, EqualConv2d, ModulatedConv2d)) and p_name == "weight":
                out[key] = float(mod.scale)
            elif isinstance(mod, EqualLinear) and p_name == "bias":
                out[key] = float(mod.lr_mul)
    return out


class StyleSyncGenerator(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        size, d = cfg.size, cfg.style_dim
        self.size = size
        self.n_latent = n_latent(size)
        self.face_encoder = FaceEncoder(size, cfg.in_channels, cfg.face_dim, cfg.channel_multiplier, cfg.narrow,
                                        cfg.blur_kernel)
        self.audio_encoder = AudioEncoder(cfg.audio_dim, cfg.audio_channels)
        if cfg.style_fusion == "authors":
            self.fusion = EqualLinear(cfg.audio_dim + cfg.face_dim, d, activation=cfg.fusion_activation)
            self.mapping = MappingNetwork(d, cfg.n_mlp, cfg.lr_mlp)
            self.style_dim = d
        elif cfg.style_fusion == "concat":
            self.fusion = None
            self.mapping = None
            self.style_dim = cfg.audio_dim + cfg.face_dim
        else:
            raise ValueError(f"style_fusion must be 'authors' or 'concat', got {cfg.style_fusion!r}")
        # MLP_dw: f_f -> Delta W (L x style_dim); the last layer starts at exactly zero
        hidden = [EqualLinear(cfg.face_dim, cfg.face_dim, activation="fused_lrelu") for _ in range(cfg.dw_hidden_layers)]
        self.mlp_dw = nn.Sequential(*hidden, EqualLinear(cfg.face_dim, self.n_latent * self.style_dim, zero_init=True))
        self.synthesis = SynthesisNetwork(size, self.style_dim, cfg.channel_multiplier, cfg.narrow, cfg.blur_kernel,
                                          concat_noise=True, fused_modconv=cfg.fused_modconv)
        self.mask_layers = masked_noise_layers(size, cfg.mask_n_noise, cfg.eq1_reading)
        self.delta_p: Optional[DeltaP] = None
        # Delta W and Delta P are 0 in the generalized model (Ours-G) and are not optimized there: MLP_dw
        # stays frozen at its zero init and out of the backbone's optimizer; personalization trains it
        self.use_delta_w = False
        self.mlp_dw.requires_grad_(False)

    def backbone_parameters(self) -> list[nn.Parameter]:
        """What the generalized training optimizes: all of G but MLP_dw (and Delta P)."""
        skip = {id(p) for p in self.mlp_dw.parameters()}
        skip |= {id(p) for p in self.delta_p.parameters()} if self.delta_p is not None else set()
        return [p for p in self.parameters() if id(p) not in skip]

    # ------------------------------------------------------------------ personalization hooks
    def delta_p_modules(self) -> dict[str, nn.Module]:
        mods = {"synthesis": self.synthesis}
        if self.cfg.delta_p_scope == "synthesis+mapping" and self.mapping is not None:
            mods["mapping"] = self.mapping
        return mods

    def enable_delta_p(self) -> DeltaP:
        """Attach zero shifts for the parameters Delta P covers (idempotent)."""
        if self.delta_p is None:
            named = {f"{prefix}.{n}": p.detach() for prefix, m in self.delta_p_modules().items()
                     for n, p in m.named_parameters()}
            self.delta_p = DeltaP(named).to(next(self.parameters()).device)
        return self.delta_p

    def _call(self, prefix: str, module: nn.Module, *args):
        if self.delta_p is None or prefix not in self.delta_p_modules():
            return module(*args)
        return functional_call(module, self.delta_p.shifted(prefix, module), args)

    # ------------------------------------------------------------------ pieces of the forward
    def encode_face(self, masked: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, 3, S, S) x 2 in [0, 1] -> f_f (B, face_dim), maps [F_S .. F_4]."""
        return self.face_encoder(torch.cat([masked, reference], dim=1))

    def encode_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, 1, 80, 16) -> f_a (B, audio_dim)."""
        return self.audio_encoder(mel)

    def styles(self, f_a: torch.Tensor, f_f: torch.Tensor, delta_w: Optional[torch.Tensor] = None) -> torch.Tensor:
        """-> W+ (B, L, style_dim) = w + Delta W (Delta W computed from f_f unless given)."""
        w = torch.cat([f_a, f_f], dim=1)  # (B, audio_dim + face_dim)
        if self.fusion is not None:
            w = self._call("mapping", self.mapping, self.fusion(w))  # (B, style_dim)
        w_plus = w.unsqueeze(1).expand(-1, self.n_latent, -1)
        if self.use_delta_w:
            w_plus = w_plus + (self.delta_w(f_f) if delta_w is None else delta_w)
        return w_plus

    def delta_w(self, f_f: torch.Tensor) -> torch.Tensor:
        return self.mlp_dw(f_f).reshape(f_f.shape[0], self.n_latent, self.style_dim)  # (B, L, D)

    def spatial_noises(self, maps: list[torch.Tensor], mask: Optional[torch.Tensor]) -> list[torch.Tensor]:
        """The 13 (at 256) noise inputs with Eq. 1 applied; mask (B or 1, 1, S, S), 1 = masked."""
        return encoder_noises(maps, self.size, self.mask_layers, mask)

    def synthesize(self, w_plus: torch.Tensor, noises: list[torch.Tensor]) -> torch.Tensor:
        img = self._call("synthesis", self.synthesis, w_plus, noises)  # (B, 3, S, S)
        return torch.sigmoid(img) if self.cfg.output_activation == "sigmoid" else img

    def forward(
        self, masked: torch.Tensor, reference: torch.Tensor, mel: Optional[torch.Tensor],
        mask: Optional[torch.Tensor], f_a: Optional[torch.Tensor] = None, return_delta_w: bool = False,
    ):
        """masked/reference: (B, 3, S, S) in [0, 1]; mel: (B, 1, 80, 16) (or f_a (B, audio_dim));
        mask: (B or 1, 1, S, S). Returns I'_t (B, 3, S, S) in [0, 1] (and Delta W (B, L, D) if asked,
        for the personalization penalty)."""
        f_f, maps = self.encode_face(masked, reference)
        if f_a is None:
            f_a = self.encode_audio(mel)
        dw = self.delta_w(f_f) if self.use_delta_w else None
        img = self.synthesize(self.styles(f_a, f_f, dw), self.spatial_noises(maps, mask))
        return (img, dw) if return_delta_w else img
