"""A/V offsets: the synthetic corpus injects them, the offset search finds them (sign and size), the
sync_check stage writes its table and metrics, the loaders shift and skip by the table."""
import copy
import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from stylesync.audio import mel_start
from stylesync.config import LoaderConfig, SyncCheckConfig, SynthConfig
from stylesync.data import synthetic
from stylesync.data.av_sync import SyncPlan, load_sync_plan, skip_reason
from stylesync.data.build_shards import build_shards
from stylesync.data.loader import iter_clips, make_loader, training_pipeline
from stylesync.data.sample import npy_load
from stylesync.eval.av_offset import expert_offset
from stylesync.storage import write_parquet
from stylesync.layout import Layout
from stylesync.stages import sync_check

from helpers import NO_VAL, params_for, shard_urls, stage_runs, tiny_params, with_expert, write_manifest_of


class CodeNet(torch.nn.Module):
    """A test instrument with the expert's interface: frame t carries a code (its brightness), mel
    columns of frame u carry u's code; both embeddings are the window's 5 codes (centred, unit)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    @staticmethod
    def _unit(x):
        x = x - x.mean(1, keepdim=True)
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)

    def embed_face(self, frames):  # (B, 5, 3, S, S) -> (B, 5)
        return self._unit(frames.mean(dim=(2, 3, 4)))

    def embed_audio(self, mel):  # (B, 1, 80, 16) -> (B, 5): one column inside each frame's 3.2 columns
        return self._unit(mel[:, 0, 0, [int(3.2 * i) + 1 for i in range(5)]])


def coded_clip(n: int, k: int, rng) -> tuple[torch.Tensor, np.ndarray]:
    """Frames whose audio is k frames late: the mel of frame u carries the code of frame u - k."""
    codes = rng.random(n + 40)
    frames = torch.from_numpy(codes[:n]).float()[:, None, None, None].expand(n, 3, 8, 8).clone()
    mel = np.zeros((80, mel_start(n) + 16), np.float32)
    for u in range(n + 5):
        mel[:, mel_start(u) : mel_start(u + 1)] = codes[u - k] if 0 <= u - k < n + 40 else 0.5
    return frames, mel


@pytest.mark.parametrize("k", [-8, -3, 0, 2, 7])
def test_the_offset_search_finds_the_shift_and_its_sign(k):
    frames, mel = coded_clip(100, k, np.random.default_rng(k + 20))
    out = expert_offset(CodeNet(), frames, mel, max_offset=15)
    assert out["offset"] == k and out["confidence"] > 0.5 and out["curve"].shape == (31,)


def test_the_synthetic_corpus_injects_offsets(tmp_path):
    base = dict(out=str(tmp_path / "a"), identities_dev=1, identities_test=0, videos_per_identity=1, clips_per_video=1,
                seconds=2.0, resolution=64, workers=1)
    job = synthetic.corpus_jobs(SynthConfig(**base))[0]
    clean = synthetic.make_clip(SynthConfig(**base), job)
    shifted = synthetic.make_clip(SynthConfig(**base, av_offset_fraction=1.0), job)
    k = shifted.meta["av_offset"]
    assert clean.meta["av_offset"] == 0 and 1 <= abs(k) <= 8
    np.testing.assert_array_equal(clean.frames, shifted.frames)
    spf = 640
    if k > 0:
        np.testing.assert_array_equal(shifted.audio[k * spf :], clean.audio[: -k * spf])
        assert not shifted.audio[: k * spf].any()
    else:
        np.testing.assert_array_equal(shifted.audio[: k * spf], clean.audio[-k * spf :])
    other_split = synthetic.make_clip(SynthConfig(**base, av_offset_fraction=1.0, av_offset_splits=["test"]), job)
    assert other_split.meta["av_offset"] == 0


def test_thresholds_follow_the_scorer():
    cfg = SyncCheckConfig()
    assert cfg.thresholds("official") == (3.0, 6) and cfg.thresholds("expert") == (0.1, 6)
    row = {"scorer": "official", "confidence": 2.9, "offset": 0}
    assert skip_reason(row, cfg) == "low_confidence"
    assert skip_reason({**row, "confidence": 5.0, "offset": -7}, cfg) == "offset_too_large"
    assert skip_reason({**row, "confidence": 5.0, "offset": 6}, cfg) is None
    assert skip_reason({**row, "scorer": "expert", "confidence": 0.2}, SyncCheckConfig(min_confidence=0.3)) == "low_confidence"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A synthetic corpus with offsets in every dev clip, preprocessed, with an expert in place."""
    tmp = tmp_path_factory.mktemp("sync")
    raw = tmp / "raw"
    cfg = SynthConfig(out=str(raw), identities_dev=2, identities_test=1, videos_per_identity=1, clips_per_video=2,
                      seconds=2.0, resolution=96, workers=1, av_offset_fraction=1.0)
    synthetic.generate_corpus(cfg)
    p = tiny_params(tmp, tmp / "out")
    p.preprocess.landmarks.backend = "precomputed"
    p.face.crop_size = 64
    write_manifest_of(raw, p, NO_VAL)
    build_shards(p, executor="local")
    with_expert(p)
    return p


