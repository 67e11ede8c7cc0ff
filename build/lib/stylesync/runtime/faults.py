"""Fault injection for tests and reliability drills (off unless STYLESYNC_FAULT is set).

`STYLESYNC_FAULT="<point>@<n>[:<kind>]"` (several specs separated by `;`) injects a fault where the
code calls `maybe_fail(point, n)` (or `nan_fault(point, n)` for `nan`). Kinds:

- `error` (default): raise `InjectedFault` (a RuntimeError);
- `oom`: raise `torch.OutOfMemoryError` ("CUDA out of memory ..."), as an accelerator would;
- `memory`: raise `MemoryError`, as the host allocator would;
- `enospc`: raise `OSError(ENOSPC)`, as a full disk would;
- `kill`: SIGKILL the current process (a worker dying without a trace);
- `nan`: `nan_fault` returns True, and the training step turns a loss term into NaN.

Raising kinds fire once per marker file (`STYLESYNC_FAULT_MARKER`, default: a file in the temp dir
named after the spec; with several specs each gets its own marker, the given path plus a suffix), so
that a restarted worker or a rerun goes on past them. `nan` fires every time its point is reached:
a NaN coming from data or numerics comes back when the same step is replayed.
"""
from __future__ import annotations

import errno
import os
import re
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

KINDS = ("error", "oom", "memory", "enospc", "kill", "nan")


class InjectedFault(RuntimeError):
    pass


@dataclass(frozen=True)
class FaultSpec:
    point: str
    count: int
    kind: str = "error"


def parse_faults(value: str | None) -> list[FaultSpec]:
    """`"a@1;personalize:x@2:oom"` -> specs. Raises ValueError naming a malformed spec."""
    specs = []
    for raw in (value or "").split(";"):
        raw = raw.strip()
        if not raw:
            continue
        point, at, rest = raw.rpartition("@")
        n, _, kind = rest.partition(":")
        kind = kind or "error"
        if not at or not point or not n.strip().isdigit() or kind not in KINDS:
            raise ValueError(f"STYLESYNC_FAULT: bad spec {raw!r} (expected <point>@<n>[:<kind>], kind one of {KINDS})")
        specs.append(FaultSpec(point, int(n), kind))
    return specs


def _marker(spec: FaultSpec, index: int, n_specs: int) -> Path:
    given = os.environ.get("STYLESYNC_FAULT_MARKER")
    if given:
        return Path(given if n_specs == 1 else f"{given}.{index}")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{spec.point}-{spec.count}" + ("" if spec.kind == "error" else f"-{spec.kind}"))
    return Path(tempfile.gettempdir()) / f"stylesync-fault-{name}"


def _matching(point: str, count: int) -> list[tuple[int, int, FaultSpec]]:
    specs = parse_faults(os.environ.get("STYLESYNC_FAULT"))
    return [(i, len(specs), s) for i, s in enumerate(specs) if s.point == point and s.count == count]


def maybe_fail(point: str, count: int) -> None:
    """Raise (or die) here if a raising fault is configured for (point, count) and has not fired yet."""
    for i, n, spec in _matching(point, count):
        if spec.kind == "nan":
            continue
        marker = _marker(spec, i, n)
        if marker.exists():
            continue
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("fired")
        msg = f"injected fault at {point} {count}"
        if spec.kind == "error":
            raise InjectedFault(msg)
        if spec.kind == "oom":
            import torch

            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB ({msg})")
        if spec.kind == "memory":
            raise MemoryError(f"cannot allocate memory ({msg})")
        if spec.kind == "enospc":
            raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({msg})")
        if spec.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)


def nan_fault(point: str, count: int) -> bool:
    """True if a `nan` fault is configured for (point, count) (every time it is reached)."""
    if not os.environ.get("STYLESYNC_FAULT"):
        return False
    return any(spec.kind == "nan" for _, _, spec in _matching(point, count))
