"""TFRecord files without TensorFlow: the same bytes TF writes, the same checks TF makes.

A record is framed as
    uint64 length (LE) | uint32 masked crc32c(length bytes) | data | uint32 masked crc32c(data)
A GZIP file is that stream inside one gzip member. Every CRC is verified on read because a
silently flipped byte in an audio shard would otherwise turn into a wrong clip, not an error.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct
import zlib
from typing import BinaryIO, Iterator

import google_crc32c
import numpy as np

from strongaudio_jax.data import storage

_HEADER = struct.Struct("<QI")  # length, masked crc of the 8 length bytes
_CRC = struct.Struct("<I")
_HEADER_SIZE = 12
_FOOTER_SIZE = 4
_READ_BUFFER = 1 << 20  # large buffered reads: one syscall serves many small records
_GZIP_MAGIC = b"\x1f\x8b"
_HINT = ("Re-create the shard, or set data.skip_bad=True to skip bad records and count them "
         "(read_records: skip_corrupt=True).")
_HINT_RANDOM_ACCESS = "Re-create the shard (or rebuild its index if the file has changed)."


def masked_crc(data: bytes) -> int:
    """TF's masked CRC-32C; masking keeps a CRC of data that itself contains CRCs well-behaved."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class CorruptRecordError(IOError):
    """A record failed its CRC or the file ends inside it; says where and what to do.

    `offset` is where the record (its header) starts; for gzip files it counts bytes of the
    decompressed stream. `next_offset` is where the following record starts when that is still
    known (only after a data CRC failure), else None.
    """

    def __init__(self, path, index: int, offset: int, reason: str, *, truncated: bool = False,
                 next_offset: int | None = None, decompressed: bool = False, hint: str = _HINT):
        self.path, self.index, self.offset, self.reason = str(path), index, offset, reason
        self.truncated, self.next_offset, self.decompressed = truncated, next_offset, decompressed
        self.hint = hint
        what = "truncated" if truncated else "corrupt"
        stream = " of the decompressed stream" if decompressed else ""
        super().__init__(f"{self.path}: record {index} at byte offset {offset}{stream} is {what}: "
                         f"{reason}." + (f" {hint}" if hint else ""))

    def __reduce__(self):  # keeps the error picklable across data-loader worker processes
        return _rebuild_error, (self.path, self.index, self.offset, self.reason,
                                dict(truncated=self.truncated, next_offset=self.next_offset,
                                     decompressed=self.decompressed, hint=self.hint))


def _rebuild_error(path, index, offset, reason, kwargs):
    return CorruptRecordError(path, index, offset, reason, **kwargs)


@dataclasses.dataclass
class ReadStats:
    """Counts from `read_records`, so skipped damage is visible rather than silent."""
    records: int = 0
    corrupt: int = 0
    truncated: int = 0
    bad: list[str] = dataclasses.field(default_factory=list)


def _want_gzip(compression) -> bool | None:
    """None: decide from the file. '' or 'none': plain. 'gzip': gzip."""
    if compression is None:
        return None
    c = compression.lower()
    if c in ("", "none"):
        return False
    if c == "gzip":
        return True
    raise ValueError(f"compression must be None, '' or 'gzip', not {compression!r}")


def is_gzip(path, compression: str | None = None) -> bool:
    """Whether `read_records` will treat the file as GZIP ('.gz' suffix or gzip magic bytes)."""
    path = os.fspath(path)
    want = _want_gzip(compression)
    if want is not None:
        return want
    if path.endswith(".gz"):
        return True
    with storage.open_file(path) as f:
        head = f.read(_HEADER_SIZE)
    if not head.startswith(_GZIP_MAGIC):
        return False
    # A plain file whose first length happens to begin 1f 8b: its header CRC tells them apart.
    if len(head) == _HEADER_SIZE:
        _, crc = _HEADER.unpack(head)
        if masked_crc(head[:8]) == crc:
            return False
    return True


