"""Training: the shared step, the expert SyncNet, the backbone on Ray Train (2 workers, MLflow, resume
after an injected worker failure), the paper profile."""
from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from stylesync.config import LoaderConfig, LossConfig, MaskConfig, OptimConfig
from stylesync.data.build_shards import build_shards
from stylesync.data.loader import make_loader, training_pipeline
from stylesync.face.mask import mask_tensor
from stylesync.layout import Layout
from stylesync.models.discriminator import Discriminator
from stylesync.models.generator import StyleSyncGenerator
from stylesync.models.syncnet import ExpertSyncNet
from stylesync.train.step import StepModules, make_optimizers, train_step

from helpers import (
    shard_urls, stage_runs, tiny_discriminator_config, tiny_generator_config, tiny_params, tiny_syncnet_config,
    with_expert, write_small_manifest,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(small_shards) -> Path:
    return small_shards


def test_step_trains_what_the_optimizer_holds_and_nothing_else(corpus):
    torch.manual_seed(0)
    g = StyleSyncGenerator(tiny_generator_config())
    d = Discriminator(tiny_discriminator_config())
    sync = ExpertSyncNet(tiny_syncnet_config()).eval().requires_grad_(False)
    trainable = list(g.mlp_dw.parameters()) + list(g.synthesis.to_rgbs.parameters())  # a personalization-like subset
    opt_g, opt_d = make_optimizers(trainable, d.parameters(), OptimConfig(), 16)
    ema = copy.deepcopy(g)
    m = StepModules(g, d, opt_g, opt_d, mask_tensor(32, MaskConfig()), sync, None, ema)
    batch = next(iter(make_loader(training_pipeline(shard_urls(Path(corpus) / "shards", "train"),
                                                    LoaderConfig(batch_size=2, shuffle_buffer=2), 32), 0)))
    before = {k: v.clone() for k, v in g.state_dict().items()}
    d_before = {k: v.clone() for k, v in d.state_dict().items()}
    s_before = {k: v.clone() for k, v in sync.state_dict().items()}
    logs = train_step(m, batch, 0, LossConfig(d_reg_every=1), OptimConfig())
    assert {"g_adv", "l1", "sync", "d_loss", "r1", "g_total"} <= set(logs) and all(np.isfinite(float(v)) for v in logs.values())
    # read on the host once per log interval (train/loop.LossMeter), not by the step
    assert all(torch.is_tensor(v) and v.dim() == 0 and not v.requires_grad for v in logs.values())
    ids = {id(p) for p in trainable}
    names = {n for n, p in g.named_parameters() if id(p) in ids}
    changed = {k for k, v in g.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and changed <= names  # E_a, E_face, the rest of G: untouched
    assert any(not torch.equal(v, d_before[k]) for k, v in d.state_dict().items())
    assert all(torch.equal(v, s_before[k]) for k, v in sync.state_dict().items())  # the frozen expert stays frozen
    ema_changed = {k for k, v in ema.state_dict().items() if not torch.equal(v, before[k])}
    assert ema_changed and ema_changed <= names  # the EMA follows the trained parameters


def test_expert_syncnet_trains_and_resumes(corpus, tmp_path):
    from stylesync.models.store import load_syncnet
    from stylesync.stages.train_syncnet import train_syncnet
    from stylesync.train.syncnet import REPORT_SEED, evaluate, val_batches

    p = tiny_params(corpus, tmp_path)
    m = train_syncnet(p)
    assert m["steps"] == 4 and 0 <= m["val_acc"] <= 1 and np.isfinite(m["val_loss"])
    assert (tmp_path / "models" / "syncnet" / "model.safetensors").exists()
    assert json.loads((tmp_path / "metrics" / "syncnet.json").read_text())["chance_acc"] == 0.5
    assert (tmp_path / "reports" / "syncnet.png").read_bytes().startswith(b"\x89PNG")  # the curve, drawn offline
    (r,) = stage_runs(p.tracking.tracking_uri, "syncnet")
    assert {"model", "reports"} <= r.artifacts
    first = load_file(str(tmp_path / "models" / "syncnet" / "model.safetensors"))
    # asking for more steps resumes from the last checkpoint; the result equals an uninterrupted run
    p.syncnet_train.steps = 6
    train_syncnet(p)
    resumed = load_file(str(tmp_path / "models" / "syncnet" / "model.safetensors"))
    q = tiny_params(corpus, tmp_path / "straight")
    q.syncnet_train.steps = 6
    train_syncnet(q)
    straight = load_file(str(tmp_path / "straight" / "models" / "syncnet" / "model.safetensors"))
    assert any(not torch.equal(first[k], resumed[k]) for k in first)
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k
    # keep: best exports the weights of the lowest validation loss (no further training happens here)
    p.syncnet_train.keep = "best"
    m = train_syncnet(p)
    hist = list(csv.DictReader(open(tmp_path / "plots" / "syncnet.csv")))
    best = min(hist, key=lambda h: float(h["val_loss"]))
    assert m["selected_step"] == int(best["step"]) and m["selection"]["val_loss"] == pytest.approx(float(best["val_loss"]))
    # the reported val_* are the exported weights on the report draw (report_batches, its fixed seed)
    net = load_syncnet(str(tmp_path / "models" / "syncnet"))
    again = evaluate(net, val_batches(p, p.syncnet_train.report_batches, REPORT_SEED), "cpu")
    assert m["val_pairs"] == again["pairs"] == 2 * 4 * 3 and m["selection"]["val_pairs"] == 2 * 4 * 1
    assert (m["val_acc"], m["val_loss"]) == (again["acc"], pytest.approx(again["loss"]))
    exported = load_file(str(tmp_path / "models" / "syncnet" / "model.safetensors"))
    assert all(torch.equal(exported[k], v) for k, v in load_file(str(next((tmp_path / "runs").glob("syncnet-*")) / "best" / "model.safetensors")).items())


def test_expert_bf16_autocast_trains_its_own_run(corpus, tmp_path):
    """syncnet_train.amp: bf16 autocast on the CPU trains finite, other weights than fp32 in a run of
    its own key; the exported weights stay fp32."""
    from stylesync.train.syncnet import train_syncnet

    out = {}
    for amp in ("off", "bf16"):
        p = tiny_params(corpus, tmp_path / amp)
        p.syncnet_train.amp = amp
        m = train_syncnet(p)
        assert all(np.isfinite(h["train_loss"]) for h in m["history"])
        (run,) = (tmp_path / amp / "runs").glob("syncnet-*")
        out[amp] = (run.name, load_file(str(tmp_path / amp / "models" / "syncnet" / "model.safetensors")))
    assert out["off"][0] != out["bf16"][0]
    fp32, bf16 = out["off"][1], out["bf16"][1]
    assert all(v.dtype == torch.float32 for v in bf16.values() if v.is_floating_point())
    assert any(not torch.equal(fp32[k], bf16[k]) for k in fp32)


def test_expert_exports_the_mean_of_its_weights_with_batchnorm_recomputed(corpus, tmp_path):
    """average_from: the exported expert is the mean of the pass's weights after steps average_from +
    k x average_every (the same as averaging the weights a plain run passes through), its BatchNorm
    statistics recomputed; the average survives a resume."""
    from stylesync.stages.train_syncnet import train_syncnet

    def exported(root: Path) -> dict:
        return load_file(str(root / "models" / "syncnet" / "model.safetensors"))

    plain = tiny_params(corpus, tmp_path / "plain")  # the same trajectory, no average: its weights step by step
    plain.syncnet_train.keep = "last"
    snapshots = []
    for steps in (3, 4, 5, 6):
        plain.syncnet_train.steps = steps
        train_syncnet(plain)
        snapshots.append(exported(tmp_path / "plain"))
    p = tiny_params(corpus, tmp_path / "avg")
    p.syncnet_train.average_from, p.syncnet_train.average_every = 2, 1
    p.syncnet_train.steps = 4
    train_syncnet(p)  # stops at step 4 (a checkpoint), then resumes to 6
    p.syncnet_train.steps = 6
    m = train_syncnet(p)
    assert (m["keep"], m["averaged_snapshots"], m["selected_step"]) == ("average", 4, 6)
    curve = list(csv.DictReader(open(Layout(p.paths).plots("syncnet.csv"))))  # the average: a point at the end
    assert float(curve[-1]["average_val_acc"]) == m["selection"]["val_acc"] and not any(r["average_val_acc"] for r in curve[:-1])
    avg = exported(tmp_path / "avg")
    net = ExpertSyncNet(p.model.syncnet)
    params = {n for n, _ in net.named_parameters()}
    for k in params:
        assert torch.allclose(avg[k], torch.stack([s[k] for s in snapshots]).mean(0), atol=1e-6), k
    stats = [k for k in avg if k.endswith("running_mean")]
    assert stats and all(not torch.allclose(avg[k], snapshots[-1][k]) for k in stats)  # recomputed, not the last run's


def test_expert_two_passes_train_the_second_on_the_first_ones_offsets(corpus, tmp_path):
    """first_pass_steps: the first expert's offset search over the training clips shifts and filters
    the second pass's data; both passes resume; the exported expert is the second's."""
    import pyarrow.parquet as pq

    from stylesync.stages.sync_check import score_all
    from stylesync.stages.train_syncnet import train_syncnet
    from stylesync.train.syncnet import train_syncnet as train_one_pass

    p = tiny_params(corpus, tmp_path)
    p.syncnet_train.first_pass_steps, p.syncnet_train.steps = 2, 4
    p.sync_check.min_confidence, p.sync_check.max_offset = -1.0, 15  # keep every clip the tiny expert scores
    m = train_syncnet(p)
    first, second = m["first_pass"], m["sync_filter"]
    n_train = sum(r["split"] == "train" for r in pq.read_table(p.paths.shards + "/index.parquet").to_pylist())
    assert first["steps"] == 2 and first["clips_scored"] == n_train and m["steps"] == 4
    assert first["val_pairs"] == 2 * 4 * p.syncnet_train.eval_batches < m["val_pairs"]  # the report draw: the second's
    assert second["status"] == "first pass"  # the second pass trained on the first one's plan
    assert (second["clips_shifted"], second["clips_skipped"]) == (first["clips_shifted"], first["clips_skipped"])
    curve = [(int(r["pass"]), int(r["step"])) for r in csv.DictReader(open(Layout(p.paths).plots("syncnet.csv")))]
    assert curve[0][0] == 1 and curve[-1] == (2, 2 + 4)  # the first pass's curve, then the second's after it
    assert [s for _, s in curve] == sorted({s for _, s in curve})
    runs = sorted((tmp_path / "runs").glob("syncnet-*"))
    assert len(runs) == 2 and {max(int(c.name[5:]) for c in r.glob("step-*")) for r in runs} == {2, 4}
    exported = load_file(str(tmp_path / "models" / "syncnet" / "model.safetensors"))
    # the plan is the first expert's search: rescoring with the first pass's weights gives it again
    q = tiny_params(corpus, tmp_path / "first")
    q.syncnet_train.steps, q.syncnet_train.first_pass_steps = 2, 2
    q.sync_check = p.sync_check
    train_one_pass(q)  # the first pass alone (its run key holds first_pass_steps)
    rows = score_all(q, "local", splits=("train",))
    assert sum(r["offset"] != 0 for r in rows) == first["clips_shifted"] > 0 and first["clips_skipped"] == 0
    # a rerun resumes both passes and exports the same expert
    assert train_syncnet(p)["sync_filter"] == second and sorted((tmp_path / "runs").glob("syncnet-*")) == runs
    again = load_file(str(tmp_path / "models" / "syncnet" / "model.safetensors"))
    assert all(torch.equal(again[k], v) for k, v in exported.items())
    # warm_start (default): the second pass fine-tunes the first's weights; from scratch it learns other ones
    p.syncnet_train.warm_start = False
    train_syncnet(p)
    scratch = load_file(str(tmp_path / "models" / "syncnet" / "model.safetensors"))
    assert len(list((tmp_path / "runs").glob("syncnet-*"))) == 3 and any(not torch.equal(scratch[k], v) for k, v in exported.items())


def test_backbone_two_workers_with_mlflow(corpus, tmp_path):
    from mlflow.tracking import MlflowClient

    from stylesync.stages.train_backbone import train_backbone

    p = tiny_params(corpus, tmp_path)
    p.train.num_workers = 2
    with_expert(p)
    m = train_backbone(p)
    assert m["steps"] == 4 and m["perceptual"].startswith("off")
    from stylesync.train.backbone import run_name

    assert m["run_name"] == run_name(p)  # not the last demo-check criterion's name
    dc = m["demo_check"]
    assert {"mouth_psnr", "mouth_psnr_copy_reference", "sync_score", "sync_score_shuffled_audio"} <= set(dc)
    assert (tmp_path / "models" / "backbone" / "generator" / "model.safetensors").exists()
    assert (tmp_path / "models" / "backbone" / "discriminator" / "model.safetensors").exists()
    assert (tmp_path / "plots" / "train.csv").read_text().startswith("step,")
    assert all((tmp_path / "reports" / f).stat().st_size for f in ("train.png", "demo_check.png"))
    client = MlflowClient(tracking_uri=p.tracking.tracking_uri)
    run = client.get_run(m["mlflow_run_id"])
    assert run.data.params["train.num_workers"] == "2" and run.data.params["world_size"] == "2"
    assert run.data.params["perceptual"].startswith("off")
    assert len(client.get_metric_history(run.info.run_id, "l1")) == 4
    assert "demo_check/mouth_psnr" in run.data.metrics
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model", "validation", "reports"} <= arts
    assert any("samples" in a.path for a in client.list_artifacts(run.info.run_id, "images")) or \
        any(a.path.startswith("images") for a in client.list_artifacts(run.info.run_id))
    mv = client.get_model_version_by_alias("stylesync-backbone", "current")
    assert mv.run_id == run.info.run_id


def test_backbone_resume_after_worker_failure_equals_uninterrupted(corpus, tmp_path, monkeypatch):
    from stylesync.stages.train_backbone import train_backbone

    straight = tiny_params(corpus, tmp_path / "straight")
    with_expert(straight)
    train_backbone(straight)
    failed = tiny_params(corpus, tmp_path / "failed")
    with_expert(failed)
    monkeypatch.setenv("STYLESYNC_FAULT", "train@3")  # after the step-2 checkpoint
    monkeypatch.setenv("STYLESYNC_FAULT_MARKER", str(tmp_path / "fault-marker"))
    m = train_backbone(failed)
    assert (tmp_path / "fault-marker").exists() and m["steps"] == 4  # the fault fired, the run recovered
    for part in ("generator", "discriminator"):
        a = load_file(str(tmp_path / "straight" / "models" / "backbone" / part / "model.safetensors"))
        b = load_file(str(tmp_path / "failed" / "models" / "backbone" / part / "model.safetensors"))
        for k in a:
            assert torch.equal(a[k], b[k]), (part, k)


# A driver of its own (a fresh Ray with log_to_driver) whose console the test reads, as `dvc repro` shows it
_BACKBONE_FIT = """
import sys
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from helpers import tiny_params, with_expert
from stylesync.stages.train_backbone import BackboneHooks
from stylesync.train.backbone import fit, run_name
p = tiny_params(Path(sys.argv[1]), Path(sys.argv[2]))
p.tracking.enabled = False
with_expert(p)
fit(p, BackboneHooks(p, run_name(p)))
"""


@pytest.mark.slow
def test_backbone_worker_prints_reach_the_console_once(corpus, tmp_path):
    """Each line rank 0 prints in its Ray Train worker (progress, demo check at checkpoints) shows
    once on the driver's console: Ray Train's print patch logs a print through the root logger and
    tees it to stdout as well, and both were forwarded (issue 26 §4). Slow: ~40-60 s (a Ray start)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_TRAIN_ENABLE_PRINT_PATCH"}  # Ray's default
    r = subprocess.run([sys.executable, "-c", _BACKBONE_FIT, str(corpus), str(tmp_path), str(REPO / "tests")],
                       check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-4000:]
    lines = r.stdout.splitlines()
    for shown in [f"backbone step {s}/4 | " for s in (1, 2, 3, 4)] + [f"demo check at step {s}: " for s in (2, 4)]:
        assert sum(shown in line for line in lines) == 1, (shown, r.stdout[-4000:])


def test_paper_profile_resolves_and_builds():
    from stylesync.profiles import load_profile

    p, overlay = load_profile(REPO / "params.yaml", REPO / "params" / "paper.yaml")
    g = p.model.generator
    assert (g.size, g.channel_multiplier, p.train.loss.lambda_rec, p.train.num_workers) == (256, 2, 10.0, 8)
    G = StyleSyncGenerator(g)
    assert G.n_latent == 14 and G.synthesis.num_layers == 13
    # D is initialised from a rosinality StyleGAN2 (config-f, 256) checkpoint: its state dict must be
    # that format's, name for name and shape for shape (the fixture lists the public model's keys)
    assert p.paths.discriminator_init.endswith("stylegan2-ffhq-256.pt")
    D = Discriminator(p.model.discriminator).eval()
    rosinality = json.loads((REPO / "tests" / "fixtures" / "foreign_formats.json").read_text())["formats"][
        "rosinality_discriminator_256_cm2"]
    assert {k: list(v.shape) for k, v in D.state_dict().items()} == rosinality
    with torch.no_grad():
        logits = D(torch.rand(2, 3, 256, 256))
    assert logits.shape == (2, 1) and torch.isfinite(logits).all() and logits[0] != logits[1]


@pytest.mark.slow
def test_paper_profile_runs_one_step_at_256(corpus):
    """One full training step of the paper-size models on CPU (slow: ~1-2 minutes)."""
    from stylesync.profiles import load_profile

    p, _ = load_profile(REPO / "params.yaml", REPO / "params" / "paper.yaml")
    g, d = StyleSyncGenerator(p.model.generator), Discriminator(p.model.discriminator)
    sync = ExpertSyncNet(p.model.syncnet).eval().requires_grad_(False)
    opt_g, opt_d = make_optimizers(g.parameters(), d.parameters(), p.train.optim, p.train.loss.d_reg_every)
    m = StepModules(g, d, opt_g, opt_d, mask_tensor(256, p.face.mask), sync, None, copy.deepcopy(g))
    cfg = LoaderConfig(batch_size=1, windows_per_clip=1, shuffle_buffer=1, workers=0)
    batch = next(iter(make_loader(training_pipeline(shard_urls(Path(corpus) / "shards", "train"), cfg, 256), 0)))
    logs = train_step(m, batch, 0, p.train.loss, p.train.optim)
    assert all(np.isfinite(float(v)) for v in logs.values())


def test_run_keys_follow_the_shards_content_not_their_path(corpus, tmp_path):
    """Other bytes at the same shard path: a fresh expert run (not the old one's weights); the same
    bytes: the run resumes. The scenario of a changed preprocess param, end to end."""
    from stylesync.data.shards import content_key
    from stylesync.stages.train_syncnet import train_syncnet
    from stylesync.train.backbone import run_name

    work = tmp_path / "work"  # its own shards: this test rewrites them
    p = tiny_params(work, tmp_path / "out")
    write_small_manifest(work, p)
    build_shards(p, executor="local")
    with_expert(p)
    key, name = content_key(p.paths.shards, ["train"]), run_name(p)
    train_syncnet(p)
    first = load_file(str(tmp_path / "out" / "models" / "syncnet" / "model.safetensors"))
    runs = sorted((tmp_path / "out" / "runs").glob("syncnet-*"))
    train_syncnet(p)  # the same shards: the same run, resumed at its end (nothing more to train)
    assert sorted((tmp_path / "out" / "runs").glob("syncnet-*")) == runs
    p.preprocess.jpeg_quality = 60  # the same clips re-encoded: other shard bytes at the same paths
    build_shards(p, executor="local")
    assert content_key(p.paths.shards, ["train"]) != key and run_name(p) != name
    train_syncnet(p)
    again = load_file(str(tmp_path / "out" / "models" / "syncnet" / "model.safetensors"))
    assert len(list((tmp_path / "out" / "runs").glob("syncnet-*"))) == 2  # a second, fresh run
    q = tiny_params(work, tmp_path / "scratch")  # from nothing on the new shards
    train_syncnet(q)
    scratch = load_file(str(tmp_path / "scratch" / "models" / "syncnet" / "model.safetensors"))
    assert any(not torch.equal(first[k], again[k]) for k in first)
    assert all(torch.equal(scratch[k], again[k]) for k in scratch)


def test_backbone_and_personal_keys_hold_the_expert_and_the_train_settings(corpus, tmp_path):
    from stylesync.models.syncnet import ExpertSyncNet
    from stylesync.models.store import save_syncnet
    from stylesync.train.backbone import run_name
    from stylesync.train.personalize import CatalogEntry, fingerprint

    p = tiny_params(corpus, tmp_path)
    with_expert(p)
    entry = CatalogEntry(identity="id0", clips=["c"])
    name, fp = run_name(p), fingerprint(p, entry, "backbone")
    torch.manual_seed(1)
    save_syncnet(Path(p.paths.models) / "syncnet", ExpertSyncNet(p.model.syncnet))  # another expert
    assert run_name(p) != name and fingerprint(p, entry, "backbone") != fp
    name, fp = run_name(p), fingerprint(p, entry, "backbone")
    p.train.nan_policy = "skip"  # read by personalization's step
    assert fingerprint(p, entry, "backbone") != fp
