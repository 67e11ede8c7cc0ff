"""Run one measurement in a fresh spawned process, so that its peak memory is its own."""
from __future__ import annotations

import multiprocessing as mp
from typing import Callable, Optional


def run_isolated(target: Callable, *args) -> Optional[dict]:
    """`target(*args, queue)` in a spawned process -> what it put on the queue (None if it failed)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, q))
    proc.start()
    proc.join()
    return q.get() if proc.exitcode == 0 else None
