"""Fault injection for tests and reliability drills (off unless STYLESYNC_FAULT is set).

`STYLESYNC_FAULT="<point>@<n>"` makes `maybe_fail(point, n)` raise `InjectedFault` at count n, once
per marker file (`STYLESYNC_FAULT_MARKER`, default: a file in the temp dir named after the spec), so
that a restarted worker can go on past it.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


class InjectedFault(RuntimeError):
    pass


def maybe_fail(point: str, count: int) -> None:
    spec = os.environ.get("STYLESYNC_FAULT")
    if not spec:
        return
    want_point, _, want_n = spec.partition("@")
    if want_point != point or not want_n or int(want_n) != count:
        return
    marker = Path(os.environ.get("STYLESYNC_FAULT_MARKER") or Path(tempfile.gettempdir()) / f"stylesync-fault-{point}-{want_n}")
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("fired")
    raise InjectedFault(f"injected fault at {point} {count}")
