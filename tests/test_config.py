"""params.yaml loading: types, choices, unknown keys, overrides, field metadata."""
import json
import pickle

import pytest
import yaml

from stylesync.config import (
    Choice, ConfigError, Params, PersonalizeConfig, SyncNetTrainConfig, TrainConfig, config_hash, from_dict,
    learned_settings, load_params, schedule_only, tagged_fields, to_dict,
)


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
    with pytest.raises(ConfigError, match="first_pass_steps must be >= 0 and 0 with sync_filter"):
        load_params(f, ["syncnet_train.first_pass_steps=100", "syncnet_train.sync_filter=true"])


@pytest.mark.parametrize("key", [
    "syncnet_train.keep", "train.amp", "train.channels_last", "train.nan_policy", "train.loader.reference",
    "syncnet_train.loader.reference", "personalize.loader.reference", "infer.reference", "infer.paste",
    "preprocess.frame_codec", "preprocess.landmarks.backend", "preprocess.gpen.model", "evaluate.split",
    "personalize.delta_dtype", "model.generator.style_fusion", "model.generator.fusion_activation",
    "model.generator.eq1_reading", "model.generator.delta_p_scope", "model.generator.output_activation",
])
def test_a_bad_choice_fails_at_load_with_its_path(key):
    with pytest.raises(ConfigError, match=rf"^{key} must be '.*, got 'bogus'$"):
        load_params("params.yaml", [f"{key}=bogus"])


@pytest.mark.parametrize("override, path", [
    ("manifest.sources=[{dataset: vox, root: x}]", "manifest.sources[0].dataset must be"),
    ("manifest.sources.0.dataset=vox", "manifest.sources[0].dataset must be"),
    ("manifest.sources=[{dataset: lrw, rooot: x}]", "unknown key manifest.sources[0].rooot"),
    ("preprocess.gpen.splits=[test, dev]", "preprocess.gpen.splits[1] must be"),
    ("train.loss.vgg_layers=[relu1_1, relu9_9]", "train.loss.vgg_layers[1] must be"),
    ("model.generator=5", "model.generator: expected a mapping"),
    ("model.generator.blur_kernel={a: 1}", "model.generator.blur_kernel: expected a list"),
    ("train.amp=off", "train.amp must be 'auto', 'bf16' or 'off', got False (YAML reads unquoted on/off"),
])
def test_errors_inside_lists_and_sections_name_the_path(override, path):
    with pytest.raises(ConfigError) as e:
        load_params("params.yaml", [override])
    assert str(e.value).startswith(path), e.value


def test_choices_are_plain_strings_downstream():
    p = load_params("params.yaml", ["train.amp='off'", "infer.paste=crop"])
    assert p.train.amp == "off" and p.infer.paste == "crop" and f"{p.infer.paste}" == "crop"
    assert isinstance(p.train.amp, Choice) and repr(p.train.amp) == "'off'"
    tree = to_dict(p)
    assert type(tree["train"]["amp"]) is str and type(tree["train"]["loss"]["vgg_layers"][0]) is str
    assert yaml.safe_load(yaml.safe_dump(tree)) == tree == json.loads(json.dumps(tree))
    assert json.dumps(p.train.amp) == '"off"'
    assert from_dict(Params, tree) == p and pickle.loads(pickle.dumps(p)) == p  # Ray ships both


def test_loading_does_not_change_fingerprints():
    """Run names and model fingerprints hash dataclass reprs and to_dict(): the same loaded or built."""
    loaded, built = load_params(None), Params()
    assert repr(loaded) == repr(built) and config_hash(loaded) == config_hash(built)
    assert config_hash({"model": loaded.model}) == config_hash({"model": built.model})


def test_face_template_takes_ints():  # OmegaConf's merge alone rejects ints in list[list[float]]
    assert load_params(None, ["face.template=[[17, 20], [58, 20], [37.5, 40]]"]).face.template[0] == [17.0, 20.0]


def test_schedule_only_metadata_matches_the_hand_lists():
    assert schedule_only(TrainConfig) == {"steps", "checkpoint_every", "keep_checkpoints", "max_failures", "log_every",
                                          "image_every", "val_clips", "demo_check_at_checkpoints", "cpus_per_worker",
                                          "nan_policy"}
    assert schedule_only(SyncNetTrainConfig) == {"steps", "eval_every", "eval_batches", "checkpoint_every", "keep",
                                                 "clear_diff", "report_batches"}
    assert schedule_only(PersonalizeConfig) == {"catalog", "identities", "allow_partial", "num_cpus", "num_gpus", "max_retries",
                                                "time_limit_s", "log_every"}
    learned = learned_settings(load_params(None, ["train.steps=5"]).train)
    assert "steps" not in learned and learned["amp"] == "auto" and learned == learned_settings(Params().train)


def test_path_metadata_matches_the_hand_list():
    assert [p for p, _, _ in tagged_fields(Params(), "path")] == [
        "paths.data", "paths.raw", "paths.manifest", "paths.shards", "paths.models", "paths.metrics", "paths.plots",
        "paths.reports", "paths.runs", "paths.vgg19_weights", "paths.discriminator_init",
        "paths.syncnet_official_weights", "paths.arcface_onnx", "synth.out", "manifest.sources[0].root",
        "preprocess.landmarks.weights_dir", "preprocess.landmarks.dlib_predictor", "preprocess.gpen.weights",
        "personalize.catalog"]


def test_choices_match_the_code_that_reads_them():
    from stylesync.config import Eq1Reading, FrameCodec, GPENModel, NanPolicy, SourceDataset, VGGLayer
    from stylesync.data.manifest import READERS
    from stylesync.data.sample import FRAME_FIELDS
    from stylesync.models.generator import EQ1_READINGS
    from stylesync.models.gpen import GPEN_CONFIGS
    from stylesync.models.vgg19 import VGG19_LAYERS
    from stylesync.train.step import NAN_POLICIES

    for choice, code in [(SourceDataset, READERS), (FrameCodec, FRAME_FIELDS), (Eq1Reading, EQ1_READINGS),
                         (GPENModel, GPEN_CONFIGS), (VGGLayer, VGG19_LAYERS), (NanPolicy, NAN_POLICIES)]:
        assert set(choice) == set(code), choice


def test_anchored_makes_relative_paths_absolute(tmp_path):
    from stylesync.config import Params, anchored

    p = Params()
    p.paths.vgg19_weights = "weights/vgg.pth"
    p.manifest.sources[0].root = "s3://bucket/vox"
    a = anchored(p, tmp_path)
    assert a.paths.models == str(tmp_path / "models") and a.paths.vgg19_weights == str(tmp_path / "weights/vgg.pth")
    assert a.paths.arcface_onnx is None and a.manifest.sources[0].root == "s3://bucket/vox"
    assert a.synth.out == str(tmp_path / "data/raw/synthetic")
    assert a.tracking.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert p.paths.models == "models"  # the original is untouched
    assert anchored(a, "/elsewhere").paths.models == a.paths.models
