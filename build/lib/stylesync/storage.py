"""Filesystem helpers: one small set of calls for local paths and fsspec URIs (s3://, gs://,
memory://, ...), atomic writes, safe identifiers, JSON outputs.

Every helper resolves its path once (`filesystem`) to an fsspec filesystem and a path within it;
plain paths get fsspec's local filesystem, so local disks and object stores share one code path.
Only committing differs by filesystem, and that logic is ours: on local disk a file or directory
is written under a temporary name and renamed into place; object stores have no rename, but a
single-object PUT is atomic, so a file is one PUT and a directory "commits" with a marker object
(`.complete`) written after its files (see `atomic_dir`). Stages build paths with `join` and touch
storage only through these helpers, so the same code runs on a laptop and on a cluster.
"""
from __future__ import annotations

import contextlib
import glob as _glob
import hashlib
import io
import json
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator, Optional

import fsspec
from fsspec.implementations.local import LocalFileSystem

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(identifier: str) -> str:
    """A path-safe form of an identifier (identity, clip id): no separators, no '..', not empty.

    Characters outside [A-Za-z0-9._-] become '_'; leading dots are stripped so the result can
    never be '.', '..' or a hidden file. Raises ValueError if nothing is left."""
    cleaned = _SAFE.sub("_", str(identifier)).lstrip(".")
    if not cleaned or cleaned.strip("_") == "":
        raise ValueError(f"identifier {identifier!r} has no path-safe characters")
    return cleaned


def child_path(root: str | Path, identifier: str) -> Path | str:
    """root / safe_name(identifier): a resolved Path checked to stay inside root on local disk (a
    symlink could lead out), the joined URI elsewhere (a safe name has no separators)."""
    name = safe_name(identifier)
    fs, p = filesystem(root)
    if not is_local(fs):
        return join(root, name)
    base = Path(p).resolve()
    path = (base / name).resolve()
    if base not in path.parents:
        raise ValueError(f"{identifier!r} escapes {base}")
    return path


class StorageError(RuntimeError):
    """A storage path that cannot be used (unknown protocol, its fsspec package not installed)."""


# fsspec protocols of object stores: no rename, atomic single-object PUT, strongly consistent reads
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "memory"})
# the package each protocol needs (fsspec's own message names only some)
_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
             "abfss": "adlfs", "adl": "adlfs", "oss": "ossfs", "hf": "huggingface_hub", "sftp": "paramiko"}
COMPLETE = ".complete"  # marker object of a finished directory on an object store


def is_uri(path: str | os.PathLike) -> bool:
    """A remote (non-local) URI: has a scheme other than file://."""
    return "://" in str(path) and not str(path).startswith("file://")


def protocol(path: str | os.PathLike) -> str:
    """'s3', 'gs', 'memory', ... ('file' for local paths)."""
    return fsspec.core.split_protocol(str(path))[0] or "file"


