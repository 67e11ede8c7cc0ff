"""params.yaml loading: types, unknown keys, overrides."""
import pytest

from stylesync.config import ConfigError, Params, load_params


def test_repo_params_load():
    p = load_params("params.yaml")
    assert isinstance(p, Params) and p.model.generator.size == p.model.discriminator.size


def test_defaults_are_the_paper_model():
    p = load_params(None)
    g = p.model.generator
    assert (g.size, g.channel_multiplier, g.narrow, g.style_dim, g.n_mlp) == (256, 2, 1.0, 512, 8)


def test_overrides_and_type_checks(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("model:\n  generator:\n    size: 64\n    narrow: 0.5\n  discriminator:\n    size: 64\n")
    p = load_params(f, ["model.generator.narrow=0.25", "model.generator.mask_n_noise=4"])
    assert p.model.generator.narrow == 0.25 and p.model.generator.mask_n_noise == 4
    with pytest.raises(ConfigError, match="model.generator.sise"):
        load_params(f, ["model.generator.sise=32"])
    with pytest.raises(ConfigError, match="model.generator.size: expected an integer"):
        load_params(f, ["model.generator.size=big"])
    with pytest.raises(ConfigError, match="power of two"):
        load_params(f, ["model.generator.size=48", "model.discriminator.size=48"])
    with pytest.raises(ConfigError, match="must equal"):
        load_params(f, ["model.discriminator.size=128"])
    with pytest.raises(ConfigError, match="style_fusion"):
        load_params(f, ["model.generator.style_fusion=sum"])
    with pytest.raises(ConfigError, match="not of the form"):
        load_params(f, ["model.generator.size"])


def test_anchored_makes_relative_paths_absolute(tmp_path):
    from stylesync.config import Params, anchored

    p = Params()
    p.paths.vgg19_weights = "weights/vgg.pth"
    p.manifest.sources[0].root = "s3://bucket/vox"
    a = anchored(p, tmp_path)
    assert a.paths.models == str(tmp_path / "models") and a.paths.vgg19_weights == str(tmp_path / "weights/vgg.pth")
    assert a.paths.gpen_weights is None and a.manifest.sources[0].root == "s3://bucket/vox"
    assert a.synth.out == str(tmp_path / "data/raw/synthetic")
    assert a.tracking.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert p.paths.models == "models"  # the original is untouched
    assert anchored(a, "/elsewhere").paths.models == a.paths.models
