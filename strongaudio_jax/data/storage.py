"""One filesystem layer for shard paths: local files directly, URLs (gs://, s3://, memory://) via fsspec.

Local paths keep the fast path (one `os.pread` per record on a cached descriptor). A URL goes
through fsspec (sequential reads in REMOTE_BLOCK blocks; a record is one ranged request): `gs://` needs the `gcsfs` package (`pip install 'strongaudio_jax[gcs]'`), `s3://`
needs `s3fs` (`[s3]`); credentials come from the environment as those libraries read them
(Application Default Credentials / AWS_* variables) and are never logged here.
"""

from __future__ import annotations

import collections
import glob as glob_lib
import os
from typing import BinaryIO

REMOTE_BLOCK = 8 << 20  # read-ahead of sequential remote reads (indexing, importers, inspect)
MAX_OPEN_FILES = 16  # local descriptors per reader (per worker process)
REMOTE_CONCURRENCY = 16  # ranged requests in flight per worker process


def is_url(path: str) -> bool:
    """True for 'proto://...' paths other than file://, which fsspec must open."""
    return "://" in path and not path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def _fs(path: str):
    try:
        import fsspec
    except ImportError:
        raise ImportError(f"{path}: reading URLs needs fsspec (pip install fsspec)") from None
    protocol = path.split("://", 1)[0]
    try:
        return fsspec.filesystem(protocol)
    except (ImportError, ValueError) as e:
        extra = {"gs": "gcs", "gcs": "gcs", "s3": "s3"}.get(protocol)
        hint = f" (pip install 'strongaudio_jax[{extra}]')" if extra else ""
        raise ImportError(f"{path}: no filesystem for {protocol}://{hint}: {e}") from None


def glob(pattern: str) -> list[str]:
    """Sorted matches of a glob pattern, local or URL (URLs keep their protocol prefix)."""
    if not is_url(pattern):
        return sorted(glob_lib.glob(_local(pattern)))
    protocol = pattern.split("://", 1)[0]
    found = _fs(pattern).glob(pattern)
    return sorted(p if "://" in p else f"{protocol}://{p.lstrip('/')}" for p in found)


def isdir(path: str) -> bool:
    return _fs(path).isdir(path) if is_url(path) else os.path.isdir(_local(path))


def exists(path: str) -> bool:
    return _fs(path).exists(path) if is_url(path) else os.path.exists(_local(path))


def size(path: str) -> int:
    return _fs(path).size(path) if is_url(path) else os.path.getsize(_local(path))


def join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}" if is_url(root) else os.path.join(root, name)


def open_file(path: str, mode: str = "rb") -> BinaryIO:
    """A file object; remote ones read ahead in REMOTE_BLOCK blocks (sequential access)."""
    if not is_url(path):
        return open(_local(path), mode)
    if "r" in mode:
        return _fs(path).open(path, mode, block_size=REMOTE_BLOCK, cache_type="readahead")
    return _fs(path).open(path, mode)


def rename(src: str, dst: str) -> None:
    """Atomic on local filesystems; on object stores a copy + delete (the name appears whole)."""
    if is_url(src):
        _fs(src).mv(src, dst)
    else:
        os.replace(_local(src), _local(dst))


def remove(path: str) -> None:
    if is_url(path):
        _fs(path).rm(path)
    else:
        os.remove(_local(path))


class RandomReader:
    """Reads byte ranges of many files.

    Local files: `os.pread` on at most `max_open` cached descriptors (LRU), one syscall per
    range. URLs: one ranged request per range (`cat_file`), no open files and no read-ahead:
    a record is one request of exactly its size (~240 KB for 10 s of FLAC), so a shuffled read
    order fetches no bytes twice; `read_many` issues a batch's requests concurrently.
    """

    def __init__(self, max_open: int = MAX_OPEN_FILES):
        self._max_open = max_open
        self._open: collections.OrderedDict[str, object] = collections.OrderedDict()

    def _get(self, path: str):
        f = self._open.pop(path, None)
        if f is None:
            f = os.open(_local(path), os.O_RDONLY)
            while len(self._open) >= self._max_open:
                self._close(self._open.popitem(last=False)[1])
        self._open[path] = f
        return f

    @staticmethod
    def _close(f: int) -> None:
        os.close(f)

    def read(self, path: str, offset: int, length: int) -> bytes:
        if is_url(path):
            return _fs(path).cat_file(path, start=offset, end=offset + length)
        return os.pread(self._get(path), length, offset)

    def close(self) -> None:
        while self._open:
            self._close(self._open.popitem()[1])

    def __getstate__(self):  # open files do not cross process boundaries
        return {"_max_open": self._max_open, "_open": collections.OrderedDict()}

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