class TFRecordWriter:
    """Writes TFRecord files byte-identical to `tf.io.TFRecordWriter`.

    compression: None (gzip if the path ends in '.gz'), '' (plain) or 'gzip'. GZIP output uses
    TF's zlib settings (level 6, memLevel 9, mtime 0) and comes out as a single gzip member.
    """

    def __init__(self, path, compression: str | None = None):
        self.path = os.fspath(path)
        gz = _want_gzip(compression)
        if gz is None:
            gz = self.path.endswith(".gz")
        self._file = open(self.path, "wb")
        self._zlib = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS, 9) if gz else None
        self.rows: list[tuple[int, int]] = []  # [data offset, data length], uncompressed
        self._offset = 0

    def write(self, record: bytes) -> None:
        record = bytes(record)
        self.rows.append((self._offset + _HEADER_SIZE, len(record)))
        self._offset += _HEADER_SIZE + len(record) + _FOOTER_SIZE
        length = struct.pack("<Q", len(record))
        for part in (length, _CRC.pack(masked_crc(length)), record, _CRC.pack(masked_crc(record))):
            self._file.write(self._zlib.compress(part) if self._zlib else part)

    def flush(self) -> None:
        """Pushes written records to the OS (plain files; a GZIP stream flushes on close)."""
        self._file.flush()

    def close(self) -> None:
        if self._file.closed:
            return
        if self._zlib:
            self._file.write(self._zlib.flush())
        self._file.close()

    def __enter__(self) -> "TFRecordWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# Errors the gzip module raises for a damaged or cut-off stream; we report them as corrupt records.
_GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


def _read_one(f, path: str, index: int, offset: int, verify_crc: bool, gz: bool) -> bytes | None:
    """The record at `offset` of the stream `f` is positioned at; None at a clean end of file."""
    def error(reason, **kw):
        return CorruptRecordError(path, index, offset, reason, decompressed=gz, **kw)

    try:
        header = f.read(_HEADER_SIZE)
        if not header:
            return None
        if len(header) < _HEADER_SIZE:
            raise error(f"expected a {_HEADER_SIZE}-byte header, file ends after {len(header)}",
                        truncated=True)
        length, length_crc = _HEADER.unpack(header)
        if masked_crc(header[:8]) != length_crc:
            raise error("length CRC mismatch (the record header is damaged; "
                        "no later record can be located)")
        data = f.read(length)
        footer = f.read(_FOOTER_SIZE)
    except _GZIP_ERRORS as e:
        raise error(f"gzip stream is damaged ({type(e).__name__}: {e})",
                    truncated=isinstance(e, EOFError)) from e
    if len(data) < length or len(footer) < _FOOTER_SIZE:
        got = (f"{len(data)} of them" if len(data) < length
               else f"{length} data bytes and {len(footer)} CRC bytes")
        raise error(f"expected {length} data bytes, file ends after {got}", truncated=True)
    if verify_crc:
        (stored,) = _CRC.unpack(footer)
        computed = masked_crc(data)
        if stored != computed:
            raise error(f"data CRC mismatch (stored {stored:#010x}, computed {computed:#010x}; "
                        f"data starts at byte offset {offset + _HEADER_SIZE}, length {length})",
                        next_offset=offset + _HEADER_SIZE + length + _FOOTER_SIZE)
    return data


def read_records(path, *, verify_crc: bool = True, skip_corrupt: bool = False,
                 stats: ReadStats | None = None, compression: str | None = None) -> Iterator[bytes]:
    """Yields the data of each record, checking both CRCs as TF does.

    The header (length) CRC is always checked: a garbled length would make us read garbage or
    allocate a huge buffer. verify_crc=False skips only the data CRC.

    skip_corrupt=True: a record whose data CRC fails is skipped (its length was sound, so the
    next record is still found); a bad header CRC or a cut-off file ends the file, since there
    is nothing to resync on. Either way the damage is counted in `stats`.
    compression: None detects gzip (see `is_gzip`); '' or 'gzip' force it.
    """
    path = os.fspath(path)
    stats = ReadStats() if stats is None else stats
    gz = is_gzip(path, compression)
    raw = storage.open_file(path) if storage.is_url(path) else open(path, "rb", buffering=_READ_BUFFER)
    with raw, (gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw) as f:
        index = offset = 0
        while True:
            try:
                data = _read_one(f, path, index, offset, verify_crc, gz)
            except CorruptRecordError as e:
                if not skip_corrupt:
                    raise
                if e.truncated:
                    stats.truncated += 1
                else:
                    stats.corrupt += 1
                stats.bad.append(str(e))
                if e.next_offset is None:
                    return
                index, offset = index + 1, e.next_offset
                continue
            if data is None:
                return
            stats.records += 1
            yield data
            index, offset = index + 1, offset + _HEADER_SIZE + len(data) + _FOOTER_SIZE


