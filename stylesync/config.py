"""Typed configuration: one dataclass per params.yaml section, loaded, validated and overridable.

`load_params("params.yaml", overrides=["train.steps=10"])` returns a `Params`. Unknown keys and
wrongly typed values fail with the dotted path of the offending key.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml


class ConfigError(ValueError):
    """A params file or override that does not fit the schema."""


# --------------------------------------------------------------------------- models
@dataclass
class GeneratorConfig:
    """StyleSync generator (paper Sec. 3.1; STYLESYNC.md section 1)."""

    size: int = 256  # output resolution, a power of two in [32, 1024]
    style_dim: int = 512
    n_mlp: int = 8  # mapping MLP depth (authors' fusion only)
    channel_multiplier: int = 2
    narrow: float = 1.0
    lr_mlp: float = 0.01
    blur_kernel: list[int] = field(default_factory=lambda: [1, 3, 3, 1])
    # "authors": concat(f_a, f_f) -> EqualLinear(2*d -> d) -> mapping MLP (authors' code);
    # "concat": w = concat(f_a, f_f) as in the paper's text (style width = audio_dim + face_dim).
    style_fusion: str = "authors"
    # activation of the authors' fusion EqualLinear(2d -> d): "fused_lrelu" (authors' code) or null (none)
    fusion_activation: Optional[str] = "fused_lrelu"
    # Which encoder maps Eq. 1 masks (docs/MODELS.md has the table at 64/128/256):
    # "relative": the maps fed to styled convs l > floor(L/2) (the paper's text read at any size);
    # "absolute": the maps of 64 px and above (what that rule gives at the paper's 256: F_64..F_256).
    # The two agree at 256. mask_n_noise = k overrides both: mask the k highest-resolution maps
    # (the authors' Paddle port uses 4 at 256).
    eq1_reading: str = "relative"
    mask_n_noise: Optional[int] = None
    audio_dim: int = 512
    audio_channels: int = 32  # base width of E_a's Wav2Lip tower (32 = the authors'; 16 * this at the top)
    face_dim: int = 512
    in_channels: int = 6  # [masked target, reference]
    dw_hidden_layers: int = 1  # hidden layers of MLP_dw (Delta W = MLP_dw(f_f))
    # which generator parts Delta P shifts: "synthesis" (StyleGAN layers) or "synthesis+mapping"
    delta_p_scope: str = "synthesis"
    output_activation: str = "sigmoid"
    # ModulatedConv2d form: true = per-sample weights in one grouped conv (StyleGAN2 reference);
    # false = scale activations, shared-weight conv, scale outputs (same result; faster on CPU here
    # with channels_last, and the form NVlabs trains with). See BENCHMARKS.md.
    fused_modconv: bool = False


@dataclass
class DiscriminatorConfig:
    size: int = 256
    channel_multiplier: int = 2
    narrow: float = 1.0
    blur_kernel: list[int] = field(default_factory=lambda: [1, 3, 3, 1])
    stddev_group: int = 4
    stddev_feat: int = 1


@dataclass
class SyncNetConfig:
    """Expert SyncNet (Wav2Lip color SyncNet; STYLESYNC.md section 3)."""

    size: int = 96  # the aligned face is resized to size x size; the lower half is used
    n_frames: int = 5
    embed_dim: int = 512
    base_channels: int = 32


@dataclass
class ModelConfig:
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    syncnet: SyncNetConfig = field(default_factory=SyncNetConfig)


# --------------------------------------------------------------------------- face geometry
@dataclass
class MaskConfig:
    """Lower-face U mask, in template units (the 75 x 100 unit aligned crop; STYLESYNC.md s. 5)."""

    top: float = 37.0  # cheek line: the mask starts here (LatentSync's starts at row 95/256)
    jaw_margin: float = 6.0  # jaw line pushed outward, room for an opening mouth
    nose_margin: float = 2.5  # notch around the nose that is kept
    feather: float = 3.0  # edge blur sigma in pixels at 256 (scaled with the crop size)


@dataclass
class FaceConfig:
    # eyebrow centres and nose centre in template units (authors' [[17,20],[58,20],[37.5,40]])
    template: list[list[float]] = field(default_factory=lambda: [[17.0, 20.0], [58.0, 20.0], [37.5, 40.0]])
    crop_size: int = 256  # aligned crop side (the authors' 210x280 warp resized to a square)
    smooth_sigma: float = 1.0  # per-point temporal Gaussian smoothing of landmarks (frames)
    mask: MaskConfig = field(default_factory=MaskConfig)


# --------------------------------------------------------------------------- data
@dataclass
class SynthConfig:
    """The embedded synthetic talking-face corpus (DESIGN.md section 4), in the VoxCeleb2 layout."""

    out: str = "data/raw/synthetic"
    seed: int = 0
    identities_dev: int = 8
    identities_test: int = 4
    videos_per_identity: int = 2
    clips_per_video: int = 2
    seconds: float = 4.0
    resolution: int = 224
    fps: float = 25.0
    sample_rate: int = 16000
    yaw: float = 0.12  # amplitude (radians) of the slow head turn that 2-D alignment cannot remove
    exposure: float = 0.07  # amplitude of the camera gain drift (relative)
    workers: int = 2  # processes


@dataclass
class SourceConfig:
    """One dataset root to scan into the manifest."""

    dataset: str = "synthetic"  # voxceleb2 | lrw | synthetic
    root: str = "data/raw/synthetic"  # local path or fsspec URI
    splits: list[str] = field(default_factory=list)  # dataset split names; empty = all
    fraction: float = 1.0  # deterministic subset of videos (the paper: ~0.2 of VoxCeleb2)


@dataclass
class ManifestConfig:
    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig()])
    identities: list[str] = field(default_factory=list)  # keep only these identities (empty = all)
    workers: int = 8  # probing threads


@dataclass
class LandmarksConfig:
    backend: str = "precomputed"  # precomputed (sidecar files) | face_alignment
    detect_every: int = 5  # face_alignment: run S3FD on every N-th frame, interpolate boxes between
    batch_size: int = 32  # frames per detector / FAN batch
    filter_threshold: float = 0.5  # S3FD score threshold
    weights_dir: Optional[str] = None  # a TORCH_HOME holding hub/checkpoints/{2DFAN4..., s3fd...}
    allow_download: bool = False  # let face-alignment download missing weights (network!)
    actors: int = 1  # actor pool size for the landmark stage (face_alignment backend)
    gpus_per_actor: float = 0.0  # fractional GPUs per landmark actor when GPUs are present


@dataclass
class GateConfig:
    """Quality gates: a clip failing one is recorded in failures.parquet with the reason."""

    min_frames: int = 25  # too_short: fewer frames (at 25 fps) than this
    max_missing_face: float = 0.2  # no_face: more frames than this fraction without a face
    several_faces_ratio: float = 0.6  # several_faces: a second face at least this large (relative size)...
    several_faces_fraction: float = 0.3  # ...on at least this fraction of the frames checked
    min_face_px: float = 48.0  # face_too_small: median landmark box diagonal below this (pixels)
    max_landmark_jump: float = 0.2  # landmark_jumps: a frame-to-frame mean motion above this x face size
    min_audio_db: float = -50.0  # silent_audio: RMS level (dBFS) below this
    min_audio_coverage: float = 0.5  # audio shorter than this fraction of the video: rejected


@dataclass
class GPENConfig:
    enabled: bool = False
    weights: Optional[str] = None  # GPEN-BFR-256.pth / GPEN-BFR-512.pth
    model: str = "GPEN-BFR-256"
    splits: list[str] = field(default_factory=lambda: ["test"])  # the paper cleans the VoxCeleb2 test set
    alpha: float = 1.0  # blend: alpha * restored + (1 - alpha) * input
    batch_size: int = 8
    actors: int = 1
    gpus_per_actor: float = 0.0


@dataclass
class PreprocessConfig:
    shard_size: int = 8  # clips per shard
    frame_codec: str = "jpeg"  # how aligned frames are stored (see BENCHMARKS.md for the choice)
    jpeg_quality: int = 95
    fps: float = 25.0
    sample_rate: int = 16000
    landmarks: LandmarksConfig = field(default_factory=LandmarksConfig)
    gates: GateConfig = field(default_factory=GateConfig)
    gpen: GPENConfig = field(default_factory=GPENConfig)


@dataclass
class LoaderConfig:
    """Shards -> training batches (stylesync/data/loader.py)."""

    batch_size: int = 8  # windows per batch (per worker process of DDP)
    window: int = 5  # consecutive target frames per example (the sync loss sees 5)
    windows_per_clip: int = 4  # examples cut from one decoded clip
    reference: str = "window"  # "window": 5 consecutive reference frames from another time; "frame": one
    min_reference_gap: int = 5  # reference start at least this many frames from the target start
    shuffle_buffer: int = 128  # examples
    workers: int = 2  # DataLoader worker processes (0 = in the main process)


@dataclass
class LossConfig:
    """L_g = lambda_adv L_adv + lambda_rec (L1 + lambda_vgg VGG) + lambda_sync L_sync (Eq. 5; the paper:
    lambda_rec = 10, all others 1). `sync: false` is the "w/o sync" ablation; "w/o mask" is
    model.generator.mask_n_noise = 0."""

    lambda_adv: float = 1.0
    lambda_rec: float = 10.0
    lambda_vgg: float = 1.0  # the perceptual term runs only with paths.vgg19_weights
    lambda_sync: float = 1.0
    sync: bool = True
    vgg_layers: list[str] = field(default_factory=lambda: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"])
    vgg_layer_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0, 1.0])
    r1: float = 10.0  # lazy R1 weight (StyleGAN2)
    d_reg_every: int = 16  # R1 every N steps (0 = never)


@dataclass
class OptimConfig:
    lr_g: float = 0.002
    lr_d: float = 0.002
    betas: list[float] = field(default_factory=lambda: [0.0, 0.99])
    # Adam lr of E_a, the audio tower (backbone only). Its convs are plain (Wav2Lip's, not equalized-lr),
    # so the StyleGAN lr (0.002) moves each weight by ~10% of its scale per step and collapses f_a to a
    # constant within ~5 steps (measured; BENCHMARKS.md); 1e-4 is Wav2Lip's lr. None = lr_g.
    lr_audio: Optional[float] = 1e-4
    grad_clip: Optional[float] = None  # max grad norm (None = off)
    ema_decay: float = 0.999  # EMA of G (0 = no EMA)
    ema_rampup: Optional[float] = None  # EMA half-life <= this x the steps so far (StyleGAN2-ADA: 0.05); None = off


@dataclass
class TrainConfig:
    """The generalized backbone on Ray Train (stylesync/train/backbone.py)."""

    steps: int = 300000
    num_workers: int = 1  # Ray Train workers (DDP); gloo on CPU, NCCL on GPU
    use_gpu: bool = False
    amp: str = "auto"  # auto = bf16 autocast on CUDA, off on CPU; "bf16"; "off"
    channels_last: str = "auto"  # auto = on CUDA
    compile: bool = False  # torch.compile the generator and discriminator
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    max_failures: int = 1  # FailureConfig: restarts from the last checkpoint
    # a NaN/inf loss term: "stop" = fail with the step and the term named; "skip" = drop that update
    # (no optimizer step; counted as `nonfinite_skipped` in the logs). Also used by personalization.
    nan_policy: str = "stop"
    cpus_per_worker: Optional[int] = None  # Ray resources (= torch threads) per worker; None: all CPUs / workers
    log_every: int = 10
    image_every: int = 500  # sample grids to MLflow
    val_clips: int = 4  # held-out clips for the demo check and the validation video
    demo_check_at_checkpoints: bool = True  # the demo check at every checkpoint (plots/demo_check.csv, MLflow)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class SyncNetTrainConfig:
    """The expert SyncNet (Wav2Lip's color_syncnet_train: BCE on cosine, Adam)."""

    steps: int = 2000
    lr: float = 1e-4
    eval_every: int = 200
    eval_batches: int = 8
    checkpoint_every: int = 500
    keep: str = "best"  # the exported weights: "best" (lowest validation loss, Wav2Lip's choice) or "last"
    augment: bool = True  # appearance jitter (colour-channel order, brightness, contrast) per window
    loader: LoaderConfig = field(default_factory=lambda: LoaderConfig(batch_size=32))


@dataclass
class PersonalizeConfig:
    """Personalized optimization (paper Sec. 3.3) fanned out over a speaker catalog."""

    catalog: Optional[str] = None  # parquet/csv with `identity` [, `clips` (list), `seconds`]; None: the test identities
    identities: list[str] = field(default_factory=list)  # restrict the catalog to these (empty = all)
    train_clips: int = 2  # default catalog: the first N clips (by clip id) of an identity are its data, the rest held out
    seconds: Optional[float] = None  # time budget: use only the first N seconds of the person's clips
    epochs: float = 5.0  # passes over the person's frames (paper: 5)
    personal_fraction: float = 0.5  # share of each batch from the person (paper: 1:1 with general data)
    lambda_p: float = 1.0  # weight of ||Delta W||^2 + ||Delta P||^2 (Eq. 6; the paper: all lambdas but lambda_r are 1)
    use_delta_w: bool = True  # false: the paper's "P w/o Delta W" ablation
    delta_dtype: str = "float16"  # storage of Delta P: float32 | float16
    delta_rank: Optional[int] = None  # low-rank (SVD) storage of matrix-shaped Delta P; None = full
    num_cpus: float = 2.0  # Ray resources per identity task
    num_gpus: float = 0.25  # per identity task when GPUs are present (fractional: several identities per GPU)
    max_retries: int = 1  # Ray retries of a task whose worker died (system failures)
    time_limit_s: float = 1800.0  # per identity; an identity over it is cancelled and recorded as failed
    eval_clips: int = 2  # held-out clips per identity for the G-vs-P comparison
    loader: LoaderConfig = field(default_factory=lambda: LoaderConfig(batch_size=4, workers=0))
    loss: LossConfig = field(default_factory=LossConfig)
    # its own optimizers (train.step.make_optimizers: D gets the lazy-R1 lr/beta scaling); G: Adam on
    # MLP_dw and Delta P at PTI's generator-tuning rate; the EMA of G is not used here
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr_g=0.0003, lr_d=0.0002, ema_decay=0.0))


