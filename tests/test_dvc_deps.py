"""dvc.yaml follows the code: every module a stage imports (transitively, function-level imports
included, from pipelines/<stage>.py) is one of its dependencies (the file or a folder holding it),
and every params section its code reads is one of its params. A change to any of them re-runs the
stage instead of leaving its old outputs cached."""
from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import yaml

from stylesync.config import Params

REPO = Path(__file__).resolve().parents[1]
SECTIONS = {f.name for f in dataclasses.fields(Params)}


def _module_file(name: str) -> Path | None:
    base = REPO / Path(*name.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.exists():
            return p
    return None


def _imports(path: Path) -> set[Path]:
    """The stylesync modules a file imports anywhere in it (and their packages' __init__)."""
    pkg = ".".join(path.relative_to(REPO).with_suffix("").parts)
    if path.name == "__init__.py":
        pkg += ".__init__"
    out: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = pkg.split(".")[: -node.level]
                base = ".".join(parent + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for n in names:
            if n.split(".")[0] != "stylesync":
                continue
            parts = n.split(".")
            for i in range(1, len(parts) + 1):  # the packages on the way import their __init__
                f = _module_file(".".join(parts[:i]))
                if f is not None:
                    out.add(f)
    return out


def entry_files(stage: dict) -> list[Path]:
    """A stage's pipelines/<stage>.py and the stage module its `stylesync.cli` command dispatches to
    (by name, which no import statement shows)."""
    from stylesync.cli import COMMANDS

    pipeline = REPO / stage["cmd"].split()[-1]
    command = re.search(r'main\(\["([\w-]+)"', pipeline.read_text()).group(1)
    return [pipeline, _module_file(COMMANDS[command].target.split(":")[0])]


def closure(*entries: Path) -> set[Path]:
    seen, todo = set(), list(entries)
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo += _imports(f) - seen
    return seen


def sections_read(files: set[Path]) -> set[str]:
    """Top-level params sections a stage's own code reads (`params.<section>`, `p.<section>`)."""
    found = set()
    for f in files:
        found |= set(re.findall(r"\b(?:params|p)\.(\w+)", f.read_text())) & SECTIONS
    return found


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def test_every_imported_module_is_a_dependency_of_its_stage():
    missing = {}
    for name, stage in stages().items():
        deps = [str(d) for d in stage.get("deps", [])]
        files = {str(f.relative_to(REPO)) for f in closure(*entry_files(stage))}
        lacking = sorted(f for f in files if not _covered(f, deps))
        if lacking:
            missing[name] = lacking
    assert not missing, f"dvc.yaml deps miss modules their stage imports: {missing}"


def test_every_params_section_a_stage_reads_is_one_of_its_params():
    missing = {}
    for name, stage in stages().items():
        own = {f for f in closure(*entry_files(stage)) if "stages" in f.parts or "pipelines" in f.parts}
        listed = {str(p).split(".")[0] for p in stage.get("params", [])}
        lacking = sorted(sections_read(own) - listed - {"paths", "tracking", "ray"})
        if lacking:
            missing[name] = lacking
    assert not missing, f"dvc.yaml params miss sections their stage reads: {missing}"


def test_the_closure_sees_function_level_imports(tmp_path):
    closed = {str(f.relative_to(REPO)) for f in closure(*entry_files(stages()["personalize"]))}
    assert "stylesync/train/losses.py" in closed and "stylesync/config.py" in closed
