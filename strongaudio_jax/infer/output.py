"""Output shards that survive being killed: written under a temporary name, renamed when whole.

For an output shard `<dir>/<name>` the job keeps, in `<dir>/_inference/`:
  <name>.partial        the records written so far (a plain TFRecord)
  <name>.progress.json  how many input records those cover, the partial file's byte size and
                        the counts so far; written (atomically) only after the records it
                        describes are flushed and fsync'd
  <name>.stats.json     the shard's final counts (what the job summary adds up)
A restart truncates the partial file to the size its progress file records and carries on
from the next input record, so a record is never written twice or lost, and the bytes come
out as those of an uninterrupted run (the labels of a record depend on that record alone).
When the shard is complete the partial file is renamed to `<dir>/<name>` and its `.idx`
sidecar is written; a shard is finished when both exist. The folder `_inference/` is not
matched by the training pipeline's `<dir>/*.tfrecord` globs.
"""

from __future__ import annotations

import json
import os
import struct

from strongaudio_jax.config import ConfigError
from strongaudio_jax.data import index as index_lib, storage, tfrecord

WORK = "_inference"


def _frame(record: bytes) -> bytes:
    length = struct.pack("<Q", len(record))
    return b"".join((length, struct.pack("<I", tfrecord.masked_crc(length)), record,
                     struct.pack("<I", tfrecord.masked_crc(record))))


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def check_output_dir(out_dir: str) -> None:
    if storage.is_url(out_dir):
        raise ConfigError(f"output.dir={out_dir!r}: inference writes to a local (or mounted) "
                         "folder, where a half-done shard can be resumed; copy the finished "
                         "shards to the bucket afterwards (gsutil -m cp / gcloud storage cp)")
    if not out_dir:
        raise ConfigError("output.dir is empty: give the folder to write the labelled shards to")
    os.makedirs(os.path.join(out_dir, WORK), exist_ok=True)


class ShardOutput:
    """The output of one shard: finished, or resumable from its progress file."""

    def __init__(self, out_dir: str, name: str):
        self.final = os.path.join(out_dir, name)
        work = os.path.join(out_dir, WORK)
        self.partial = os.path.join(work, name + ".partial")
        self.progress_path = os.path.join(work, name + ".progress.json")
        self.stats_path = os.path.join(work, name + ".stats.json")
        self._file = None

    def finished(self) -> bool:
        if os.path.exists(self.final) and os.path.exists(self.stats_path):
            if not os.path.exists(tfrecord.index_path(self.final)):  # killed before its index
                index_lib.write_sidecar(self.final)
            return True
        return False

    def stats(self) -> dict:
        with open(self.stats_path) as f:
            return json.load(f)

    def open(self, provenance: dict) -> dict:
        """Opens for appending; returns the progress so far ({"done": 0, ...} when new)."""
        progress = {"done": 0, "bytes": 0, "counts": {}}
        if os.path.exists(self.progress_path) and os.path.exists(self.partial):
            with open(self.progress_path) as f:
                progress = json.load(f)
            if progress.get("provenance") not in (None, provenance):
                raise ConfigError(
                    f"{self.partial} was begun by another model or decoding setting "
                    f"({progress['provenance']}), not {provenance}; delete it and "
                    f"{self.progress_path} to start that shard again, or use another output.dir")
        self._file = open(self.partial, "r+b" if progress["done"] else "wb")
        self._file.truncate(progress["bytes"])  # drop what the killed run wrote past it
        self._file.seek(progress["bytes"])
        progress["provenance"] = provenance
        return progress

    def append(self, records: list[bytes], progress: dict) -> None:
        """Writes records, makes them durable, then records the progress that covers them."""
        for r in records:
            self._file.write(_frame(r))
        self._file.flush()
        os.fsync(self._file.fileno())
        progress["bytes"] = self._file.tell()
        _write_json(self.progress_path, progress)

    def finish(self, stats: dict) -> None:
        self._file.close()
        os.replace(self.partial, self.final)
        index_lib.write_sidecar(self.final)
        _write_json(self.stats_path, stats)
        os.remove(self.progress_path)

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
