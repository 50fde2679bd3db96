"""Random access to the records of a set of shard files (TFRecord plain or GZIP, ArrayRecord).

The index is one int64 table with a row per record: (file, record number in the file, data
offset, data length). Plain TFRecords are indexed from their 12-byte headers only. A GZIP
TFRecord cannot be seeked, so it is decompressed once (CRCs checked) into a plain copy in a
local cache directory and read from there. ArrayRecord files (local paths) index themselves;
their records are read with the ArrayRecord reader, which checks its own chunk hashes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from typing import Sequence

import numpy as np

from strongaudio_jax.data import storage, tfrecord

ARRAY_RECORD_SUFFIX = ".array_record"


def default_cache_dir() -> str:
    return os.environ.get("STRONGAUDIO_CACHE", os.path.join(tempfile.gettempdir(),
                                                             "strongaudio_cache"))


@dataclasses.dataclass
class RecordIndex:
    paths: list[str]  # as given (named in errors and logs)
    read_paths: list[str]  # what is actually read (a plain cached copy of a GZIP file)
    kinds: list[str]  # 'tfrecord' | 'array_record'
    rows: np.ndarray  # (n, 4) int64: file, record number, data offset, data length
    damaged: list[str] = dataclasses.field(default_factory=list)  # skipped at indexing time
    lost: dict[str, int] = dataclasses.field(default_factory=dict)  # ... as records, by reason
    scanned: list[str] = dataclasses.field(default_factory=list)  # TFRecords without a sidecar

    def __len__(self) -> int:
        return len(self.rows)

    def records_per_file(self) -> np.ndarray:
        return np.bincount(self.rows[:, 0], minlength=len(self.paths))


def _gunzipped_copy(path: str, cache_dir: str, verify_crc: bool, skip_bad: bool,
                    damaged: list[str]) -> str:
    """A plain TFRecord copy of a GZIP one (made once; keyed by path, size and content head)."""
    with storage.open_file(path) as f:
        head = f.read(1 << 16)
    key = hashlib.sha1(f"{path}|{storage.size(path)}".encode() + head).hexdigest()[:20]
    out = os.path.join(cache_dir, f"{key}.tfrecord")
    if os.path.exists(out):
        return out
    os.makedirs(cache_dir, exist_ok=True)
    stats = tfrecord.ReadStats()
    tmp = f"{out}.tmp{os.getpid()}"
    with tfrecord.TFRecordWriter(tmp, compression="") as w:
        for data in tfrecord.read_records(path, verify_crc=verify_crc, skip_corrupt=skip_bad,
                                          stats=stats, compression="gzip"):
            w.write(data)
    damaged.extend(stats.bad)  # (each ends the file: a gzip stream cannot be resynchronised)
    os.replace(tmp, out)
    return out


def build_index(paths: Sequence[str], *, verify_crc: bool = True, skip_bad: bool = False,
                cache_dir: str | None = None) -> RecordIndex:
    """Indexes every file; damage that hides the rest of a file raises CorruptRecordError, or
    with skip_bad is stepped over (plain TFRecords: the next intact header is searched for; a
    GZIP stream ends there), listed in `damaged` and counted in `lost` as one record per
    damaged stretch, by reason (corrupt_record, truncated_record). A 0-byte shard is an error,
    or with skip_bad listed and counted as an empty_file."""
    cache_dir = cache_dir or default_cache_dir()
    read_paths, kinds, tables, damaged, scanned = [], [], [], [], []
    lost: dict[str, int] = {}

    def count(reason: str, message: str) -> None:
        damaged.append(message)
        lost[reason] = lost.get(reason, 0) + 1

    numbers = None  # record numbers in the file when damage was stepped over
    for fi, path in enumerate(paths):
        if storage.size(path) == 0:
            message = f"{path} is empty (0 bytes)"
            if not skip_bad:
                raise tfrecord.CorruptRecordError(
                    path, 0, 0, "the file is empty (0 bytes; an interrupted copy or write?)",
                    truncated=True, hint="Re-create or remove it, or set data.skip_bad=True to "
                    "skip it (it is counted).")
            count("empty_file", message)
            kinds.append("tfrecord")
            read_paths.append(path)
            idx = np.zeros((0, 2), np.int64)
        elif path.endswith(ARRAY_RECORD_SUFFIX):
            if storage.is_url(path):
                raise ValueError(f"{path}: ArrayRecord files are read from local paths only; "
                                 "copy them to local disk or use TFRecord shards")
            from array_record.python import array_record_module

            reader = array_record_module.ArrayRecordReader(path)
            n = reader.num_records()
            reader.close()
            kinds.append("array_record")
            read_paths.append(path)
            idx = np.full((n, 2), -1, np.int64)
        else:
            kinds.append("tfrecord")
            read = path
            if tfrecord.is_gzip(path):
                gz_damage: list[str] = []
                read = _gunzipped_copy(path, cache_dir, verify_crc, skip_bad, gz_damage)
                for m in gz_damage:
                    count("truncated_record" if " is truncated: " in m else "corrupt_record", m)
            read_paths.append(read)
            sidecar = read == path and storage.exists(tfrecord.index_path(path))
            if sidecar:
                idx = read_sidecar(path)  # one small read, not one per record
            elif skip_bad:
                idx, numbers, errors = tfrecord.index_records_resync(read, verify_crc=verify_crc)
                for e in errors:
                    e = tfrecord.CorruptRecordError(path, e.index, e.offset, e.reason,
                                                    truncated=e.truncated, hint="")
                    count("truncated_record" if e.truncated else "corrupt_record", str(e))
            else:
                idx, error = tfrecord.index_records(read, verify_crc=verify_crc, partial=True)
                if error is not None:
                    raise tfrecord.CorruptRecordError(
                        path, error.index, error.offset, error.reason, truncated=error.truncated,
                        hint="Re-create the shard, or set data.skip_bad=True to skip the damaged "
                             "stretch and train on the rest (the loss is counted).")
            if read == path and not sidecar:
                scanned.append(path)  # a sidecar could have spared this (not for a GZIP copy)
        n = len(idx)
        if numbers is None:
            numbers = np.arange(n)
        tables.append(np.concatenate([np.full((n, 1), fi), numbers[:, None], idx], 1))
        numbers = None
    rows = (np.concatenate(tables).astype(np.int64) if tables else np.zeros((0, 4), np.int64))
    return RecordIndex(list(paths), read_paths, kinds, rows, damaged=damaged, lost=lost,
                       scanned=scanned)


def read_sidecar(path: str) -> np.ndarray:
    """The rows of a plain TFRecord shard from its `<shard>.idx` (checked against its size)."""
    with storage.open_file(tfrecord.index_path(path)) as f:
        text = f.read().decode("ascii", "replace")
    return tfrecord.parse_index(text, path, storage.size(path))


def write_sidecar(path: str, rows: np.ndarray | None = None) -> str:
    """Writes `<shard>.idx` (from `rows` when the writer kept them, else by scanning the
    shard's headers once, CRCs checked; a GZIP shard is refused there); returns its path.
    Written whole or not at all."""
    if rows is None:
        rows = tfrecord.index_records(path)
    out = tfrecord.index_path(path)
    with storage.open_file(out + ".tmp", "wb") as f:
        f.write(tfrecord.index_text(np.asarray(rows).reshape(-1, 2)).encode("ascii"))
    storage.rename(out + ".tmp", out)
    return out


class RecordReader:
    """Reads records by index row, CRC-checked, with a bounded number of open files."""

    def __init__(self, index: RecordIndex, verify_crc: bool = True,
                 max_open: int = storage.MAX_OPEN_FILES):
        self.index, self.verify_crc = index, verify_crc
        self._bytes = storage.RandomReader(max_open)
        self._array_records: dict[int, object] = {}
        self._max_open = max_open
        self._pool = None  # threads for remote reads, made on first use

    def where(self, row: int) -> str:
        fi, ri = int(self.index.rows[row, 0]), int(self.index.rows[row, 1])
        return f"{self.index.paths[fi]} record {ri}"

    def read(self, row: int) -> bytes:
        fi, ri, offset, length = (int(v) for v in self.index.rows[row])
        if self.index.kinds[fi] == "array_record":
            return self._array_record(fi).read([ri])[0]
        path = self.index.read_paths[fi]
        if storage.is_url(path):  # one request for data and CRC
            return tfrecord.check_record_at(self._bytes.read(path, offset, length + 4), offset,
                                            length, verify_crc=self.verify_crc,
                                            path=self.index.paths[fi], index=ri)
        # Two local reads: slicing the data off one buffer would copy ~240 KB per clip.
        return tfrecord.check_record(self._bytes.read(path, offset, length),
                                     self._bytes.read(path, offset + length, 4), offset, length,
                                     verify_crc=self.verify_crc, path=self.index.paths[fi],
                                     index=ri)

    def read_many(self, rows) -> list:
        """Each row's record bytes, or the exception reading it raised (in row order). Rows in
        remote files are fetched concurrently: their latency, not bandwidth, is the limit."""
        def one(row):
            try:
                return self.read(row)
            except Exception as e:  # noqa: BLE001 (returned to the caller, which decides)
                return e
        remote = [storage.is_url(self.index.read_paths[int(self.index.rows[r, 0])]) for r in rows]
        if not any(remote):
            return [one(r) for r in rows]
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(storage.REMOTE_CONCURRENCY)
        return list(self._pool.map(one, rows))

    def _array_record(self, fi: int):
        reader = self._array_records.pop(fi, None)
        if reader is None:
            from array_record.python import array_record_module

            reader = array_record_module.ArrayRecordReader(self.index.read_paths[fi])
            while len(self._array_records) >= self._max_open:
                self._array_records.pop(next(iter(self._array_records))).close()
        self._array_records[fi] = reader
        return reader

    def close(self) -> None:
        self._bytes.close()
        for r in self._array_records.values():
            r.close()
        self._array_records.clear()

    def __getstate__(self):
        return {**self.__dict__, "_array_records": {}, "_pool": None}
