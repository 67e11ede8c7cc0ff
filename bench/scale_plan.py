"""The paper-scale bill of docs/SCALE.md, computed from named inputs (each with its kind and source).

    python bench/scale_plan.py            # the markdown tables pasted into docs/SCALE.md
    python bench/scale_plan.py --count    # recount the FLOP inputs (torch FlopCounterMode, meta device)

Kinds of inputs: measured (timed or sized in this project), FLOP count (torch's FlopCounterMode on
this project's models), stated (the reference, params/paper.yaml, vendor peaks), assumed (MFU).
Every output is `measured` (a measured figure restated) or `projected` (anything scaled up or
resting on a stated peak or an assumed MFU). No GPU was measured in this project.
"""
from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BM = "BENCHMARKS.md"


@dataclass(frozen=True)
class Input:
    value: float
    unit: str
    kind: str  # measured | FLOP count | stated | assumed
    source: str


INPUTS: dict[str, Input] = {
    "vox_frames": Input(220e6, "frames", "stated", "reference docs/MODELS.md R8 (VoxCeleb2, ~2,442 h at 25 fps)"),
    "lrw_frames": Input(15.6e6, "frames", "stated", "reference docs/MODELS.md R8 (LRW, ~539k clips x 29 frames)"),
    "vox_fraction": Input(0.2, "", "stated", "paper (docs/MODELS.md R8); params/paper.yaml manifest.sources"),
    "preprocess_fps_core": Input(864, "frames/s/core", "measured", f"{BM} Data: preprocessing, precomputed landmarks"),
    "fa_cpu_s_frame": Input(0.868, "s/frame/core", "measured", f"{BM} Data: face-alignment backend, CPU"),
    "fan_gflop": Input(50.47, "GFLOP/crop", "FLOP count", "scale_plan.py --count: 2D-FAN (4 stacks) on a 256x256 crop"),
    "s3fd_gflop": Input(32.43, "GFLOP/frame", "FLOP count", "scale_plan.py --count: S3FD on a 224x224 frame"),
    "detect_every": Input(5, "frames", "stated", "params/paper.yaml preprocess.landmarks.detect_every"),
    "train_tflop_step": Input(6.86, "TFLOP/step", "FLOP count", f"{BM} Training step, paper row (5 images, no VGG19, R1 apart)"),
    "bench_images_step": Input(5, "images/step", "stated", f"{BM} Training step, paper row (1 window x 5 frames)"),
    "vgg_fwd_gflop": Input(47.34, "GFLOP/image", "FLOP count", "scale_plan.py --count: VGG19 to relu5_1 at 256"),
    "r1_gflop": Input(563.25, "GFLOP/image", "FLOP count", "scale_plan.py --count: R1 (D fwd + double backward) at 256"),
    "d_reg_every": Input(16, "steps", "stated", "params/paper.yaml train.loss.d_reg_every"),
    "steps": Input(300_000, "steps", "stated", "params/paper.yaml train.steps (ours: the paper gives none)"),
    "gpus": Input(8, "GPUs", "stated", "params/paper.yaml train.num_workers"),
    "windows_gpu": Input(8, "windows/GPU/step", "stated", "params/paper.yaml train.loader.batch_size"),
    "window": Input(5, "frames", "stated", "stylesync/config.py LoaderConfig.window"),
    "loader_core": Input(250, "samples/s/core", "measured", f"{BM} Data: loader, 256"),
    "syncnet_steps": Input(200_000, "steps", "stated", "params/paper.yaml syncnet_train.steps"),
    "syncnet_batch": Input(64, "windows", "stated", "params/paper.yaml syncnet_train.loader.batch_size"),
    "syncnet_train_gflop": Input(7.04, "GFLOP/window", "FLOP count", "scale_plan.py --count: expert SyncNet fwd+bwd"),
    "personal_s": Input(50, "s/speaker", "stated", "paper: < 10 s to ~50 s of video per person (docs/MODELS.md R2)"),
    "fps": Input(25, "frames/s", "stated", "reference docs/MODELS.md R8"),
    "epochs": Input(5, "", "stated", "paper; personalize.epochs"),
    "personal_fraction": Input(0.5, "", "stated", "paper 1:1 batches; personalize.personal_fraction"),
    "speakers": Input(10_000, "speakers", "stated", "the catalog to plan for"),
    "demo_identity_s": Input(44.0, "s/speaker", "measured", f"{BM} Personalization (42.6 and 45.4 s, demo size, CPU)"),
    "jpeg_bytes": Input(11_200, "B/frame", "measured", f"{BM} Data: shard frame codec JPEG q95 (synthetic faces)"),
    "delta_f16_mib": Input(116.6, "MiB/speaker", "measured", f"{BM} Personalization: stored delta at 256, float16"),
    "delta_r16_mib": Input(19.2, "MiB/speaker", "measured", f"{BM} Personalization: float16 rank 16"),
    "bf16_peak": Input(989.4, "TFLOP/s", "stated", "NVIDIA H100 SXM dense BF16 (H200: same compute)"),
    "tf32_peak": Input(494.7, "TFLOP/s", "stated", "NVIDIA H100 SXM dense TF32 (fp32 convs run on TF32 by default)"),
    "l40s_tf32_peak": Input(183.0, "TFLOP/s", "stated", "NVIDIA L40S dense TF32 (the head GPU of cluster/aws.yaml)"),
    "mfu_backbone": Input(0.25, "", "assumed", "bf16, channels_last, compiled, 8 windows per GPU"),
    "mfu_personalize": Input(0.15, "", "assumed", "4 windows per step, 4 identities sharing a GPU"),
    "mfu_fp32": Input(0.10, "", "assumed", "small fp32 conv nets with host-side work (FAN, S3FD, SyncNet)"),
    "node_gpus": Input(8, "GPUs", "stated", "p5.48xlarge, cluster/aws.yaml gpu_worker"),
    "node_vcpus": Input(192, "vCPUs", "stated", "p5.48xlarge, cluster/aws.yaml gpu_worker"),
    "gpen_gpus": Input(2, "GPUs", "stated", "params/paper.yaml preprocess.gpen: 4 actors x 0.5 GPU"),
    "gpu_nodes": Input(2, "nodes", "stated", "cluster/aws.yaml gpu_worker max_workers"),
}


