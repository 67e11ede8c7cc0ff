"""StyleSyncGenerator: shapes, L, Eq. 1 masking, Delta W / Delta P identities, fusion options."""
import pytest
import torch

from stylesync.config import GeneratorConfig
from stylesync.models.generator import StyleSyncGenerator, masked_noise_layers
from stylesync.models.synthesis import n_latent, n_noise, noise_resolutions

from helpers import lower_half_mask, tiny_generator_config


def inputs(size, b=2):
    return torch.rand(b, 3, size, size), torch.rand(b, 3, size, size), torch.randn(b, 1, 80, 16), lower_half_mask(size)


def test_full_size_structure_and_forward():
    g = StyleSyncGenerator(GeneratorConfig()).eval()  # 256, cm 2: the paper's size
    assert g.n_latent == 14 and n_latent(256) == 14
    assert g.synthesis.num_layers == 13 == n_noise(256)
    assert noise_resolutions(256) == [4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128, 256, 256]
    n_params = sum(p.numel() for p in g.parameters())
    assert 70e6 < n_params < 80e6  # authors' ~69-74 M; ours adds MLP_dw (~3.9 M)
    with torch.no_grad():
        out = g(*inputs(256, b=1))
    assert out.shape == (1, 3, 256, 256)
    assert 0 <= out.min() and out.max() <= 1  # sigmoid output


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_at_small_sizes(size):
    g = StyleSyncGenerator(tiny_generator_config(size=size))
    out = g(*inputs(size))
    assert out.shape == (2, 3, size, size)
    assert g.n_latent == 2 * {32: 5, 64: 6, 128: 7}[size] - 2


@pytest.mark.parametrize("size", [512, 1024])
def test_large_sizes_build(size):
    g = StyleSyncGenerator(tiny_generator_config(size=size))
    assert g.n_latent == n_latent(size) and len(g.mask_layers) == n_noise(size)


def test_bad_size_rejected():
    with pytest.raises(ValueError):
        StyleSyncGenerator(tiny_generator_config(size=48))


def test_eq1_default_masks_the_high_resolution_half():
    # l > floor(L/2): at 256 the six convs fed by F_64, F_128, F_256
    assert [r for r, m in zip(noise_resolutions(256), masked_noise_layers(256, None)) if m] == [64, 64, 128, 128, 256, 256]
    assert not any(masked_noise_layers(256, 0))  # "w/o mask" ablation
    assert {r for r, m in zip(noise_resolutions(256), masked_noise_layers(256, 4)) if m} == {32, 64, 128, 256}


def test_masked_encoder_maps_zero_inside_mask_untouched_elsewhere(tiny_gcfg):
    g = StyleSyncGenerator(tiny_gcfg)
    masked, ref, mel, mask = inputs(32)
    _, maps = g.encode_face(masked, ref)
    noises = g.spatial_noises(maps, mask)
    by_res = {m.shape[-1]: m for m in maps}
    for noise, res, is_masked in zip(noises, noise_resolutions(32), g.mask_layers):
        f = by_res[res]
        half = res // 2
        if is_masked:
            assert torch.count_nonzero(noise[..., half:, :]) == 0  # inside the mask: exactly zero
            assert torch.equal(noise[..., :half, :], f[..., :half, :])  # outside: untouched
            assert torch.count_nonzero(f[..., half:, :]) > 0  # (there was something to remove)
        else:
            assert torch.equal(noise, f)
    assert any(g.mask_layers) and not all(g.mask_layers)


def test_mask_required_when_eq1_is_on(tiny_gcfg):
    g = StyleSyncGenerator(tiny_gcfg)
    m, r, mel, _ = inputs(32)
    with pytest.raises(ValueError, match="mask"):
        g(m, r, mel, None)
    g0 = StyleSyncGenerator(tiny_generator_config(mask_n_noise=0))
    assert g0(m, r, mel, None).shape == (2, 3, 32, 32)


def test_delta_w_is_exactly_zero_until_trained(tiny_gcfg):
    g = StyleSyncGenerator(tiny_gcfg).eval()
    f_f = torch.randn(3, tiny_gcfg.face_dim)
    assert torch.count_nonzero(g.delta_w(f_f)) == 0
    x = inputs(32)
    off = g(*x)  # Ours-G: Delta W not computed
    g.use_delta_w = True  # personalization turns it on: a zero-initialised MLP_dw changes nothing ...
    assert torch.equal(off, g(*x))
    with torch.no_grad():
        g.mlp_dw[-1].bias.add_(0.1)  # ... until it is trained
    assert not torch.equal(off, g(*x))
    g.use_delta_w = False  # and off again, it is not used at all
    assert torch.equal(off, g(*x))


def test_delta_p_zero_is_bit_identical_and_nonzero_changes_output(tiny_gcfg):
    g = StyleSyncGenerator(tiny_gcfg).eval()
    x = inputs(32)
    base = g(*x)
    dp = g.enable_delta_p()
    n_shifted = sum(s.numel() for s in dp.shifts.values())
    assert n_shifted == sum(p.numel() for p in g.synthesis.parameters())
    assert torch.equal(g(*x), base)
    with torch.no_grad():
        next(iter(dp.shifts.values())).add_(0.1)
    assert not torch.equal(g(*x), base)
    # gradients reach Delta P, base weights untouched by construction
    g.zero_grad()
    g(*x).mean().backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in dp.shifts.values())  # every shift moves the output


def test_delta_p_scope_with_mapping(tiny_gcfg):
    g = StyleSyncGenerator(tiny_generator_config(delta_p_scope="synthesis+mapping"))
    dp = g.enable_delta_p()
    assert any(k.startswith("mapping") for k in dp.shifts)
    x = inputs(32)
    with torch.no_grad():
        for k, s in dp.shifts.items():
            if k.startswith("mapping"):
                s.add_(0.05)
    g2 = StyleSyncGenerator(tiny_generator_config(delta_p_scope="synthesis+mapping"))
    g2.load_state_dict({k: v for k, v in g.state_dict().items() if not k.startswith("delta_p")})
    assert not torch.equal(g(*x), g2(*x))


def test_concat_fusion_uses_wide_styles():
    g = StyleSyncGenerator(tiny_generator_config(style_fusion="concat"))
    assert g.mapping is None and g.style_dim == 128
    assert g.synthesis.conv1.conv.modulation.weight.shape[1] == 128
    assert g(*inputs(32)).shape == (2, 3, 32, 32)


def test_audio_changes_output(tiny_gcfg):
    g = StyleSyncGenerator(tiny_gcfg)
    torch.nn.init.normal_(g.synthesis.conv1.noise.weight)
    m, r, mel, mask = inputs(32)
    assert not torch.equal(g(m, r, mel, mask), g(m, r, torch.randn_like(mel), mask))


def test_external_audio_feature_path(tiny_gcfg):
    g = StyleSyncGenerator(tiny_gcfg)
    m, r, mel, mask = inputs(32)
    assert torch.equal(g(m, r, mel, mask), g(m, r, None, mask, f_a=g.encode_audio(mel)))