@dataclass
class EvaluateConfig:
    """The paper's self-reconstruction protocol (Sec. 4.1) on the test split."""

    split: str = "test"
    max_clips: Optional[int] = None  # None = every clip of the split
    ablations: dict[str, str] = field(default_factory=dict)  # name -> generator dir (e.g. a "w/o mask" run)
    personal: bool = True  # Ours-P on the held-out clips of the personalized identities
    vshift: int = 15  # official SyncNet offsets searched (syncnet_python's LSE scripts use 15)
    batch_size: int = 16


@dataclass
class InferConfig:
    """`stylesync sync`: lip-sync a video to an audio track."""

    batch_size: int = 16
    reference: str = "same"  # "same": each frame is its own reference (the authors' inference); "first"
    audio_ema: float = 0.3  # f_a <- ema * previous + (1 - ema) * current (authors: 0.3); 0 = off
    audio_gain: float = 1.25  # f_a multiplied after smoothing (authors' a_alpha: 1.25); 1 = off
    paste: str = "lower_face"  # blend region: "lower_face" (the generated region) or "crop" (the whole crop)
    crf: int = 18  # H.264 quality of the output
    max_frames_in_memory: int = 20000  # refuse longer inputs (use --start/--end)


@dataclass
class RenderConfig:
    """The `render` stage: demo videos lip-synced to another identity's audio."""

    videos: int = 4  # test clips to re-voice
    out: str = "renders"


