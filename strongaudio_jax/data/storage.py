"""One filesystem layer for shards and work dirs: local files directly, URLs (gs://, s3://,
memory://) via fsspec.

Local paths keep the fast path (one `os.pread` per record on a cached descriptor). A URL goes
through fsspec (sequential reads in REMOTE_BLOCK blocks; a record is one ranged request): `gs://` needs the `gcsfs` package (`pip install 'strongaudio_jax[gcs]'`), `s3://`
needs `s3fs` (`[s3]`); credentials come from the environment as those libraries read them
(Application Default Credentials / AWS_* variables) and are never logged here.

Work dirs (train/trainer.py, train/log.py, train/checkpoint.py) write through the same functions:
`makedirs`, `write_text`, `listdir`, `copy`, `upload_tree` and `TextLog` for metrics.jsonl.
Object stores have no append and (on some servers, e.g. the GCS emulator) no server-side move,
so `rename` of a URL is copy + delete and `TextLog` rewrites its object whole.
"""

from __future__ import annotations

import collections
import glob as glob_lib
import os
import shutil
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


def abspath(path: str) -> str:
    """An absolute local path; a URL unchanged."""
    return path if is_url(path) else os.path.abspath(_local(path))


def makedirs(path: str) -> None:
    """Creates a directory and its parents; on object stores (no directories) it does nothing
    but check the path names a usable filesystem."""
    if is_url(path):
        _fs(path)
    else:
        os.makedirs(_local(path), exist_ok=True)


def listdir(path: str) -> list[str]:
    """Sorted base names of the entries directly under `path`."""
    if not is_url(path):
        return sorted(os.listdir(_local(path)))
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in _fs(path).ls(path, detail=False))


def read_text(path: str) -> str:
    with open_file(path, "rb") as f:
        return f.read().decode("utf-8")


def write_text(path: str, text: str) -> None:
    """Writes a whole text file. Local: a temporary file renamed into place, so a reader
    never sees half of it; object stores make an object visible only once whole."""
    data = text.encode("utf-8")
    if is_url(path):
        _fs(path).pipe_file(path, data)
        return
    path = _local(path)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def copy(src: str, dst: str) -> None:
    """Copies one file between any two places (local or URL)."""
    if not is_url(src) and not is_url(dst):
        shutil.copyfile(_local(src), _local(dst))
    elif not is_url(src):
        _fs(dst).put_file(_local(src), dst)
    elif not is_url(dst):
        _fs(src).get_file(src, _local(dst))
    else:
        with open_file(src, "rb") as fin, open_file(dst, "wb") as fout:
            shutil.copyfileobj(fin, fout, REMOTE_BLOCK)


def upload_tree(local_dir: str, dst: str) -> None:
    """Copies every file under `local_dir` to the same relative path under `dst`."""
    for root, _, files in os.walk(local_dir):
        rel = os.path.relpath(root, local_dir)
        for name in files:
            target = dst if rel == "." else join(dst, rel.replace(os.sep, "/"))
            if not is_url(dst):
                os.makedirs(target, exist_ok=True)
            copy(os.path.join(root, name), join(target, name))


class TextLog:
    """A text file that grows by lines (metrics.jsonl).

    Local: appended and flushed line by line. Object stores cannot append to an object, so
    the log keeps the whole text in memory (read back when the object already exists, e.g.
    on resume) and rewrites the object at each `append`: a reader always sees a complete
    file, a killed run loses at most the line being written, and no local state is needed
    to resume on another host. A log line every few seconds of a few hundred bytes keeps the
    object small (about 1 MB after 3000 log steps) next to a checkpoint.
    """

    def __init__(self, path: str):
        self.path = path
        if is_url(path):
            self._text = read_text(path) if exists(path) else ""
            if self._text and not self._text.endswith("\n"):  # a torn last line
                self._text += "\n"
            self._file = None
        else:
            self._file = open(_local(path), "a", encoding="utf-8")

    def append(self, line: str) -> None:
        line = line.rstrip("\n") + "\n"
        if self._file is None:
            self._text += line
            write_text(self.path, self._text)
        else:
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def rename(src: str, dst: str) -> None:
    """Atomic on local filesystems; on object stores a copy + delete (the name appears whole;
    a copy rather than fsspec's move, which some servers, e.g. the GCS emulator, refuse)."""
    if is_url(src):
        fs = _fs(src)
        fs.copy(src, dst)
        fs.rm(src)
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
