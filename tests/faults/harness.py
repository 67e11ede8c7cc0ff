"""Fault-injection suite (slow): shared corpus, tiny params, and a driver harness (imported by the
test modules; not a conftest.py, whose module name would shadow tests/conftest.py).

Every stage runs as `python -m stylesync <command> --params <tmp params.yaml>` in a subprocess of
its own **session** (`start_new_session=True`) with a private `RAY_TMPDIR`/`TMPDIR`. Killing the
driver with SIGKILL leaves part of the local Ray cluster it started (measured with Ray 2.60: the
dashboard agent and the runtime-env agent outlive the driver, reparented to init, indefinitely).
Every Ray process started for that driver stays in its session, so `Driver.cleanup` finds them by
session id in /proc and SIGKILLs them one by one (never by name: other Ray clusters may run on the
machine), then removes the private temp dir. The number found is recorded per run.

Results (case, runs, outcome, wall time) are appended as JSON lines to $STYLESYNC_FAULT_RESULTS
when it is set (docs/RELIABILITY.md is written from them).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
SEED = 20261201  # the RNG of the kill points
RUNS = int(os.environ.get("STYLESYNC_FAULT_RUNS", "10"))

# every test module of the suite: `pytestmark = SUITE`
SUITE = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the harness reads /proc")]


# ------------------------------------------------------------------------------ processes
def session_processes(sid: int) -> list[tuple[int, str]]:
    """(pid, name) of the live (non-zombie) processes of session `sid`."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        state, session = fields[0], int(fields[3])
        if session == sid and state not in ("Z", "X"):
            out.append((int(d.name), name))
    return out