def derive(v: dict[str, float]) -> list[tuple[str, str, float, str, str, str]]:
    """Rows (section, item, value, unit, basis, arithmetic); `v` maps input names to values."""
    rows = []

    def n(name: str) -> str:
        return fin(v[name])

    def row(section, item, value, unit, basis, how):
        rows.append((section, item, value, unit, basis, how))
        return value

    P = "Data"
    paper = row(P, "frames, LRW + 1/5 VoxCeleb2 (the paper's set)", v["lrw_frames"] + v["vox_fraction"] * v["vox_frames"],
                "frames", "projected", f"{n('lrw_frames')} + {n('vox_fraction')} x {n('vox_frames')}")
    full = row(P, "frames, all of LRW + VoxCeleb2", v["lrw_frames"] + v["vox_frames"], "frames", "projected",
               f"{n('lrw_frames')} + {n('vox_frames')}")

    P = "Preprocessing"
    cpu_h = {}
    for name, fr in (("paper set", paper), ("all", full)):
        cpu_h[name] = row(P, f"decode + align + crop + mel + JPEG, {name}", fr / v["preprocess_fps_core"] / 3600, "core-hours",
            "projected", f"{f(fr)} / {n('preprocess_fps_core')} / 3600")
    fa = row(P, "face-alignment FLOPs per frame", v["fan_gflop"] + v["s3fd_gflop"] / v["detect_every"], "GFLOP",
             "measured", f"{n('fan_gflop')} + {n('s3fd_gflop')} / {n('detect_every')}")
    for name, fr in (("paper set", paper), ("all", full)):
        row(P, f"face-alignment on CPU, {name}", fr * v["fa_cpu_s_frame"] / 3600, "core-hours", "projected",
            f"{f(fr)} x {n('fa_cpu_s_frame')} / 3600")
    fa_fps = row(P, "face-alignment on one H100", v["tf32_peak"] * 1e12 * v["mfu_fp32"] / (fa * 1e9), "frames/s",
                 "projected", f"{n('tf32_peak')}e12 x {n('mfu_fp32')} / {f(fa)}e9")
    fa_h = {}
    for name, fr in (("paper set", paper), ("all", full)):
        fa_h[name] = row(P, f"face-alignment on H100, {name}", fr / fa_fps / 3600, "GPU-hours", "projected",
                         f"{f(fr)} / {f(fa_fps)} / 3600")

    P = "SyncNet expert"
    sn_flop = v["syncnet_steps"] * 2 * v["syncnet_batch"] * v["syncnet_train_gflop"] * 1e9
    row(P, "training FLOPs (positive + negative window per sample)", sn_flop / 1e18, "EFLOP", "projected",
        f"{n('syncnet_steps')} x 2 x {n('syncnet_batch')} x {n('syncnet_train_gflop')}e9")
    sn_h = row(P, "on the head's L40S (fp32 on TF32)", sn_flop / (v["l40s_tf32_peak"] * 1e12 * v["mfu_fp32"]) / 3600,
               "GPU-hours", "projected", f"{f(sn_flop / 1e18)}e18 / ({n('l40s_tf32_peak')}e12 x {n('mfu_fp32')}) / 3600")

    P = "Backbone"
    ipstep = v["gpus"] * v["windows_gpu"] * v["window"]
    images = row(P, "images seen", v["steps"] * ipstep, "images", "projected",
                 f"{n('steps')} steps x {n('gpus')} x {n('windows_gpu')} x {n('window')}")
    base = row(P, "step FLOPs per image, without VGG19", v["train_tflop_step"] * 1e3 / v["bench_images_step"], "GFLOP",
               "measured", f"{n('train_tflop_step')}e3 / {n('bench_images_step')}")
    vgg = row(P, "VGG19 loss per image (fake fwd + input grad, real fwd)", 3 * v["vgg_fwd_gflop"], "GFLOP", "projected",
              f"3 x {n('vgg_fwd_gflop')}")
    r1 = row(P, "lazy R1 per image, amortised", v["r1_gflop"] / v["d_reg_every"], "GFLOP", "projected",
             f"{n('r1_gflop')} / {n('d_reg_every')}")
    per_img = row(P, "training FLOPs per image", base + vgg + r1, "GFLOP", "projected", f"{f(base)} + {f(vgg)} + {f(r1)}")
    total = row(P, "training FLOPs", images * per_img * 1e9 / 1e18, "EFLOP", "projected", f"{f(images)} x {f(per_img)}e9")
    eff = v["bf16_peak"] * v["mfu_backbone"]
    bb_h = row(P, "on H100/H200, bf16", total * 1e18 / (eff * 1e12) / 3600, "GPU-hours", "projected",
               f"{f(total)}e18 / ({n('bf16_peak')}e12 x {n('mfu_backbone')}) / 3600")
    for mfu in (0.10, 0.40):
        row(P, f"on H100/H200 if MFU were {mfu:.2f}", bb_h * v["mfu_backbone"] / mfu, "GPU-hours", "projected",
            f"{f(bb_h)} x {n('mfu_backbone')} / {mfu:.2f}")
    ips = eff * 1e3 / per_img
    row(P, "loader cores per GPU", ips / v["window"] / v["loader_core"], "cores", "projected",
        f"{f(eff)}e3 / {f(per_img)} / {n('window')} / {n('loader_core')}")

    P = "Personalization"
    imgs = row(P, "images per speaker", v["epochs"] * v["personal_s"] * v["fps"] / v["personal_fraction"], "images",
               "projected", f"{n('epochs')} x {n('personal_s')} s x {n('fps')} / {n('personal_fraction')}")
    spk_s = row(P, "per speaker on H100/H200 (backbone step as upper bound)",
                imgs * per_img * 1e9 / (v["bf16_peak"] * 1e12 * v["mfu_personalize"]), "GPU-seconds", "projected",
                f"{f(imgs)} x {f(per_img)}e9 / ({n('bf16_peak')}e12 x {n('mfu_personalize')})")
    ps_h = row(P, f"{n('speakers')} speakers at 256", v["speakers"] * spk_s / 3600, "GPU-hours", "projected",
               f"{n('speakers')} x {f(spk_s)} / 3600")
    row(P, f"{n('speakers')} speakers at the demo size, CPU", v["speakers"] * v["demo_identity_s"] / 3600,
        "CPU-hours", "projected", f"{n('speakers')} x {n('demo_identity_s')} / 3600")

    P = "Storage"
    arrays = 16000 / v["fps"] * 2 + 80 * 80 / v["fps"] * 2 + 68 * 2 * 4 + 2 * 3 * 4
    per_frame = row(P, "shard bytes per frame", v["jpeg_bytes"] + arrays, "B", "projected",
                    f"{n('jpeg_bytes')} JPEG + {f(arrays)} (int16 audio, float16 mel, float32 landmarks + affine)")
    shards = {}
    for name, fr in (("paper set", paper), ("all", full)):
        shards[name] = row(P, f"shards, {name}", fr * per_frame / 1e9, "GB", "projected", f"{f(fr)} x {f(per_frame)} / 1e9")
    d16 = row(P, f"deltas, {n('speakers')} speakers, float16", v["speakers"] * v["delta_f16_mib"] / 1024, "GiB",
              "projected", f"{n('speakers')} x {n('delta_f16_mib')} / 1024")
    d_r16 = row(P, f"deltas, {n('speakers')} speakers, rank 16", v["speakers"] * v["delta_r16_mib"] / 1024, "GiB",
                "projected", f"{n('speakers')} x {n('delta_r16_mib')} / 1024")

    P = "Wall time on cluster/aws.yaml"
    g = v["node_gpus"]
    row(P, "preprocessing, paper set, one GPU node (landmarks on the GPUs GPEN leaves, the rest on its vCPUs)",
        max(fa_h["paper set"] / (g - v["gpen_gpus"]), cpu_h["paper set"] / v["node_vcpus"]), "hours", "projected",
        f"max({f(fa_h['paper set'])} / ({n('node_gpus')} - {n('gpen_gpus')}), {f(cpu_h['paper set'])} / {n('node_vcpus')})")
    row(P, "SyncNet expert, head GPU", sn_h, "hours", "projected", f"{f(sn_h)} / 1")
    row(P, f"backbone, {n('gpus')} GPUs", bb_h / v["gpus"], "hours", "projected", f"{f(bb_h)} / {n('gpus')}")
    row(P, f"personalization, {n('speakers')} speakers, {n('gpu_nodes')} GPU nodes", ps_h / (g * v["gpu_nodes"]), "hours",
        "projected", f"{f(ps_h)} / ({n('node_gpus')} x {n('gpu_nodes')})")

    P = "Totals"
    row(P, "GPU-hours (H100; SyncNet on L40S): face-alignment (paper set) + SyncNet + backbone + 10k speakers",
        fa_h["paper set"] + sn_h + bb_h + ps_h, "GPU-hours", "projected",
        f"{f(fa_h['paper set'])} + {f(sn_h)} + {f(bb_h)} + {f(ps_h)}")
    row(P, "object storage: shards (paper set) + rank-16 deltas", shards["paper set"] + d_r16 * 2**30 / 1e9, "GB",
        "projected", f"{f(shards['paper set'])} + {f(d_r16)} x 2^30 / 1e9")
    row(P, "object storage: shards (all) + float16 deltas", shards["all"] + d16 * 2**30 / 1e9, "GB", "projected",
        f"{f(shards['all'])} + {f(d16)} x 2^30 / 1e9")
    return rows


