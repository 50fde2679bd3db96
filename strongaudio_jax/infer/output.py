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

An output.dir in a bucket (gs://, s3://: anything data/storage.py reaches) cannot be appended
to, so the partial file and its progress file stay on this host, in
`$STRONGAUDIO_CACHE/inference_output/<hash of output.dir>/`, and a shard goes to the bucket
when it is complete: the shard, then its `.idx`, then `<dir>/_inference/<name>.stats.json`
(each object appears whole; a shard counts as finished once its stats are there). A job
restarted on the same host resumes a half-done shard; on another host (a new VM) that shard
starts again, with the same bytes as a result.
"""

from __future__ import annotations

import hashlib
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


def work_dir(out_dir: str) -> str:
    """Where partial shards and progress files go: <out_dir>/_inference, or for a bucket a
    folder of this host's (see the module's docstring)."""
    if not storage.is_url(out_dir):
        return os.path.join(out_dir, WORK)
    key = hashlib.sha1(out_dir.rstrip("/").encode()).hexdigest()[:16]
    return os.path.join(index_lib.default_cache_dir(), "inference_output", key)


def check_output_dir(out_dir: str) -> None:
    if not out_dir:
        raise ConfigError("output.dir is empty: give the folder to write the labelled shards to")
    storage.makedirs(out_dir)  # (for a URL: checks that a filesystem reaches it)
    os.makedirs(work_dir(out_dir), exist_ok=True)


class ShardOutput:
    """The output of one shard: finished, or resumable from its progress file."""

    def __init__(self, out_dir: str, name: str):
        self.final = storage.join(out_dir, name)
        self.remote = storage.is_url(out_dir)
        work = work_dir(out_dir)
        self.partial = os.path.join(work, name + ".partial")
        self.progress_path = os.path.join(work, name + ".progress.json")
        self.stats_path = storage.join(storage.join(out_dir, WORK), name + ".stats.json")
        self._file = None

    def finished(self) -> bool:
        if storage.exists(self.final) and storage.exists(self.stats_path):
            if not storage.exists(tfrecord.index_path(self.final)):  # killed before its index
                index_lib.write_sidecar(self.final)
            return True
        return False

    def stats(self) -> dict:
        return json.loads(storage.read_text(self.stats_path))

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
        if self.remote:  # shard, index, stats: each object appears whole, in this order
            index_lib.write_sidecar(self.partial)
            storage.copy(self.partial, self.final)
            storage.copy(tfrecord.index_path(self.partial), tfrecord.index_path(self.final))
            storage.write_text(self.stats_path, json.dumps(stats, indent=1, sort_keys=True))
            os.remove(tfrecord.index_path(self.partial))
            os.remove(self.partial)
        else:
            os.replace(self.partial, self.final)
            index_lib.write_sidecar(self.final)
            _write_json(self.stats_path, stats)
        os.remove(self.progress_path)

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
