"""Our safetensors checkpoints and the foreign-format importers (randomly initialised weights)."""
import json
import pickle
from pathlib import Path

import pytest
import torch

from stylesync.config import DiscriminatorConfig, GeneratorConfig
from stylesync.models.checkpoint import CheckpointError, load_into, read_model, save_model, torch_load_weights
from stylesync.models.discriminator import Discriminator
from stylesync.models.generator import StyleSyncGenerator
from stylesync.models.importers import (
    gpen_key, load_gpen, load_rosinality_discriminator, load_rosinality_synthesis, load_syncnet_official,
    load_vgg19_torchvision, rosinality_generator_key,
)

FORMATS = json.loads((Path(__file__).parent / "fixtures" / "foreign_formats.json").read_text())["formats"]


def random_state(fmt: str) -> dict[str, torch.Tensor]:
    """A randomly initialised state dict in a public format (names and shapes from the fixture)."""
    g = torch.Generator().manual_seed(0)
    return {k: (torch.randn(shape, generator=g) if shape else torch.tensor(0)) for k, shape in FORMATS[fmt].items()}


def test_round_trip(tmp_path, tiny_gcfg):
    g = StyleSyncGenerator(tiny_gcfg)
    save_model(tmp_path / "g", g.state_dict(), "generator", {"size": 32})
    state, meta = read_model(tmp_path / "g", kind="generator")
    g2 = load_into(StyleSyncGenerator(tiny_gcfg), state, "test")
    for (k, a), (_, b) in zip(g.state_dict().items(), g2.state_dict().items()):
        assert torch.equal(a, b), k
    assert meta["config"] == {"size": 32} and len(meta["sha256"]) == 64
    with pytest.raises(CheckpointError, match="expected 'discriminator'"):
        read_model(tmp_path / "g", kind="discriminator")


def test_the_same_tensors_give_the_same_file_bytes(tmp_path):
    """Run keys and DVC hash the weights file: saving the same tensors again must not change it
    (safetensors writes several metadata entries in a hash-map order that varies per save)."""
    from stylesync.storage import file_sha256

    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3)}
    hashes = {file_sha256(save_model(tmp_path / f"m{i}", state, "syncnet", {}) / "model.safetensors") for i in range(16)}
    assert len(hashes) == 1


def test_corrupt_and_missing_files_are_detected(tmp_path, tiny_gcfg):
    save_model(tmp_path / "g", StyleSyncGenerator(tiny_gcfg).state_dict(), "generator", {})
    w = tmp_path / "g" / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-10] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        read_model(tmp_path / "g")
    w.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError):
        read_model(tmp_path / "g", verify=False)
    with pytest.raises(CheckpointError, match="missing"):
        read_model(tmp_path / "nothing")


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_bearing_file_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"d": {"w": torch.zeros(1)}, "args": _Evil()}, p)
    with pytest.raises(CheckpointError, match="refused"):
        torch_load_weights(p)


def test_key_errors_name_the_keys(tiny_dcfg):
    d = Discriminator(tiny_dcfg)
    state = d.state_dict()
    state.pop("final_conv.1.bias")
    state["extra.weight"] = torch.zeros(1)
    state["final_linear.1.bias"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as e:
        load_into(Discriminator(tiny_dcfg), state, "file.pt")
    msg = str(e.value)
    assert "final_conv.1.bias" in msg and "extra.weight" in msg and "final_linear.1.bias" in msg


def test_rosinality_discriminator_import(tmp_path):
    state = random_state("rosinality_discriminator_256_cm2")
    torch.save({"d": state, "g_ema": random_state("rosinality_generator_256_cm2")}, tmp_path / "ckpt.pt")
    d = load_rosinality_discriminator(Discriminator(DiscriminatorConfig()), tmp_path / "ckpt.pt")
    own = d.state_dict()
    assert set(own) == set(state)
    assert all(torch.equal(own[k], state[k]) for k in state)


def test_rosinality_generator_import_maps_every_key():
    state = random_state("rosinality_generator_256_cm2")
    for k in state:  # every key has a destination or is an explicitly unused noise buffer
        assert rosinality_generator_key(k) is None or rosinality_generator_key(k).split(".")[0] in ("mapping", "synthesis")
    g = StyleSyncGenerator(GeneratorConfig())
    report = load_rosinality_synthesis(g, {"g_ema": state})
    own = g.state_dict()
    for k in report["loaded"]:
        src = k.split(".", 1)[1]
        assert torch.equal(own[k], state[src])
    assert "synthesis.input.input" in report["loaded"] and "mapping.style.1.weight" in report["loaded"]
    assert "synthesis.convs.0.conv.weight" in report["shape_mismatch"]  # concat noise doubles inputs
    assert len(report["loaded"]) + len(report["shape_mismatch"]) + len(report["not_used"]) == len(state)


@pytest.mark.parametrize("fmt,name", [("gpen_bfr_256", "GPEN-BFR-256"), ("gpen_bfr_512", "GPEN-BFR-512")])
def test_gpen_import_maps_every_key(tmp_path, fmt, name):
    state = random_state(fmt)
    torch.save(state, tmp_path / f"{name}.pth")
    model = load_gpen(tmp_path / f"{name}.pth", name)
    own = model.state_dict()
    assert len(own) == len(state)
    for k, v in state.items():
        assert torch.equal(own[gpen_key(k)], v)
    if name == "GPEN-BFR-256":
        out = model.restore(torch.rand(1, 3, 256, 256))
        assert out.shape == (1, 3, 256, 256) and 0 <= out.min() and out.max() <= 1


def test_gpen_wrong_model_is_named(tmp_path):
    torch.save(random_state("gpen_bfr_256"), tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="wrong sizes"):
        load_gpen(tmp_path / "w.pth", "GPEN-BFR-512")


def test_vgg19_import(tmp_path):
    state = random_state("torchvision_vgg19")
    torch.save(state, tmp_path / "vgg19.pth")
    vgg = load_vgg19_torchvision(tmp_path / "vgg19.pth")
    own = vgg.state_dict()
    assert set(own) <= {k for k in state if k.startswith("features.")}
    for k, v in own.items():
        assert torch.equal(v, state[k])
    feats = vgg(torch.rand(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    bad = dict(state)
    bad.pop("features.28.weight")
    with pytest.raises(CheckpointError, match="features.28.weight"):
        load_vgg19_torchvision(bad)


@pytest.mark.parametrize("drop_nbt", [False, True])
def test_syncnet_official_import(tmp_path, drop_nbt):
    state = random_state("syncnet_python_v2")
    state = {k: (v.abs() + 0.5 if "running_var" in k else v) for k, v in state.items()}
    if drop_nbt:
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "syncnet_v2.model")
    model = load_syncnet_official(tmp_path / "syncnet_v2.model")
    own = model.state_dict()
    for k, v in state.items():
        assert torch.equal(own[k].float(), v.float()), k
    with torch.no_grad():
        assert model.forward_lip(torch.rand(1, 3, 5, 224, 224) * 255).shape == (1, 1024)
