"""Which files a manifest may point at: only files under the data roots.

A manifest is data, possibly from elsewhere (a shared parquet, an edited file). Preprocessing reads
every `path`, `audio_path` and `landmarks_path` it lists, so a row pointing at `/etc/passwd` or
`../../home/u/.ssh/id_rsa` would make the pipeline read (and, for a video-like file, store in a
shard) a file it has no business with. The data roots are `paths.data`, `paths.raw`, the root of
every `manifest.sources` entry and the folder holding the manifest itself. Checks are lexical
(`..` resolved, symlinks not followed: DVC may link data files into its cache); URIs must share the
protocol and lie under a URI root.
"""
from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Iterable, Optional, Sequence

from ..config import Params
from ..storage import is_uri

PATH_FIELDS = ("path", "audio_path", "landmarks_path")


class ManifestRootError(ValueError):
    """A manifest row points outside the data roots."""


def _norm(p: str) -> str:
    p = str(p)
    if p.startswith("file://"):
        p = p[len("file://"):]
    if is_uri(p):
        proto, rest = p.split("://", 1)
        return f"{proto}://{posixpath.normpath('/' + rest).lstrip('/')}"
    return os.path.normpath(os.path.abspath(p))


def _inside(path: str, root: str) -> bool:
    path, root = _norm(path), _norm(root)
    if is_uri(path) != is_uri(root):
        return False
    sep = "/" if is_uri(root) else os.sep
    return path == root or path.startswith(root.rstrip(sep) + sep)


def data_roots(params: Params, manifest_path: Optional[str] = None) -> list[str]:
    roots = [params.paths.data, params.paths.raw] + [s.root for s in params.manifest.sources]
    if manifest_path:
        m = str(manifest_path)
        roots.append(m.rsplit("/", 1)[0] if is_uri(m) else str(Path(m).parent))
    return list(dict.fromkeys(r for r in roots if r))


def outside_roots(rows: Iterable[dict], roots: Sequence[str]) -> list[tuple[str, str, str]]:
    """(clip_id, field, value) for every path of `rows` that lies under none of `roots`."""
    bad = []
    for r in rows:
        for field in PATH_FIELDS:
            value = r.get(field)
            if value and not any(_inside(value, root) for root in roots):
                bad.append((str(r.get("clip_id")), field, str(value)))
    return bad


def check_manifest_roots(rows: Sequence[dict], params: Params, manifest_path: Optional[str] = None) -> None:
    """Raise ManifestRootError naming the clips whose files lie outside the data roots."""
    roots = data_roots(params, manifest_path)
    bad = outside_roots(rows, roots)
    if bad:
        shown = "; ".join(f"clip {c!r}: {f} {v!r}" for c, f, v in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise ManifestRootError(
            f"manifest {manifest_path or params.paths.manifest} points outside the data roots: {shown}{more}. "
            f"Allowed roots: {', '.join(roots)} (paths.data, paths.raw, manifest.sources, the manifest's folder); "
            "rebuild the manifest with `stylesync manifest` or add the root to manifest.sources")
