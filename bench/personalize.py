"""Personalization cost: wall time and peak memory per identity at the demo size (needs the demo's
outputs: run `make repro` first), the delta's size on disk per identity at 256 (float32 / float16 /
low rank), the quality cost of the compact storage on the demo, and the projection for a catalog of
10,000 speakers.

    python bench/personalize.py
"""
from __future__ import annotations

import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from isolated import run_isolated  # bench/ is on sys.path when a bench runs as a script


def _one(identity: str, q) -> None:
    from stylesync.config import load_params
    from stylesync.train.catalog import load_catalog
    from stylesync.stages.personal_identity import personalize_identity

    p = load_params("params.yaml")
    with tempfile.TemporaryDirectory() as d:  # outputs elsewhere: the demo's models/personal stays as it is
        import shutil

        for sub in ("backbone", "syncnet"):
            shutil.copytree(Path(p.paths.models) / sub, Path(d) / sub)
        p.paths.models = d
        p.tracking.enabled = False
        entry = next(e for e in load_catalog(p)[0] if e.identity == identity)
        t0 = time.perf_counter()
        r = personalize_identity(p, entry)
        q.put({"identity": identity, "wall_s": time.perf_counter() - t0, "steps": r["steps"],
               "personal_frames": r["personal_frames"],
               "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20})


def delta_sizes_at_256() -> dict:
    from stylesync.config import GeneratorConfig
    from stylesync.models.delta import pack_delta
    from stylesync.models.generator import StyleSyncGenerator
    from safetensors.torch import save_file

    g = StyleSyncGenerator(GeneratorConfig())
    dp = g.enable_delta_p()
    torch.manual_seed(0)
    with torch.no_grad():
        for s in dp.shifts.values():
            s.normal_(0, 1e-3)
    out = {"delta_p_params": sum(s.numel() for s in dp.shifts.values()), "mlp_dw_params": sum(p.numel() for p in g.mlp_dw.parameters())}
    with tempfile.TemporaryDirectory() as d:
        for name, dtype, rank in (("float32", "float32", None), ("float16", "float16", None),
                                  ("float16_rank16", "float16", 16), ("float16_rank4", "float16", 4)):
            f = Path(d) / f"{name}.safetensors"
            save_file(pack_delta(dict(dp.shifts.items()), g.mlp_dw.state_dict(), dtype, rank), str(f))
            out[f"{name}_mib"] = f.stat().st_size / 2**20
    return out


def storage_quality_on_demo() -> dict:
    """Mouth PSNR of Ours-P with its delta stored exactly vs float16 vs low rank (demo identities)."""
    import itertools

    from stylesync.config import load_params
    from stylesync.data.loader import iter_clips
    from stylesync.data.sample import npy_load
    from stylesync.eval.protocol import generate, mouth_scores, prepare_clip
    from stylesync.models.checkpoint import read_model
    from stylesync.models.delta import pack_delta, unpack_delta
    from stylesync.face.mask import mask_tensor
    from stylesync.layout import Layout
    from stylesync.models.store import load_personal

    p = load_params("params.yaml")
    root = Path(p.paths.models) / "personal"
    rows = {}
    for d in sorted(x for x in root.iterdir() if (x / "config.json").exists())[:2]:
        state, meta = read_model(d)
        P = load_personal(Layout(p.paths).backbone, d)
        shifts, mlp = unpack_delta(state)
        clips = meta["data"]["held_out"][:1]
        shard = sorted(Path(p.paths.shards).glob("test/*.tar"))
        mask = mask_tensor(P.size, p.face.mask)
        res = {}
        for name, dtype, rank in (("stored", None, None), ("rank8", "float16", 8), ("rank2", "float16", 2)):
            if dtype:
                s2, _ = unpack_delta(pack_delta(shifts, mlp, dtype, rank))
                with torch.no_grad():
                    for k, v in s2.items():
                        P.delta_p.shifts[k].copy_(v)
            scores = []
            for meta_c, frames, sample in iter_clips([str(x) for x in shard], P.size):
                if meta_c["clip_id"] in clips:
                    clip = prepare_clip(meta_c, frames, npy_load(sample["mel.npy"]).astype(np.float32), P.size, p.seed)
                    scores.append(mouth_scores(generate(P, clip, mask), clip)["mouth_psnr"])
            res[name] = float(np.mean(scores)) if scores else None
        rows[meta["identity"]] = res
    return rows


def flops_ratio() -> float:
    """Generator FLOPs per image at 256 (params/paper.yaml) over the demo's."""
    from stylesync.config import load_params
    from stylesync.models.card import model_card
    from stylesync.profiles import load_profile

    demo = load_params("params.yaml")
    paper, _ = load_profile("params.yaml", "params/paper.yaml")
    return model_card(paper.model)["generator"]["flops_per_image"] / model_card(demo.model)["generator"]["flops_per_image"]


def main() -> None:
    from stylesync.config import load_params
    from stylesync.train.catalog import load_catalog

    p = load_params("params.yaml")
    ids = [e.identity for e in load_catalog(p)[0]][:2]
    per_id = [run_isolated(_one, i) for i in ids]
    sizes = delta_sizes_at_256()
    wall = float(np.mean([r["wall_s"] for r in per_id]))
    res = {"per_identity_demo_cpu": per_id, "delta_at_256": sizes, "storage_quality_demo": storage_quality_on_demo(),
           "projection_10k_speakers": {
               "demo_cpu_hours": 10_000 * wall / 3600,
               "storage_float16_gib": 10_000 * sizes["float16_mib"] / 1024,
               "storage_float16_rank16_gib": 10_000 * sizes["float16_rank16_mib"] / 1024,
               "generator_flops_ratio_256_to_demo": flops_ratio(),
               "note": "demo size on this CPU, measured per identity; at 256 each image costs the ratio above "
                       "in FLOPs: a catalog at 256 needs GPUs"},
           "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(res, indent=2))
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path(f"bench/results/personalize-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