def filesystem(path: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path within it), without glob expansion. Plain paths and file:// URLs get the
    local filesystem and an absolute path ('::' in a local name is not fsspec URL chaining).
    Listings are not cached for object stores (another process may have written since). A
    protocol whose package is missing raises StorageError naming the package to install."""
    s, proto = str(path), protocol(path)
    try:
        if proto == "file":
            return fsspec.filesystem("file"), fsspec.core.strip_protocol(s)
        opts = {"use_listings_cache": False} if proto in OBJECT_STORES - {"memory"} else {}
        return fsspec.core.url_to_fs(s, **opts)
    except ImportError as e:
        pkg = _PACKAGES.get(proto, f"the fsspec implementation of {proto}://")
        extra = " (or the project's extra: pip install 'stylesync[s3]')" if pkg == "s3fs" else ""
        raise StorageError(f"{path}: {proto}:// paths need the {pkg!r} package: pip install {pkg}{extra} "
                           f"[{e}]") from e
    except ValueError as e:
        if "Protocol not known" in str(e):
            raise StorageError(f"{path}: unknown storage protocol {proto!r} ({e})") from e
        raise


def is_object_store(fs: fsspec.AbstractFileSystem) -> bool:
    protos = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return bool(OBJECT_STORES.intersection(protos))


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """The local disk: files and directories commit by rename (see `atomic_write_bytes`)."""
    return isinstance(fs, LocalFileSystem)


def join(root: str | os.PathLike, *parts: str) -> str:
    """root/parts, spelled like root ('/'-separated; a URI keeps its scheme)."""
    return posixpath.join(str(root), *parts)


def parent(path: str | os.PathLike) -> str:
    """The directory holding `path`, spelled like it (a URI for URIs)."""
    scheme, sep, rest = str(path).rpartition("://")
    return f"{scheme}{sep}{PurePosixPath(rest).parent}"


def exists(path: str | os.PathLike) -> bool:
    fs, p = filesystem(path)
    return fs.exists(p)


def isdir(path: str | os.PathLike) -> bool:
    fs, p = filesystem(path)
    return fs.isdir(p)


def size(path: str | os.PathLike) -> int:
    fs, p = filesystem(path)
    return int(fs.size(p))


def open_file(path: str | os.PathLike, mode: str = "rb", **kw: Any):
    """A file object for reading (or non-atomic writing). For whole files written by the pipeline
    use `atomic_write_bytes`."""
    fs, p = filesystem(path)
    return fs.open(p, mode, **kw)


def read_bytes(path: str | os.PathLike) -> bytes:
    fs, p = filesystem(path)
    return fs.cat_file(p)


def read_text(path: str | os.PathLike) -> str:
    return read_bytes(path).decode()


def makedirs(path: str | os.PathLike) -> None:
    """mkdir -p (object stores have no directories: nothing to do there)."""
    fs, p = filesystem(path)
    if not is_object_store(fs):
        fs.makedirs(p, exist_ok=True)


def remove(path: str | os.PathLike, recursive: bool = False) -> None:
    """Delete a file (or a directory tree with recursive=True; a symlink is unlinked, not
    followed); a missing path is not an error."""
    fs, p = filesystem(path)
    with contextlib.suppress(FileNotFoundError):
        if not (recursive and fs.isdir(p)):
            fs.rm_file(p)
        elif is_object_store(fs):  # object by object: their rm() takes '[', '*', '?' in a path for a glob
            for f in fs.find(p):
                fs.rm_file(f)
        else:
            fs.rm(p, recursive=True)


def find(root: str | os.PathLike) -> list[str]:
    """Every file under `root`, as sorted '/'-separated paths relative to it ([] if root is missing)."""
    fs, p = filesystem(root)
    prefix = p.rstrip("/") + "/"
    with contextlib.suppress(FileNotFoundError):
        return sorted(f[len(prefix):] for f in fs.find(p) if f.startswith(prefix))
    return []


def glob(root: str | os.PathLike, pattern: str) -> list[str]:
    """Sorted paths (spelled like `root`) under root matching a glob pattern relative to it (e.g.
    'train/shard-*.tar'); root itself is taken literally."""
    fs, p = filesystem(root)
    prefix = p.rstrip("/") + "/"
    return sorted(join(root, f[len(prefix):]) for f in fs.glob(_glob.escape(prefix) + pattern)
                  if f.startswith(prefix))


def umask() -> int:
    """The process's umask (read without changing it for longer than the call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part
    (local: fsynced temp file + rename; object store: one PUT; other filesystems: temp + move)."""
    fs, p = filesystem(path)
    if is_object_store(fs):
        fs.pipe_file(p, data)
        return
    fs.makedirs(posixpath.dirname(p), exist_ok=True)
    if not is_local(fs):
        tmp = f"{p}.tmp-{uuid.uuid4().hex}"
        with fs.open(tmp, "wb") as f:
            f.write(data)
        fs.mv(tmp, p)
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{posixpath.basename(p)}.", suffix=".tmp", dir=posixpath.dirname(p))
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes 0600: the file gets the mode any open() would give it
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None and e.filename is None:  # a full disk, ...: name the file
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(read_bytes(path))


def write_parquet(table, path: str | os.PathLike) -> None:
    """A pyarrow table as parquet, atomically."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_parquet(path: str | os.PathLike):
    """A parquet file as a pyarrow table, read through the path's fsspec filesystem (pyarrow reads
    the local one natively)."""
    import pyarrow.parquet as pq

    fs, p = filesystem(path)
    return pq.read_table(p, filesystem=fs)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary local directory to fill; on success it replaces `path` as a whole.

    Local: a sibling directory renamed into place. Elsewhere: uploaded on success by `upload_dir`:
    the old `.complete` marker is removed, the files are put (one PUT each, `COMMIT_LAST` names
    last), then the marker, then objects of an older version that the new one lacks are deleted.
    `dir_complete` tells a finished directory; model directories are also self-checking
    (config.json, written last, holds the sha256 of the weights)."""
    fs, p = filesystem(path)
    if not is_local(fs):
        tmp = Path(tempfile.mkdtemp(prefix="stylesync-upload-"))
        try:
            yield tmp
            upload_dir(tmp, str(path))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    target = Path(p)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700: the directory gets the mode mkdir would give it
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# files that make a model / training-state directory usable, uploaded last and in this order
COMMIT_LAST = ("config.json", "state.pt", "manifest.json")


def upload_dir(local: str | os.PathLike, uri: str) -> None:
    """Put a local directory tree at `uri` (see `atomic_dir` for the order of writes)."""
    fs, p = filesystem(uri)
    local = Path(local)
    files = sorted((f.relative_to(local).as_posix() for f in local.rglob("*") if f.is_file()),
                   key=lambda r: (COMMIT_LAST.index(posixpath.basename(r)) + 1
                                  if posixpath.basename(r) in COMMIT_LAST else 0, r))
    old = set(find(uri))
    remove(join(uri, COMPLETE))
    if not is_object_store(fs):
        fs.makedirs(p, exist_ok=True)
    for rel in files:
        if not is_object_store(fs):
            fs.makedirs(posixpath.dirname(posixpath.join(p, rel)), exist_ok=True)
        fs.put_file(str(local / rel), posixpath.join(p, rel))
    fs.pipe_file(posixpath.join(p, COMPLETE), b"")
    for rel in sorted(old - set(files) - {COMPLETE}):
        remove(join(uri, rel))


def dir_complete(path: str | os.PathLike) -> bool:
    """A directory written by `atomic_dir` in full (local: it exists; elsewhere: its marker exists)."""
    fs, p = filesystem(path)
    return fs.isdir(p) if is_local(fs) else fs.exists(posixpath.join(p, COMPLETE))


@contextlib.contextmanager
def local_file(path: str | os.PathLike) -> Iterator[str]:
    """A local path for `path` (a temporary copy unless it is on local disk)."""
    fs, p = filesystem(path)
    if is_local(fs):
        yield p
        return
    fd, tmp = tempfile.mkstemp(suffix=PurePosixPath(p).suffix)
    os.close(fd)
    try:
        fs.get_file(p, tmp)  # (get() would glob '[', '*', '?' in names)
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def optional_sha256(path: Optional[str | Path]) -> Optional[str]:
    """sha256 of an optional input file (None when it is not given or absent: the run says so)."""
    return file_sha256(path) if path and exists(path) else None


def file_sha256(path: str | Path) -> str:
    """sha256 of a file."""
    h = hashlib.sha256()
    with open_file(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def local_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A local directory with the contents of `path` (a temporary download unless on local disk)."""
    fs, p = filesystem(path)
    if is_local(fs):
        yield Path(p)
        return
    tmp = Path(tempfile.mkdtemp(prefix="stylesync-download-"))
    try:
        for rel in find(path):
            if posixpath.basename(rel) == COMPLETE:
                continue
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(posixpath.join(p, rel), str(tmp / rel))
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ray_storage(path: str | os.PathLike) -> tuple[str, Optional[Any]]:
    """(storage_path, storage_filesystem) for Ray Train's RunConfig: a local absolute path and None,
    or the path within the filesystem and a pyarrow wrapper of the same fsspec filesystem that
    every other stage uses (one configuration: credentials, endpoint)."""
    fs, p = filesystem(path)
    if is_local(fs):
        return str(Path(p).resolve()), None
    import pyarrow.fs as pafs

    return p, pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def copy_to_local(paths: Iterable[str], directory: str | os.PathLike) -> list[str]:
    """Local copies of files (remote ones downloaded into `directory`, local paths returned as they are)."""
    out = []
    for i, path in enumerate(paths):
        fs, p = filesystem(path)
        if is_local(fs):
            out.append(str(path))
            continue
        dst = Path(directory) / f"{i:06d}-{posixpath.basename(p)}"
        fs.get_file(p, str(dst))
        out.append(str(dst))
    return out
