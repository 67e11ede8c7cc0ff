"""The dependency order of the package (pyproject.toml [tool.importlinter], docs/ARCHITECTURE.md):
import-linter's contracts hold on the tree, and they do catch an import that runs backwards."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([*LINT, "--config", str(tree / "pyproject.toml"), "--no-cache"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)


def test_contracts_hold():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "3 kept, 0 broken" in r.stdout


def test_contracts_catch_a_backward_import(tmp_path):
    shutil.copytree(ROOT / "stylesync", tmp_path / "stylesync", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    bad = tmp_path / "stylesync" / "eval" / "metrics.py"  # eval must not import train, nor tracking
    bad.write_text(bad.read_text() + "\nfrom ..train import step  # noqa\nfrom ..runtime import tracking  # noqa\n")
    r = _lint(tmp_path)
    assert r.returncode != 0
    assert "1 kept, 2 broken" in r.stdout, r.stdout[-3000:]
    assert "stylesync.eval.metrics -> stylesync.train.step" in r.stdout