@dataclass
class RayConfig:
    address: Optional[str] = None  # None: start a local Ray; "auto" or ray://host:port: join a cluster
    num_cpus: Optional[int] = None  # local Ray only
    include_dashboard: bool = False


# --------------------------------------------------------------------------- top level
@dataclass
class PathsConfig:
    """Where stages read and write. `manifest`, `shards`, `models` and `runs` (and the manifest's
    source roots, `manifest.sources[].root`) accept fsspec URIs (s3://bucket/prefix, gs://...,
    memory:// in tests) as well as local paths; s3:// needs `s3fs` (pip install 'stylesync[s3]'),
    gs:// `gcsfs`; credentials and endpoints come from the filesystem's usual environment (AWS_*
    variables, ~/.aws, ...). `metrics`, `plots`, `reports` and `renders` are DVC outputs of this
    checkout and stay local; so do the optional user-supplied weight files below and the synthetic
    corpus (`synth.out`; upload it to read it from a bucket). See docs/ARCHITECTURE.md, "Storage on
    object stores"."""

    data: str = "data"
    raw: str = "data/raw"
    manifest: str = "data/manifest.parquet"
    shards: str = "data/shards"
    models: str = "models"
    metrics: str = "metrics"
    plots: str = "plots"
    reports: str = "reports"
    renders: str = "renders"
    runs: str = "runs"  # training state for resuming (Ray Train storage, checkpoints); not a DVC output
    # optional weights supplied by the user (never downloaded at run time)
    vgg19_weights: Optional[str] = None
    discriminator_init: Optional[str] = None
    gpen_weights: Optional[str] = None
    syncnet_official_weights: Optional[str] = None
    arcface_onnx: Optional[str] = None


