"""Plot CSVs, the DVC plots of the stages (metrics JSON: storage.write_json)."""
from __future__ import annotations

import csv
import io
from typing import Iterable, Optional

from ..storage import atomic_write_bytes


def write_plot(path: str, rows: Iterable[dict], fields: Optional[list[str]] = None) -> None:
    """A CSV with `fields` as columns (default: the first row's keys); extra keys are left out."""
    rows = list(rows)
    fields = fields or (list(rows[0]) if rows else ["step"])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())