def _check_plain(path: str) -> None:
    if is_gzip(path):
        raise ValueError(
            f"{path} is gzip-compressed; random access needs uncompressed shards. "
            f"Decompress it (gunzip -k) or read it sequentially with read_records().")


def index_records(path, *, verify_crc: bool = True, partial: bool = False):
    """(n, 2) int64 [data_offset, data_length] of every record, for random access.

    Reads only the 12-byte headers and seeks over the data, so it is cheap even for big shards;
    verify_crc checks the header CRCs (data CRCs are checked by `read_record_at`).
    partial=True returns (rows before the damage, CorruptRecordError or None) instead of
    raising at a damaged header or a cut-off file (nothing after it can be located).
    """
    path = os.fspath(path)
    _check_plain(path)
    rows, error = _index_from(path, 0, storage.size(path), verify_crc, 0, _HINT_RANDOM_ACCESS)
    if partial:
        return rows, error
    if error is not None:
        raise error
    return rows


def index_records_resync(path, *, verify_crc: bool = True):
    """`index_records` that steps over damage instead of stopping there: after a damaged
    header it searches for the next intact one (its length CRC must match and its record fit
    the file, as must the one after it) and goes on. Returns (rows, record numbers, errors):
    each error is one stretch of the file that could not be read, counted as one lost record
    (a damaged header hides how many records its stretch held; usually one), and the records
    after it are numbered on from it. Errors carry no hint."""
    path = os.fspath(path)
    rows, numbers, errors, start = [], [], [], 0
    size = storage.size(path)
    while start < size:
        first = len(rows) + len(errors)
        part, error = _index_from(path, start, size, verify_crc, first, hint="")
        rows.extend(part.tolist())
        numbers.extend(range(first, first + len(part)))
        if error is None:
            break
        errors.append(error)
        start = None if error.truncated else _next_header(path, error.offset + 1, size)
        if start is None:
            break
    return (np.array(rows, dtype=np.int64).reshape(-1, 2), np.array(numbers, np.int64), errors)


def _index_from(path: str, offset: int, size: int, verify_crc: bool, first: int, hint: str):
    """(rows [data_offset, data_length] of the records from `offset` up to the first damage,
    the CorruptRecordError there, numbered on from `first`, or None)."""
    rows = []
    with storage.open_file(path) as f:
        while offset < size:
            f.seek(offset)
            header = f.read(_HEADER_SIZE)
            problem = truncated = None
            if len(header) < _HEADER_SIZE:
                problem = f"expected a {_HEADER_SIZE}-byte header, file ends after {len(header)}"
                truncated = True
            else:
                length, length_crc = _HEADER.unpack(header)
                end = offset + _HEADER_SIZE + length + _FOOTER_SIZE
                if verify_crc and masked_crc(header[:8]) != length_crc:
                    problem = "length CRC mismatch (the record header is damaged)"
                elif end > size:
                    have = min(length, size - offset - _HEADER_SIZE)
                    problem = f"expected {length} data bytes, file ends after {have} of them"
                    truncated = True
            if problem:
                return (np.array(rows, np.int64).reshape(-1, 2),
                        CorruptRecordError(path, first + len(rows), offset, problem,
                                           truncated=bool(truncated), hint=hint))
            rows.append((offset + _HEADER_SIZE, length))
            offset = end
    return np.array(rows, np.int64).reshape(-1, 2), None


def _valid_header(buf: bytes, at: int, offset: int, size: int) -> int | None:
    """The end of the record whose header is buf[at:at+12] (at file `offset`), None if the
    header's CRC fails or the record would not fit the file."""
    header = buf[at:at + _HEADER_SIZE]
    if len(header) < _HEADER_SIZE:
        return None
    length, crc = _HEADER.unpack(header)
    end = offset + _HEADER_SIZE + length + _FOOTER_SIZE
    return end if end <= size and masked_crc(header[:8]) == crc else None


def _next_header(path: str, start: int, size: int, chunk: int = 16 << 20) -> int | None:
    """The first offset >= start where an intact record header begins and the record after
    it is intact too (or the file ends there). Lengths below 2^32 (4 high bytes zero) are
    the candidates; their CRCs are checked one by one."""
    with storage.open_file(path) as f:
        pos = start
        while pos + _HEADER_SIZE <= size:
            f.seek(pos)
            buf = f.read(chunk + _HEADER_SIZE)
            a = np.frombuffer(buf, np.uint8)
            n = len(a) - _HEADER_SIZE + 1
            if n <= 0:
                return None
            zero = a == 0
            cand = np.flatnonzero(zero[4:4 + n] & zero[5:5 + n] & zero[6:6 + n] & zero[7:7 + n])
            for i in cand.tolist():
                end = _valid_header(buf, i, pos + i, size)
                if end is None:
                    continue
                if end == size:
                    return pos + i
                f.seek(end)
                if _valid_header(f.read(_HEADER_SIZE), 0, end, size) is not None:
                    return pos + i
            pos += n
    return None


