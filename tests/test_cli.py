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


def test_module_entry_point_help():
    r = subprocess.run([sys.executable, "-m", "stylesync", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "model-card" in r.stdout