def test_the_stage_writes_the_table_and_the_injected_metrics(corpus):
    p = corpus
    assert sync_check.run(p, SimpleNamespace(executor="local")) == 0
    rows = pq.read_table(Layout(p.paths).sync_table).to_pylist()
    assert len(rows) == 6 and {r["scorer"] for r in rows} == {"expert"}
    assert all(-15 <= r["offset"] <= 15 and np.isfinite(r["confidence"]) for r in rows)
    m = json.loads((Path(p.paths.metrics) / "sync.json").read_text())
    assert m["clips"] == 6 and m["scorer"] == "expert" and m["thresholds"] == {"min_confidence": 0.1, "max_offset": 6}
    inj = m["injected"]
    assert inj["clips"] == 4 and inj["clean_clips"] == 2  # every dev clip shifted, the test split clean
    assert 0 <= inj["recovered_within_1"] <= 1 and 0 <= inj["clean_within_1"] <= 1
    assert m["clips_shifted"] + m["clips_in_sync"] + m["clips_dropped"] == 6
    (r,) = stage_runs(p.tracking.tracking_uri, "sync_check")
    assert r.data.metrics["clips"] == 6 and r.data.metrics["injected.clips"] == 4 and r.artifacts == {"sync.json"}
    assert r.data.params["sync_check.max_offset"] == "6"


def test_the_loader_shifts_the_audio_and_skips_clips(corpus):
    p = corpus
    urls = shard_urls(p.paths.shards, "train")
    clips = {meta["clip_id"]: (sample, len(frames)) for meta, frames, sample in iter_clips(urls)}
    ids = sorted(clips)
    offsets = {ids[0]: 3, ids[1]: -2}
    plan = SyncPlan(offsets=offsets, skipped={ids[2]: "low_confidence"}, status="applied")
    cfg = LoaderConfig(batch_size=4, windows_per_clip=2, shuffle_buffer=4, workers=0)
    batches = list(itertools.islice(iter(make_loader(training_pipeline(
        urls, cfg, 64, seed=0, select=plan.select, av_offsets=plan.offsets), 0)), 6))
    seen = set()
    for b in batches:
        for i, c in enumerate(b["clip_id"]):
            seen.add(c)
            k, s = offsets.get(c, 0), int(b["start"][i])
            assert int(b["av_offset"][i]) == k
            sample, n = clips[c]
            mel = npy_load(sample["mel.npy"]).astype(np.float32)
            assert 0 <= s + k and s + k + 5 <= n  # the shifted audio is inside the clip
            np.testing.assert_array_equal(b["sync_mel"][i, 0].numpy(), mel[:, mel_start(s + k) : mel_start(s + k) + 16])
            np.testing.assert_array_equal(b["mel"][i, 1, 0].numpy(),
                                          mel[:, mel_start(s + k + 1) : mel_start(s + k + 1) + 16])
    assert ids[2] not in seen and {ids[0], ids[1]} <= seen


