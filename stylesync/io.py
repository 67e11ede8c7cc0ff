"""Filesystem helpers: atomic writes (local or fsspec URIs), safe identifiers, JSON outputs."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator

import fsspec

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(identifier: str) -> str:
    """A path-safe form of an identifier (identity, clip id): no separators, no '..', not empty.

    Characters outside [A-Za-z0-9._-] become '_'; leading dots are stripped so the result can
    never be '.', '..' or a hidden file. Raises ValueError if nothing is left."""
    cleaned = _SAFE.sub("_", str(identifier)).lstrip(".")
    if not cleaned or cleaned.strip("_") == "":
        raise ValueError(f"identifier {identifier!r} has no path-safe characters")
    return cleaned


def child_path(root: str | Path, identifier: str) -> Path:
    """root / safe_name(identifier), checked to stay inside root."""
    root = Path(root).resolve()
    path = (root / safe_name(identifier)).resolve()
    if root not in path.parents:
        raise ValueError(f"{identifier!r} escapes {root}")
    return path


def is_uri(path: str | os.PathLike) -> bool:
    return "://" in str(path) and not str(path).startswith("file://")


def filesystem(path: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path within it) without glob expansion of the path."""
    return fsspec.core.url_to_fs(str(path))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part."""
    if is_uri(path):
        fs, p = filesystem(path)
        tmp = f"{p}.tmp-{uuid.uuid4().hex}"
        with fs.open(tmp, "wb") as f:
            f.write(data)
        fs.mv(tmp, p)
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    with fsspec.open(str(path), "rb") as f:
        return json.loads(f.read())


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `path` as a whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