@dataclass
class Driver:
    """One `python -m stylesync ...` run in its own session, with a private Ray temp dir."""

    workdir: Path
    argv: list[str]
    env: dict = field(default_factory=dict)
    name: str = "run"
    cmd: Optional[list[str]] = None  # a whole command line instead of `python -m stylesync <argv>`
    proc: Optional[subprocess.Popen] = None
    tmp: Optional[Path] = None
    t0: float = 0.0

    def start(self) -> "Driver":
        self.tmp = Path(tempfile.mkdtemp(prefix="sf-", dir="/tmp"))  # short: Ray's socket paths have a limit
        env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_TMPDIR": str(self.tmp), "TMPDIR": str(self.tmp),
               "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true",
               "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1", "PYTHONWARNINGS": "ignore", **self.env}
        env.pop("RAY_ADDRESS", None)
        self.log = self.workdir / f"{self.name}.log"
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.t0 = time.time()
            cmd = self.cmd or [sys.executable, "-m", "stylesync", *self.argv]
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            self.cleanup()
            raise AssertionError(f"{self.argv[0]} did not finish in {timeout} s; log: {self.tail()}")

    def run_measured(self, anchor: str, timeout: float) -> tuple[int, float, Optional[float]]:
        """Wait for the end; returns (exit code, wall s, s until `anchor` first appeared in the log)."""
        t_anchor = None
        while self.proc.poll() is None:
            if t_anchor is None and anchor in self.tail(1 << 20):
                t_anchor = time.time() - self.t0
            if time.time() - self.t0 > timeout:
                self.wait(0)
            time.sleep(0.1)
        if t_anchor is None and anchor in self.tail(1 << 20):
            t_anchor = time.time() - self.t0
        return self.proc.returncode, time.time() - self.t0, t_anchor

    def wait_for(self, anchor: str, timeout: float) -> bool:
        """Wait until `anchor` appears in the log. False if the process ended first."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if anchor in self.tail(1 << 20):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        raise AssertionError(f"{anchor!r} did not appear in {timeout} s; log: {self.tail()}")

    def kill_after(self, delay: float) -> bool:
        """SIGKILL the driver after `delay` s. False if it had finished by then (nothing to kill)."""
        try:
            self.proc.wait(timeout=delay)
            return False
        except subprocess.TimeoutExpired:
            self.kill9()
            return True

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def cleanup(self, grace: float = 3.0) -> list[str]:
        """Kill what is left of the driver's session after `grace` seconds (processes that are
        shutting down anyway are not counted); returns their names (the orphans)."""
        sid = self.proc.pid  # the session leader's pid is the session id
        deadline = time.time() + grace
        while session_processes(sid) and time.time() < deadline:
            time.sleep(0.2)
        left = session_processes(sid)
        for pid, _ in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.time() + 10
        while session_processes(sid) and time.time() < deadline:
            time.sleep(0.1)
        assert not session_processes(sid), f"processes of session {sid} survive SIGKILL: {session_processes(sid)}"
        shutil.rmtree(self.tmp, ignore_errors=True)
        return sorted(n for _, n in left)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def run_to_completion(workdir: Path, argv: list[str], timeout: float = 300, env: Optional[dict] = None,
                      name: str = "run", expect_rc: Optional[int] = 0) -> tuple[int, float, list[str]]:
    d = Driver(workdir, argv, env or {}, name).start()
    rc = d.wait(timeout)
    wall = time.time() - d.t0
    orphans = d.cleanup(grace=10.0)  # after a normal exit Ray's processes may take a moment to go
    if expect_rc is not None:
        assert rc == expect_rc, f"{argv[0]} exited {rc}; log: {d.tail()}"
    return rc, wall, orphans


# The driver logs this line once its local Ray is up (stylesync.runtime.ray_session): kill points are drawn
# after it, over the span of real work (a kill during imports and `ray.init` writes nothing).
RAY_UP = "stylesync.runtime.ray_session INFO ray: {"


def kill_fractions(n: int, salt: str) -> list[float]:
    """n seeded fractions in [0, 1): kill points as shares of the clean run's work span (the same
    fractions on every machine; the span is measured there)."""
    rng = random.Random(f"{SEED}-{salt}")
    return [round(rng.random(), 3) for _ in range(n)]


# ------------------------------------------------------------------------------ results
def record(case: str, runs: int, outcome: str, wall_s: float, **details) -> None:
    path = os.environ.get("STYLESYNC_FAULT_RESULTS")
    row = {"case": case, "runs": runs, "outcome": outcome, "wall_s": round(wall_s, 1), **details}
    print("FAULT-RESULT", json.dumps(row))
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


# ------------------------------------------------------------------------------ corpus and params
_CORPUS: dict[str, Path] = {}


@pytest.fixture(scope="session")
def fault_corpus(tmp_path_factory) -> Path:
    """4 training clips (2 identities) and 3 test identities with 2 clips each; manifest and clean
    reference shards (in-process, local executor). Built once per session (cached here, since each
    test module imports this fixture)."""
    if "corpus" in _CORPUS:
        return _CORPUS["corpus"]
    from helpers import make_personal_corpus

    tmp = make_personal_corpus(tmp_path_factory.mktemp("faults"))
    _CORPUS["corpus"] = tmp
    return tmp


def stage_params(corpus: Path, out: Path, tracking: bool = False):
    """Tiny params for a run whose outputs live under `out` (shards and manifest from the corpus)."""
    from helpers import tiny_params

    from stylesync.config import SourceConfig

    p = tiny_params(corpus, out)
    p.manifest.sources = [SourceConfig("synthetic", str(corpus / "raw"))]
    p.paths.data, p.paths.raw = str(corpus), str(corpus / "raw")
    p.tracking.enabled = tracking
    t = p.train
    t.steps, t.checkpoint_every, t.log_every, t.image_every, t.val_clips = 8, 2, 1, 0, 1
    t.keep_checkpoints, t.max_failures = 2, 1
    pc = p.personalize
    pc.epochs, pc.train_clips, pc.num_cpus, pc.eval_clips = 0.5, 1, 1.0, 1
    pc.loader.batch_size, pc.loader.shuffle_buffer = 2, 4
    return p


def write_params(p, path: Path) -> Path:
    from stylesync.config import to_dict

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(p), sort_keys=False))
    return path


def with_models(p, backbone: bool = False) -> None:
    """A (randomly initialised) expert SyncNet, and optionally backbone G and D, under paths.models."""
    from stylesync.models.discriminator import Discriminator
    from stylesync.models.generator import StyleSyncGenerator
    from stylesync.models.syncnet import ExpertSyncNet
    from stylesync.models.store import save_discriminator, save_generator, save_syncnet

    models = Path(p.paths.models)
    torch.manual_seed(0)
    save_syncnet(models / "syncnet", ExpertSyncNet(p.model.syncnet))
    if backbone:
        save_generator(models / "backbone" / "generator", StyleSyncGenerator(p.model.generator), p.face)
        save_discriminator(models / "backbone" / "discriminator", Discriminator(p.model.discriminator))


def shard_bytes(root: Path) -> dict[str, bytes]:
    return {str(q.relative_to(root)): q.read_bytes() for q in sorted(root.rglob("shard-*.tar"))}


def litter(root: Path) -> list[str]:
    """Leftovers of interrupted writes: temp files and dirs of atomic writes, staging files."""
    return sorted(str(q.relative_to(root)) for q in root.rglob("*")
                  if q.name.endswith(".tmp") or ".tmp-" in q.name or ".old-" in q.name
                  or (".staging" in q.parts and q.is_file()))


_TRAIN_REF: dict[str, tuple] = {}


@pytest.fixture(scope="session")
def train_reference(fault_corpus, tmp_path_factory) -> tuple[Path, tuple[float, float], dict]:
    """An uninterrupted `stylesync train` (subprocess) with the suite's params: (folder, (wall s,
    work span s from Ray up to the exit), {generator|discriminator: tensors}). Shared by the
    training cases (cached like the corpus)."""
    if "ref" in _TRAIN_REF:
        return _TRAIN_REF["ref"]
    d = tmp_path_factory.mktemp("train-reference")
    p = stage_params(fault_corpus, d)
    with_models(p)
    drv = Driver(d, ["train", "--params", str(write_params(p, d / "params.yaml"))]).start()
    rc, wall, t_up = drv.run_measured(RAY_UP, 600)
    orphans = drv.cleanup(grace=10.0)
    assert rc == 0 and t_up is not None and not orphans, (orphans, drv.tail())
    _TRAIN_REF["ref"] = (d, (wall, 0.9 * (wall - t_up)), backbone_weights(d))  # span as in _clean_run
    return _TRAIN_REF["ref"]


def same_weights(a: dict, b: dict) -> bool:
    """{part: {name: tensor}} equal bit for bit."""
    return a.keys() == b.keys() and all(
        a[k].keys() == b[k].keys() and all(torch.equal(a[k][n], b[k][n]) for n in a[k]) for k in a)


def backbone_weights(d: Path) -> dict:
    from safetensors.torch import load_file

    return {part: load_file(str(d / "models" / "backbone" / part / "model.safetensors"))
            for part in ("generator", "discriminator")}
