"""The loop driver shared by the backbone and personalization (train/loop.py)."""
import torch

from stylesync.train.loop import LoopHooks, LossMeter, drive


def test_drive_logs_interval_means_and_checkpoints_on_rhythm():
    seen, logged, ckpts, history = [], [], [], []

    def step_fn(step):
        seen.append(step)
        logs = {"l1": torch.tensor(float(step))}
        if step % 2 == 0:
            logs["r1"] = torch.tensor(10.0 * step)  # a term logged on some steps only
        return logs

    end = drive(3, 10, step_fn, history, log_every=4, checkpoint_every=5,
                on_log=lambda s, r: logged.append(s), on_checkpoint=ckpts.append)
    assert end == 10 and seen == list(range(3, 10))
    assert logged == [4, 8, 10] and [h["step"] for h in history] == [4, 8, 10]
    assert history[0]["l1"] == 3.0 and history[1]["l1"] == (4 + 5 + 6 + 7) / 4 and history[2]["l1"] == 8.5
    assert history[1]["r1"] == (40 + 60) / 2 and "r1" not in history[0]  # per-key counts
    assert all(h["steps_per_s"] > 0 for h in history)
    assert ckpts == [5, 10]


def test_drive_does_nothing_past_the_end():
    history = []
    assert drive(7, 7, lambda s: 1 / 0, history, log_every=1) == 7 and history == []


def test_loss_meter_reads_once_and_resets():
    m = LossMeter()
    m.add({"a": torch.tensor(1.0), "b": 2.0})
    m.add({"a": torch.tensor(3.0)})
    assert m.read() == {"a": 2.0, "b": 2.0}
    assert m.read() == {}


def test_default_hooks_do_nothing():
    h = LoopHooks()
    assert h.start("run-1", {}) == "run-1" and h.checkpoint(1, None, None, None) is None and not h.tracks
