"""The loop driver shared by the backbone and personalization: steps, log rhythm, history, checkpoints.

`drive` calls `step_fn(step)` (one optimisation step; returns its logs as detached tensors, see
train/step.py) until `total`, reads the logs on the host once per `log_every` steps (means over
the interval), appends a record to `history` and hands it to `on_log`; every `checkpoint_every`
steps (and at the end) it calls `on_checkpoint`.

`LoopHooks` is what a stage adds to a training loop that runs elsewhere (a Ray Train worker):
tracking, sample images, the evaluation at checkpoints. The defaults do nothing, so the library
loop never imports tracking or evaluation code.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional

import torch


class LossMeter:
    """Sums of the step logs on their device (no host sync per step), read as means per interval."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor | float] = {}
        self.counts: dict[str, int] = {}

    def add(self, logs: dict) -> None:
        for k, v in logs.items():
            v = v.detach().float() if torch.is_tensor(v) else float(v)
            self.sums[k] = self.sums[k] + v if k in self.sums else v
            self.counts[k] = self.counts.get(k, 0) + 1

    def read(self) -> dict[str, float]:
        """The means since the last read (one host sync per key); resets the meter."""
        out = {k: float(v) / self.counts[k] for k, v in self.sums.items()}
        self.sums, self.counts = {}, {}
        return out


def drive(step: int, total: int, step_fn: Callable[[int], dict], history: list, *, log_every: int,
          checkpoint_every: int = 0, on_log: Optional[Callable[[int, dict], None]] = None,
          on_checkpoint: Optional[Callable[[int], None]] = None) -> int:
    """Run steps `step`..`total - 1`; returns the step reached. A log record is
    {"step", <mean of each log key>, "steps_per_s"}; `on_log` may add keys before it is stored."""
    meter = LossMeter()
    t_last, step_last = time.perf_counter(), step
    while step < total:
        meter.add(step_fn(step))
        step += 1
        if step % log_every == 0 or step == total:
            now = time.perf_counter()
            record = {"step": step, **meter.read(), "steps_per_s": (step - step_last) / max(now - t_last, 1e-9)}
            t_last, step_last = now, step
            if on_log is not None:
                on_log(step, record)
            history.append(record)
        if on_checkpoint is not None and checkpoint_every and (step % checkpoint_every == 0 or step == total):
            on_checkpoint(step)
    return step


def eta(elapsed: float, done: int, left: int) -> str:
    """`7m12s`: the time left at the pace so far."""
    s = elapsed / max(done, 1) * left
    return f"{int(s // 60)}m{int(s % 60):02d}s"


class LoopHooks:
    """What a stage adds to a training loop; every method is a no-op here. Must pickle (it travels
    to Ray Train workers inside the loop config)."""

    tracks = False  # True: the loop makes sample images for `images`

    def start(self, run_id: Optional[str], info: dict) -> Optional[str]:
        """Open tracking (resuming `run_id`); returns the run id to store in checkpoints."""
        return run_id

    def log(self, step: int, record: dict) -> None:
        pass

    def images(self, step: int, batch: dict, fake: torch.Tensor, mask: torch.Tensor) -> None:
        pass

    def checkpoint(self, step: int, g_ema: torch.nn.Module, syncnet: Any, mask: torch.Tensor) -> Optional[dict]:
        """At a checkpoint: e.g. a point of the learning curve (kept in the checkpoint), or None."""
        return None

    def close(self) -> None:
        pass
