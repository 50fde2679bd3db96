"""What an inference job reads: schema-v1 shards, or a folder of audio (with an optional
CSV/JSONL manifest, the folder importer's format) cut into virtual shards.

Each input shard becomes one output shard of the same name, so the job's unit of work,
restart and host assignment is the shard. Records are read by index row (CRC-checked, a
GZIP shard through a plain cached copy: data/index.py), so a half-done shard resumes at any
record. A record that cannot be used raises `BadRecord`, naming it and giving a short
reason for the summary's failure counts.

`read(i)` may be called from several threads at once (the engine decodes in a thread pool,
engine.py): a shard's record reader is shared under a lock, folder files are read apiece.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from typing import Callable, Sequence

from strongaudio_jax.config import ConfigError
from strongaudio_jax.data import importers, index as index_lib, pipeline, schema, tfrecord


class BadRecord(ValueError):
    """An input record that cannot be labelled; `reason` keys the summary's failure counts."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(eq=False)
class InputShard:
    """One unit of work: `count` records, read one by one with `read(i)`."""

    name: str  # the output shard's file name
    source: str  # what it was read from (logs, errors)
    count: int
    _read: Callable[[int], schema.Clip]
    damaged: str = ""  # (skip_bad) damage that hid the records after `count`

    def read(self, i: int) -> schema.Clip:
        return self._read(i)


def _shard_name(path: str) -> str:
    name = os.path.basename(path.rstrip("/"))
    for suffix in (".gz", ".GZ"):
        if name.endswith(suffix):
            name = name[:-len(suffix)]
    return name if name.endswith(".tfrecord") else name + ".tfrecord"


def tfrecord_shards(files: Sequence[str], *, verify_crc: bool = True, skip_bad: bool = False,
                    cache_dir: str | None = None) -> list[InputShard]:
    """One InputShard per file (plain or GZIP TFRecord, local or a bucket)."""
    names = [_shard_name(p) for p in files]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"input shards {dup[0]!r} appear twice (in different folders?); each "
                         "input shard must have its own file name, as it names the output shard")
    out = []
    for path, name in zip(files, names):
        idx = index_lib.build_index([path], verify_crc=verify_crc, skip_bad=skip_bad,
                                    cache_dir=cache_dir)
        out.append(InputShard(name, path, len(idx), _record_reader(idx, verify_crc),
                              damaged="; ".join(idx.damaged)))
    return out


def _record_reader(idx: index_lib.RecordIndex, verify_crc: bool) -> Callable[[int], schema.Clip]:
    reader = None
    lock = threading.Lock()  # the engine's decode threads share the reader's open files

    def read(i: int) -> schema.Clip:
        nonlocal reader
        where = f"{idx.paths[0]} record {i}"
        try:
            with lock:
                if reader is None:  # opened on first use: other hosts' shards open no files
                    reader = index_lib.RecordReader(idx, verify_crc)
                data = reader.read(i)
        except tfrecord.CorruptRecordError as e:
            raise BadRecord(str(e), "corrupt_record") from e
        try:
            return schema.example_to_clip(data, where)
        except schema.SchemaError as e:
            raise BadRecord(str(e), "bad_record") from e
    return read


def folder_shards(root: str, manifest: str = "", clips_per_shard: int = 1000,
                  prefix: str = "folder") -> list[InputShard]:
    """A folder of audio files (or the rows of a CSV/JSONL manifest, as `import_folder.py`
    reads them) cut into virtual shards of `clips_per_shard` clips, in sorted order."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"input.audio_folder {root!r} is not a folder")
    items = importers.folder_items(root, manifest or None)
    if not items:
        raise FileNotFoundError(f"input.audio_folder {root!r} holds no audio files "
                                f"({', '.join(importers.AUDIO_SUFFIXES)})")
    n = math.ceil(len(items) / clips_per_shard)
    out = []
    for s in range(n):
        chunk = items[s * clips_per_shard:(s + 1) * clips_per_shard]

        def read(i: int, chunk=chunk) -> schema.Clip:
            try:
                return chunk[i].load()
            except (importers.ImportErrorWithPlace, OSError) as e:
                raise BadRecord(str(e), "unreadable_file") from e
        out.append(InputShard(f"{prefix}-{s:05d}-of-{n:05d}.tfrecord", f"{root} clips "
                              f"{s * clips_per_shard}..", len(chunk), read))
    return out


def from_config(cfg) -> list[InputShard]:
    """The job's input shards (all hosts'): `input.files` globs or `input.audio_folder`."""
    inp = cfg.input
    if bool(inp.files) == bool(inp.audio_folder):
        raise ConfigError("set exactly one of input.files (schema-v1 shards, globs) and "
                         "input.audio_folder (a folder of audio files)")
    if inp.audio_folder:
        return folder_shards(inp.audio_folder, inp.manifest, inp.clips_per_shard)
    files = pipeline.expand_paths(list(inp.files) if isinstance(inp.files, (list, tuple))
                                  else inp.files.split(","))
    return tfrecord_shards(files, verify_crc=inp.verify_crc, skip_bad=inp.skip_bad)


def host_shards(shards: Sequence[InputShard], process_index: int,
                process_count: int) -> list[InputShard]:
    """This host's shards: every `process_count`-th one, so hosts never share a shard."""
    return list(shards[process_index::process_count])