@dataclass
class TrackingConfig:
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment_prefix: str = "stylesync"
    enabled: bool = True


@dataclass
class Params:
    seed: int = 0
    device: str = "auto"  # "auto" (cuda when present), "cpu", "cuda", "cuda:1", ...
    paths: PathsConfig = field(default_factory=PathsConfig)
    face: FaceConfig = field(default_factory=FaceConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    manifest: ManifestConfig = field(default_factory=ManifestConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    syncnet_train: SyncNetTrainConfig = field(default_factory=SyncNetTrainConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    personalize: PersonalizeConfig = field(default_factory=PersonalizeConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


# --------------------------------------------------------------------------- loading
def _is_optional(tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _convert(tp: Any, value: Any, where: str) -> Any:
    optional, inner = _is_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: null is not allowed here")
    tp = inner
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        return [_convert(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        _, val_tp = typing.get_args(tp) or (Any, Any)
        return {str(k): _convert(val_tp, v, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")


def from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys (with their dotted path)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(f'{where}.{k}'.lstrip('.') for k in unknown)}; "
            f"allowed: {', '.join(sorted(names))}"
        )
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}".lstrip(".")) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {k} is not a section")
    node[keys[-1]] = value


def apply_overrides(tree: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` overrides (value parsed as YAML) to a raw params tree."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key.strip(), yaml.safe_load(raw))
    return tree


def load_params(path: str | Path | None = "params.yaml", overrides: list[str] | None = None) -> Params:
    """Read params.yaml (missing sections take their defaults), apply overrides, validate."""
    tree: dict = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"params file {p} does not exist")
        tree = yaml.safe_load(p.read_text()) or {}
        if not isinstance(tree, dict):
            raise ConfigError(f"{p}: the top level must be a mapping")
    apply_overrides(tree, overrides or [])
    params = from_dict(Params, tree)
    validate(params)
    return params


def validate(params: Params) -> None:
    g = params.model.generator
    if g.size < 32 or g.size > 1024 or g.size & (g.size - 1):
        raise ConfigError(f"model.generator.size must be a power of two in [32, 1024], got {g.size}")
    if g.style_fusion not in ("authors", "concat"):
        raise ConfigError(f"model.generator.style_fusion must be 'authors' or 'concat', got {g.style_fusion!r}")
    if g.delta_p_scope not in ("synthesis", "synthesis+mapping"):
        raise ConfigError(f"model.generator.delta_p_scope must be 'synthesis' or 'synthesis+mapping'")
    d = params.model.discriminator
    if d.size != g.size:
        raise ConfigError(f"model.discriminator.size ({d.size}) must equal model.generator.size ({g.size})")
    if params.train.nan_policy not in ("stop", "skip"):
        raise ConfigError(f"train.nan_policy must be 'stop' or 'skip', got {params.train.nan_policy!r}")


def anchored(params: Params, root: str | Path | None = None) -> Params:
    """A copy whose relative file paths are absolute (from `root`, default the working directory), for
    processes that run elsewhere (Ray Train workers run in their own directory)."""
    base = Path(root or Path.cwd()).resolve()

    def fix(v: Optional[str]) -> Optional[str]:
        return v if v is None or "://" in v or Path(v).is_absolute() else str(base / v)

    out = copy.deepcopy(params)
    for f in dataclasses.fields(out.paths):
        setattr(out.paths, f.name, fix(getattr(out.paths, f.name)))
    out.synth.out = fix(out.synth.out)
    for src in out.manifest.sources:
        src.root = fix(src.root)
    out.preprocess.landmarks.weights_dir = fix(out.preprocess.landmarks.weights_dir)
    out.preprocess.gpen.weights = fix(out.preprocess.gpen.weights)
    out.personalize.catalog = fix(out.personalize.catalog)
    uri = out.tracking.tracking_uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        out.tracking.tracking_uri = "sqlite:///" + str(base / uri[len("sqlite:///"):])
    return out


def config_hash(cfg: Any) -> str:
    """A short stable hash of a config (dataclass or plain data)."""
    data = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
