"""One bench's result: printed as JSON and kept under bench/results/<name>-<time>.json."""
from __future__ import annotations

import json
import time
from pathlib import Path


def write_result(name: str, res: dict, out: str = "bench/results") -> Path:
    print(json.dumps(res, indent=2))
    path = Path(out) / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2))
    return path
