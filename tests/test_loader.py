"""Training loader: batch layout, windows, determinism, skip (resume), corrupt samples."""
from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from stylesync.audio import mel_start
from stylesync.config import LoaderConfig
from stylesync.data.loader import iter_clips, make_loader, training_pipeline
from stylesync.data.shards import sample_tar_bytes

from helpers import params_for, shard_urls


@pytest.fixture(scope="module")
def shards(small_shards) -> Path:
    return Path(params_for(small_shards).paths.shards)


def take(loader, n):
    return list(itertools.islice(iter(loader), n))


def test_batch_layout(shards):
    cfg = LoaderConfig(batch_size=4, windows_per_clip=2, shuffle_buffer=8, workers=0)
    batch = next(iter(make_loader(training_pipeline(shard_urls(shards, "train"), cfg, size=64, seed=1), 0)))
    assert batch["target"].shape == (4, 5, 3, 64, 64) and batch["target"].dtype == torch.float32
    assert batch["reference"].shape == (4, 5, 3, 64, 64)
    assert batch["mel"].shape == (4, 5, 1, 80, 16) and batch["sync_mel"].shape == (4, 1, 80, 16)
    assert 0 <= batch["target"].min() and batch["target"].max() <= 1
    assert (batch["start"] - batch["ref_start"]).abs().min() >= cfg.min_reference_gap
    assert len(batch["identity"]) == 4 and all(c.startswith("synthetic/dev/") for c in batch["clip_id"])
    # the sync window is the first frame's window
    assert torch.equal(batch["sync_mel"][:, 0], batch["mel"][:, 0, 0])


def test_windows_match_the_clip(shards):
    """A window's frames and mels are the clip's frames s..s+4 and their Wav2Lip mel windows."""
    cfg = LoaderConfig(batch_size=2, windows_per_clip=1, shuffle_buffer=1, workers=0)
    clips = {meta["clip_id"]: (frames, sample) for meta, frames, sample in iter_clips(shard_urls(shards, "train"))}
    batch = next(iter(make_loader(training_pipeline(shard_urls(shards, "train"), cfg, size=128, seed=3), 0)))
    from stylesync.data.sample import npy_load

    for i in range(2):
        frames, sample = clips[batch["clip_id"][i]]
        s = int(batch["start"][i])
        got = (batch["target"][i].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        np.testing.assert_array_equal(got, frames[s : s + 5])
        mel = npy_load(sample["mel.npy"]).astype(np.float32)
        np.testing.assert_array_equal(batch["mel"][i, 2, 0].numpy(), mel[:, mel_start(s + 2) : mel_start(s + 2) + 16])


@pytest.mark.parametrize("workers", [0, 2])
def test_deterministic_and_skip_equals_resume(shards, workers):
    cfg = LoaderConfig(batch_size=3, windows_per_clip=2, shuffle_buffer=8, workers=workers)
    urls = shard_urls(shards, "train")
    full = take(make_loader(training_pipeline(urls, cfg, 64, seed=7), workers), 6)
    again = take(make_loader(training_pipeline(urls, cfg, 64, seed=7), workers), 6)
    resumed = take(make_loader(training_pipeline(urls, cfg, 64, seed=7, skip_batches=4), workers), 2)
    other = take(make_loader(training_pipeline(urls, cfg, 64, seed=8), workers), 1)
    for a, b in zip(full, again):
        assert torch.equal(a["target"], b["target"]) and a["clip_id"] == b["clip_id"]
    for a, b in zip(full[4:], resumed):
        assert torch.equal(a["target"], b["target"]) and torch.equal(a["mel"], b["mel"])
    assert not torch.equal(full[0]["target"], other[0]["target"])


def test_corrupt_sample_is_skipped_with_a_warning(shards, tmp_path, caplog):
    good = shard_urls(shards, "train")[0]
    bad = tmp_path / "shard-bad.tar"
    bad.write_bytes(sample_tar_bytes([{"__key__": "broken", "frames.mp": b"\x00garbage", "json": b"{"}]))
    cfg = LoaderConfig(batch_size=2, windows_per_clip=1, shuffle_buffer=2, workers=0)
    with caplog.at_level(logging.WARNING), pytest.warns(Warning):
        batches = take(make_loader(training_pipeline([str(bad), good], cfg, 64, seed=0), 0), 3)
    assert len(batches) == 3
