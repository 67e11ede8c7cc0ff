"""The sync check's cost: clips per second per core of the expert's offset search (decode + 96
face windows + 100 audio windows + the 31-offset curve per 4 s clip), one shard after another in
one process with one torch thread; needs the demo's shards and expert (`make repro`, or
`dvc repro sync_check`).

    python bench/sync_check.py            # prints JSON, writes bench/results/sync_check-<time>.json
"""
from __future__ import annotations

import os
import time

from report import write_result  # bench/ is on sys.path when a bench runs as a script


def main() -> None:
    import torch

    from stylesync.config import load_params
    from stylesync.eval.av_offset import check_shard
    from stylesync.layout import Layout

    torch.set_num_threads(1)
    p = load_params("params.yaml")
    urls = Layout(p.paths).shard_urls("train")[:4]
    check_shard(p, urls[0])  # warm up
    t0 = time.perf_counter()
    rows = [r for u in urls for r in check_shard(p, u)]
    dt = time.perf_counter() - t0
    res = {"clips": len(rows), "frames": sum(r["frames"] for r in rows), "wall_s": round(dt, 2),
           "clips_per_s_per_core": round(len(rows) / dt, 2), "scorer": rows[0]["scorer"],
           "machine": {"cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}}
    write_result("sync_check", res)


if __name__ == "__main__":
    main()