def test_the_training_plan_reads_the_table(corpus, tmp_path, caplog):
    p = corpus
    q = params_for(tmp_path)
    q.paths.data = str(tmp_path / "data")
    assert load_sync_plan(q).status.startswith("no table")  # said loudly, used unshifted
    assert "sync-check" in caplog.text
    rows = [{"clip_id": "a", "split": "train", "offset": 2, "confidence": 0.5, "min_dist": 0.7, "scorer": "expert",
             "frames": 50, "source": "x"},
            {"clip_id": "b", "split": "train", "offset": 0, "confidence": 0.01, "min_dist": 0.9, "scorer": "expert",
             "frames": 50, "source": "y"},
            {"clip_id": "c", "split": "train", "offset": -9, "confidence": 0.5, "min_dist": 0.7, "scorer": "expert",
             "frames": 50, "source": "z"}]
    write_parquet(pa.Table.from_pylist(rows, schema=sync_check.SYNC_SCHEMA), Layout(q.paths).sync_table)
    plan = load_sync_plan(q)
    assert plan.offsets == {"a": 2} and plan.skipped == {"b": "low_confidence", "c": "offset_too_large"}
    assert plan.summary() == {"status": "applied", "clips_shifted": 1, "clips_skipped": 2,
                              "skipped_by_reason": {"low_confidence": 1, "offset_too_large": 1}}
    with pytest.raises(ValueError, match="all 2 clips fail the sync check"):
        plan.check_left(["b", "c"], "identity x")
    q.sync_check.apply = False
    assert load_sync_plan(q).offsets == {} and load_sync_plan(q).status == "off"


def test_the_official_syncnet_scores_when_its_weights_are_given(corpus, tmp_path):
    from stylesync.eval.av_offset import SyncScorer, check_shard
    from stylesync.models.syncnet_official import SyncNetOfficial

    p = copy.deepcopy(corpus)
    p.sync_check.scorer = "official"
    with pytest.raises(FileNotFoundError, match="paths.syncnet_official_weights"):
        SyncScorer(p)
    torch.manual_seed(0)
    torch.save(SyncNetOfficial().state_dict(), tmp_path / "syncnet_v2.model")  # the format, random weights
    p.paths.syncnet_official_weights = str(tmp_path / "syncnet_v2.model")
    p.sync_check.scorer = "auto"
    assert SyncScorer(p).name == "official" and SyncScorer(p).frame_size is None
    rows = check_shard(p, shard_urls(p.paths.shards, "test")[0])
    assert rows and all(r["scorer"] == "official" and -15 <= r["offset"] <= 15 and r["confidence"] >= 0 for r in rows)
    assert SyncCheckConfig().thresholds(rows[0]["scorer"])[0] == 3.0


def test_a_split_left_empty_by_the_plan_is_refused_before_training(tmp_path):
    layout = Layout(params_for(tmp_path).paths)
    Path(layout.shard_index).parent.mkdir(parents=True, exist_ok=True)
    write_parquet(pa.Table.from_pylist([{"clip_id": "a", "split": "train"}, {"clip_id": "b", "split": "train"},
                                        {"clip_id": "c", "split": "test"}]), layout.shard_index)
    SyncPlan(skipped={"a": "low_confidence"}).check_split(layout, "train", "train_backbone")  # b is left
    SyncPlan(skipped={"c": "low_confidence"}).check_split(layout, "train", "train_backbone")  # another split
    with pytest.raises(ValueError, match=r"train_backbone \(train split\): all 2 clips .*low_confidence"):
        SyncPlan(skipped={"a": "low_confidence", "b": "offset_too_large"}).check_split(layout, "train", "train_backbone")