def f(x: float) -> str:
    """Compact numbers: 59.6M, 13,493, 25.3, 0.144."""
    a = abs(x)
    if a >= 1e6:
        return f"{x / 1e6:,.4g}M"
    if a >= 100:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def fin(x: float) -> str:
    """Inputs as given: 300,000 or 0.815 or 116.6."""
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:g}"


def plan() -> list[tuple[str, str, float, str, str, str]]:
    return derive({k: i.value for k, i in INPUTS.items()})


def markdown() -> str:
    out = ["| input | value | unit | kind | source |", "|---|---|---|---|---|"]
    out += [f"| `{k}` | {fin(i.value)} | {i.unit} | {i.kind} | {i.source} |" for k, i in INPUTS.items()]
    out += ["", "| section | item | value | unit | basis | arithmetic |", "|---|---|---|---|---|---|"]
    out += [f"| {s} | {item} | {f(val)} | {unit} | {basis} | {how} |" for s, item, val, unit, basis, how in plan()]
    return "\n".join(out)


def count() -> dict[str, float]:
    """The FLOP-count inputs, recounted on the meta device (no memory, no compute)."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN
    from torch.utils.flop_counter import FlopCounterMode

    from stylesync.models.discriminator import Discriminator
    from stylesync.models.syncnet import ExpertSyncNet
    from stylesync.models.vgg19 import VGG19Features
    from stylesync.profiles import load_profile

    p, _ = load_profile(ROOT / "params.yaml", ROOT / "params/paper.yaml")

    def gflop(fn, n: int = 1) -> float:
        with FlopCounterMode(display=False) as c, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # backward(create_graph=True) in R1, on meta tensors
            fn()
        return c.get_total_flops() / n / 1e9

    with torch.device("meta"):
        fan, det, vgg = FAN(4).eval(), s3fd().eval(), VGG19Features()
        d, sn = Discriminator(p.model.discriminator), ExpertSyncNet(p.model.syncnet)
        size, s = p.model.generator.size, p.model.syncnet.size

        def r1():  # the penalty's double backward, as train/losses.r1_penalty (grad via backward(inputs=))
            x = torch.rand(2, 3, size, size, requires_grad=True)
            d(x).sum().backward(create_graph=True, inputs=[x])
            x.grad.pow(2).flatten(1).sum(1).mean().backward(inputs=list(d.parameters()))

        return {
            "fan_gflop": gflop(lambda: fan(torch.rand(1, 3, 256, 256))),
            "s3fd_gflop": gflop(lambda: det(torch.rand(1, 3, 224, 224))),
            "vgg_fwd_gflop": gflop(lambda: vgg(torch.rand(1, 3, size, size))),
            "r1_gflop": gflop(r1, 2),
            "syncnet_train_gflop": gflop(lambda: sn(torch.rand(4, 5, 3, s, s), torch.randn(4, 1, 80, 16)).sum().backward(), 4),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", action="store_true", help="recount the FLOP inputs instead of printing the plan")
    if ap.parse_args().count:
        for k, val in count().items():
            print(f"{k}: {val:.2f} (in INPUTS: {INPUTS[k].value})")
    else:
        print(markdown())


if __name__ == "__main__":
    main()
