"""The command line: help, params errors, model card."""
import json
import os
import subprocess
import sys
from pathlib import Path

from stylesync.cli import main


def test_model_card_writes_metrics(tmp_path):
    from helpers import stage_runs

    out, uri = tmp_path / "model.json", f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["model-card", "-o", str(out), "-S", "model.generator.size=32", "-S", "model.discriminator.size=32",
                 "-S", f"tracking.tracking_uri={uri}"]) == 0
    card = json.loads(out.read_text())
    g = card["generator"]
    assert g["size"] == 32 and g["n_latent"] == 8 and g["params"] > 0 and g["flops_per_image"] > 0
    assert card["discriminator"]["params"] > 0 and card["syncnet"]["flops_per_window"] > 0
    (r,) = stage_runs(uri, "model_card")
    assert r.data.metrics["generator.params"] == g["params"] and r.data.params["model.generator.size"] == "32"
    assert r.artifacts == {"model.json"}


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
    assert "-S ++train.steps=300000" in out and out.rstrip().endswith("-S train.steps=7")  # the later -S wins in DVC
    assert main(["params", "--profile", "params/paper.yaml", "-S", "train.amp=fp16"]) == 2
    assert "train.amp must be" in capsys.readouterr().err


def test_module_entry_point_help():
    r = subprocess.run([sys.executable, "-m", "stylesync", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "model-card" in r.stdout


def test_dvc_pipeline_is_valid():
    """dvc.yaml parses for DVC, every stage's entry runs nothing on import, and its params are real
    keys (that its deps follow the code: tests/test_dvc_deps.py)."""
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
    for name, stage in stages.items():
        entry = root / stage["cmd"].split()[-1]
        runpy.run_path(str(entry), run_name="__mp_main__")  # a spawned worker re-imports it: must not run the stage
        for key in stage.get("params", []):
            node = resolved
            for part in key.split("."):
                assert part in node, f"{name}: params key {key} is not in params.yaml"
                node = node[part]


def test_the_readme_dvc_exp_run_recipe_works(tmp_path):
    """README: eval "dvc exp run $(stylesync params --profile params/paper.yaml --dvc-args)", as written
    (--dry), in a scratch DVC repo with this params.yaml and a stage that reads the sections."""
    import shutil

    root = Path(__file__).resolve().parents[1]
    shutil.copy(root / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "dvc.yaml").write_text("stages:\n  check:\n    cmd: 'true'\n    params: [model, train, manifest, paths]\n")
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"], git + ["commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True)
    recipe = f'eval "dvc exp run --dry $({sys.executable} -m stylesync --log-level WARNING params ' \
             f'--params {tmp_path / "params.yaml"} --profile {root / "params/paper.yaml"} --dvc-args)"'
    r = subprocess.run(["bash", "-c", recipe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "Running stage 'check'" in r.stdout, r.stdout + r.stderr


def test_piping_params_into_head_is_quiet():
    r = subprocess.run(f"{sys.executable} -m stylesync params | head -n 2", shell=True, capture_output=True, text=True)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2 and "Traceback" not in r.stderr, r.stderr


def test_stages_find_the_project_python_without_the_venv_on_path(tmp_path):
    """`.venv/bin/dvc repro` with a PATH that has no environment: every stage runs through
    pipelines/py, which falls back to the project's .venv; with no Python at all it says what to do."""
    import shutil

    import yaml

    root = Path(__file__).resolve().parents[1]
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    assert all(s["cmd"].startswith("sh pipelines/py pipelines/") for s in stages.values())
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no venv on PATH
    r = subprocess.run(["sh", "pipelines/py", "-c", "import stylesync, sys; print(sys.executable)"], cwd=root, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (tmp_path / "pipelines").mkdir()
    shutil.copy(root / "pipelines" / "py", tmp_path / "pipelines" / "py")
    r = subprocess.run(["/bin/sh", "pipelines/py", "pipelines/synth.py"], cwd=tmp_path, env={"PATH": "/nonexistent"},
                       capture_output=True, text=True)
    assert r.returncode == 1 and "make install" in r.stderr and len(r.stderr.strip().splitlines()) == 1