def read_record_at(f: BinaryIO, offset: int, length: int, *, verify_crc: bool = True,
                   path: str = "", index: int = -1) -> bytes:
    """The data of one record from an index row (`offset` is the data offset).

    `path` and `index` only label errors. The file must be opened in binary mode. Reads with
    one positioned read (pread), so threads may share one open file.
    """
    return check_record_at(os.pread(f.fileno(), length + _FOOTER_SIZE, offset), offset, length,
                           verify_crc=verify_crc, path=path, index=index)


def check_record_at(buf: bytes, offset: int, length: int, *, verify_crc: bool = True,
                    path: str = "", index: int = -1) -> bytes:
    """The data of a record from the `length + 4` bytes read at its data `offset` (an index
    row), after checking that none are missing and (verify_crc) the data CRC."""
    return check_record(buf[:length], buf[length:], offset, length, verify_crc=verify_crc,
                        path=path, index=index)


def check_record(data: bytes, footer: bytes, offset: int, length: int, *,
                 verify_crc: bool = True, path: str = "", index: int = -1) -> bytes:
    """`check_record_at` for data and CRC footer read separately (no slice copy of the data)."""
    record_offset = offset - _HEADER_SIZE
    if len(data) < length or len(footer) < _FOOTER_SIZE:
        raise CorruptRecordError(path, index, record_offset,
                                 f"expected {length} data bytes at byte offset {offset}, "
                                 f"file ends after {len(data)} of them",
                                 truncated=True, hint=_HINT_RANDOM_ACCESS)
    if verify_crc:
        (stored,) = _CRC.unpack(footer)
        computed = masked_crc(data)
        if stored != computed:
            raise CorruptRecordError(
                path, index, record_offset,
                f"data CRC mismatch (stored {stored:#010x}, computed {computed:#010x}; "
                f"data starts at byte offset {offset}, length {length})",
                hint=_HINT_RANDOM_ACCESS)
    return data


# ------------------------------------------------------------------ sidecar index files
INDEX_SUFFIX = ".idx"


class IndexFileError(ValueError):
    """A sidecar index that is unreadable or does not match its shard (names both, says what
    to do)."""


def index_path(path: str) -> str:
    """The sidecar index of a shard: `<shard>.idx`, NVIDIA DALI's `tfrecord2idx` format (one
    line `<record offset> <record size>` per record, sizes including header and CRCs)."""
    return f"{path}{INDEX_SUFFIX}"


def index_text(rows: np.ndarray) -> str:
    """Index rows [data offset, data length] (from `index_records`) as sidecar text."""
    return "".join(f"{o - _HEADER_SIZE} {n + _HEADER_SIZE + _FOOTER_SIZE}\n" for o, n in rows)


def parse_index(text: str, shard: str, shard_size: int) -> np.ndarray:
    """Sidecar text -> rows [data offset, data length]; an index that does not tile the shard
    exactly (stale, or another shard's) is an error naming both files."""
    idx = index_path(shard)
    try:
        table = np.array([line.split() for line in text.splitlines() if line.strip()],
                         np.int64).reshape(-1, 2)
    except ValueError:
        raise IndexFileError(f"{idx}: not a TFRecord index (expected lines '<offset> <size>')") from None
    starts, sizes = table[:, 0], table[:, 1]
    ends = starts + sizes
    if (len(table) and (starts[0] != 0 or np.any(starts[1:] != ends[:-1])
                        or ends[-1] != shard_size or np.any(sizes < _HEADER_SIZE + _FOOTER_SIZE))) \
            or (not len(table) and shard_size):
        raise IndexFileError(f"{idx} does not describe {shard} ({shard_size} bytes): it is stale or "
                         f"belongs to another file; rebuild it with `strongaudio index {shard}` "
                         "or delete it")
    return np.stack([starts + _HEADER_SIZE, sizes - _HEADER_SIZE - _FOOTER_SIZE], 1)
