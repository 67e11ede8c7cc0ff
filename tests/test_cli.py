"""The command line: help, params errors, model card."""
import json
import subprocess
import sys

from stylesync.cli import main


def test_model_card_writes_metrics(tmp_path):
    out = tmp_path / "model.json"
    assert main(["model-card", "-o", str(out), "-S", "model.generator.size=32", "-S", "model.discriminator.size=32"]) == 0
    card = json.loads(out.read_text())
    g = card["generator"]
    assert g["size"] == 32 and g["n_latent"] == 8 and g["params"] > 0 and g["flops_per_image"] > 0
    assert card["discriminator"]["params"] > 0 and card["syncnet"]["flops_per_window"] > 0


def test_bad_override_is_a_clear_error(capsys):
    assert main(["model-card", "-S", "model.generator.nope=1"]) == 2
    assert "model.generator.nope" in capsys.readouterr().err


def test_params_profile_with_overrides(capsys):
    """`stylesync params --profile X -S k=v` applies both (the -S used to be dropped)."""
    import yaml

    assert main(["params", "--profile", "params/paper.yaml", "-S", "train.steps=7", "-S", "train.amp='off'"]) == 0
    merged = yaml.safe_load(capsys.readouterr().out)
    assert (merged["train"]["steps"], merged["train"]["amp"], merged["model"]["generator"]["size"]) == (7, "off", 256)
    assert main(["params", "--profile", "params/paper.yaml", "--dvc-args", "-S", "train.steps=7"]) == 0
    out = capsys.readouterr().out
    assert "-S train.steps=300000" in out and out.rstrip().endswith("-S train.steps=7")  # the later -S wins in DVC
    assert main(["params", "--profile", "params/paper.yaml", "-S", "train.amp=fp16"]) == 2
    assert "train.amp must be" in capsys.readouterr().err


def test_module_entry_point_help():
    r = subprocess.run([sys.executable, "-m", "stylesync", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "model-card" in r.stdout


def test_dvc_pipeline_is_valid():
    """dvc.yaml parses for DVC, every stage's entry and deps exist, and its params are real keys."""
    import runpy
    import shutil
    from pathlib import Path

    import yaml

    from stylesync.config import load_params

    root = Path(__file__).resolve().parents[1]
    dvc = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
    r = subprocess.run([dvc, "stage", "list"], cwd=root, capture_output=True, text=True)
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    assert r.returncode == 0, r.stderr
    assert all(name in r.stdout for name in stages)
    load_params(root / "params.yaml")  # valid
    resolved = yaml.safe_load((root / "params.yaml").read_text())  # DVC reads its params from the file itself
    made = {next(iter(o)) if isinstance(o, dict) else o for s in stages.values() for o in s.get("outs", [])}
    for name, stage in stages.items():
        entry = root / stage["cmd"].split()[1]
        runpy.run_path(str(entry), run_name="__mp_main__")  # a spawned worker re-imports it: must not run the stage
        for dep in stage["deps"]:
            assert (root / dep).exists() or dep in made, f"{name}: missing dep {dep}"
        for key in stage.get("params", []):
            node = resolved
            for part in key.split("."):
                assert part in node, f"{name}: params key {key} is not in params.yaml"
                node = node[part]
