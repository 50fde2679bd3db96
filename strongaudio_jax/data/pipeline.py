"""Input pipeline: shards (local or gs:// / s3://) -> decoded, cropped, batched numpy -> global arrays.

Training order (docs/data.md has the whole story):
  1. each corpus's shard files are indexed once (TFRecord headers; GZIP files via a cached
     plain copy; ArrayRecord natively);
  2. hosts split the files between them (whole files, balanced by record count), or the
     records when there are fewer files than hosts;
  3. each host draws rows from its corpora with the configured mixing weights, and from each
     corpus in a fresh global shuffle of its share every epoch;
  4. worker processes decode whole batches (FLAC/WAV/OGG; mono; resampled if allowed; random
     crop or zero-pad with the valid length) straight into shared memory;
  5. `parallel.mesh.global_batch` places them as global `jax.Array`s on the mesh.
Everything is a pure function of (seed, batch number, draw counts): the iterator state saved
in the checkpoint resumes at the identical next batch.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Iterator, Mapping, Sequence

import jax
import numpy as np

from strongaudio_jax.config import ConfigError
from strongaudio_jax.data import batcher, buckets as buckets_lib, index as index_lib, loader, schema
from strongaudio_jax.data import storage, tfrecord
from strongaudio_jax.data.featurize import Featurizer  # noqa: F401 (re-exported)

SHARD_SUFFIXES = ("*.tfrecord*", "*.array_record")


def expand_paths(pattern: str | Sequence[str]) -> list[str]:
    """Glob patterns (or a directory's shards) into a sorted file list; errors if empty.
    Patterns may be local paths or URLs (gs://, s3://, memory://)."""
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    paths: list[str] = []
    for p in patterns:
        p = os.path.expanduser(p)
        if storage.isdir(p):
            found = sorted(f for s in SHARD_SUFFIXES for f in storage.glob(storage.join(p, s)))
        else:
            found = storage.glob(p)
        found = [f for f in found if not f.endswith(tfrecord.INDEX_SUFFIX)]  # sidecar indexes
        if not found:
            raise FileNotFoundError(f"no TFRecord files match {p!r} (nor ArrayRecord); check the data "
                                    "paths in the config (data.train_files / data.mix / "
                                    "data.eval_files)")
        paths.extend(found)
    return paths


def mixture(data_cfg) -> dict[str, tuple[list[str], float]]:
    """{corpus name: (files, weight)} from the config: `data.mix` when set, else one corpus
    of `data.train_files` with weight 1."""
    mix = data_cfg.get("mix") or {}
    if not mix:
        return {"train": (expand_paths(data_cfg.train_files), 1.0)}
    out = {}
    for name, entry in dict(mix).items():
        try:
            files, weight = entry["files"], float(entry["weight"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"data.mix.{name} must be dict(files=<glob or list>, weight=<number>), "
                             f"not {entry!r}") from None
        if not weight > 0:
            raise ValueError(f"data.mix.{name}.weight must be > 0, not {weight}")
        out[name] = (expand_paths(files), weight)
    return out


def featurizer_from_config(cfg, vocab: Mapping[str, int] | Sequence[str], train: bool = True,
                           extra=None, clip_seconds: float | None = None) -> Featurizer:
    """The Featurizer of a config's data section (data.sample_rate, data.clip_seconds,
    data.resample). train: random crops (else each clip's first clip_seconds, as evaluation
    reads them). vocab: tag -> output index, or the tags in output order (a tag listed twice
    trains its first output). extra: e.g. `text_fields.from_config(cfg, fields)`.
    clip_seconds: another clip length than data.clip_seconds (e.g. probe.clip_seconds)."""
    if not isinstance(vocab, Mapping):
        index: dict[str, int] = {}
        for i, t in enumerate(vocab):
            index.setdefault(t, i)
        vocab = index
    data = cfg.data
    return Featurizer(vocab=vocab, sample_rate=data.sample_rate,
                      clip_samples=int((clip_seconds or data.clip_seconds) * data.sample_rate),
                      random_crop=train,
                      extra=extra, resample=bool(data.get("resample", False)))


def host_rows(idx: index_lib.RecordIndex, process_index: int, process_count: int,
              name: str = "train") -> np.ndarray:
    """This host's rows of a corpus index.

    At least as many files as hosts: whole files per host (disjoint files, so each host opens
    only its own), assigned greedily largest-first to the host with the fewest records so far
    (ties: lower number), which every host computes identically. Fewer files than hosts: every
    host reads every file and takes every `process_count`-th record.
    """
    counts = idx.records_per_file()
    if len(counts) >= process_count:
        load = np.zeros(process_count, np.int64)
        owner = np.zeros(len(counts), np.int64)
        for f in sorted(range(len(counts)), key=lambda f: (-counts[f], f)):
            owner[f] = int(np.argmin(load))
            load[owner[f]] += counts[f]
        rows = np.flatnonzero(owner[idx.rows[:, 0]] == process_index)
    else:
        rows = np.arange(len(idx))[process_index::process_count]
    if len(rows) == 0:
        raise ValueError(f"corpus {name!r} leaves no records for process {process_index} of "
                         f"{process_count} ({len(idx)} records in {len(counts)} files)")
    return rows


def train_dataset(files: Sequence[str] | Mapping[str, tuple[Sequence[str], float]],
                  featurizer: Featurizer, batch_size: int, seed: int, verify_crc: bool = True,
                  workers: int = 0, *, skip_bad: bool = False, wave_dtype: str = "int16",
                  cache_dir: str | None = None, bucketing: Mapping | None = None
                  ) -> loader.BatchDataset:
    """Endless stream of this host's batches (batch_size is the global batch).

    files: one corpus's shard paths, or {name: (paths, weight)} to mix several corpora.
    workers > 0 decodes in that many processes ahead of the train step; 0 decodes in this
    process on demand (simplest to debug). skip_bad: bad records become masked rows
    (valid=False) and are counted by reason instead of raising. wave_dtype 'int16' halves the
    bytes moved (the model divides by 32768 on device); 'float32' gives the same values as floats.
    bucketing: whole clips batched by duration instead of fixed crops of batch_size (see
    data/buckets.py): dict(seconds=<bucket lengths>, max_batch_seconds=<budget>,
    long_clips='error'|'skip'|'crop', multiple=<data-parallel size>); `bucketing_from_config`.
    """
    count, me = jax.process_count(), jax.process_index()
    if batch_size % count:
        raise ConfigError(f"data.batch_size={batch_size} is not divisible by {count} processes")
    if not isinstance(files, Mapping):
        files = {"train": (list(files), 1.0)}
    corpora = []
    for name, (paths, _) in files.items():
        idx = index_lib.build_index(list(paths), verify_crc=verify_crc, skip_bad=skip_bad,
                                    cache_dir=cache_dir)
        corpora.append(batcher.Corpus(name, idx, host_rows(idx, me, count, name)))
    if bucketing is not None:
        if len(corpora) != 1:
            raise ConfigError("data.batching='duration_buckets' reads one corpus (data.train_files); "
                              "data.mix is not supported with it yet: merge the corpora's files "
                              "into data.train_files, or use data.batching='crops'")
        corpora, bspec, long_counts = _bucket_corpora(corpora[0], featurizer, bucketing, seed,
                                                      verify_crc, skip_bad, count, cache_dir)
        spec = batcher.BatchSpec(corpora, np.full(len(corpora), 1.0 / len(corpora)), seed,
                                 max(bspec.host_batch), featurizer, wave_dtype, verify_crc,
                                 skip_bad, buckets=bspec, long_clips=long_counts)
        return loader.BatchDataset(spec, workers, process_index=me, process_count=count)
    total = sum(len(c.rows) for c in corpora)
    if len(files) == 1 and total < batch_size // count:
        raise ConfigError(f"{corpora[0].name}: {total} records on this host, fewer than one "
                          f"batch ({batch_size // count}); lower data.batch_size or add data")
    weights = np.array([w for _, w in files.values()], np.float64)
    spec = batcher.BatchSpec(corpora, weights / weights.sum(), seed, batch_size // count,
                             featurizer, wave_dtype, verify_crc, skip_bad)
    return loader.BatchDataset(spec, workers, process_index=me, process_count=count)


def bucketing_from_config(data_cfg, multiple: int) -> dict | None:
    """train_dataset's `bucketing` from data.batching / data.buckets / data.max_batch_seconds /
    data.long_clips (None for data.batching='crops', the default). multiple: the data-parallel
    size, which every bucket's global batch must be a multiple of."""
    how = data_cfg.get("batching", "crops")
    if how == "crops":
        return None
    if how != "duration_buckets":
        raise ConfigError(f"data.batching={how!r}: use 'crops' (fixed-length crops of "
                          "data.clip_seconds) or 'duration_buckets' (whole clips by duration)")
    long_clips = data_cfg.get("long_clips", "error")
    if long_clips not in buckets_lib.LONG_CLIPS:
        raise ConfigError(f"data.long_clips={long_clips!r}: use one of "
                          f"{', '.join(buckets_lib.LONG_CLIPS)}")
    try:
        seconds = buckets_lib.check_lengths(data_cfg.get("buckets") or ())
    except buckets_lib.BucketConfigError as e:
        raise ConfigError(str(e)) from None
    budget = float(data_cfg.get("max_batch_seconds") or 0)
    if not budget > 0:
        raise ConfigError("data.batching='duration_buckets' needs data.max_batch_seconds (seconds "
                          "of audio per global batch, e.g. 600)")
    return dict(seconds=seconds, max_batch_seconds=budget, long_clips=long_clips,
                multiple=int(multiple))


def _bucket_corpora(corpus: batcher.Corpus, featurizer: Featurizer, bucketing: Mapping, seed: int,
                    verify_crc: bool, skip_bad: bool, count: int, cache_dir: str | None):
    """This host's rows of `corpus` split by duration bucket (one Corpus per bucket), the
    Buckets (with clip counts summed over all hosts, so every host draws the same schedule)
    and this host's long-clip counts."""
    rate = featurizer.sample_rate
    seconds = tuple(bucketing["seconds"])
    samples = tuple(int(round(s * rate)) for s in seconds)
    multiple = int(np.lcm(int(bucketing["multiple"]), count))
    try:
        sizes = buckets_lib.batch_sizes(seconds, bucketing["max_batch_seconds"], multiple)
    except buckets_lib.BucketConfigError as e:
        raise ConfigError(str(e)) from None
    lengths = buckets_lib.clip_samples(corpus.index, corpus.rows, rate, verify_crc, skip_bad,
                                       cache_dir)
    long_clips = bucketing["long_clips"]
    which = buckets_lib.assign(lengths, samples, long_clips)
    n_long = int((lengths > samples[-1]).sum())
    local = np.array([n_long] + [int((which == j).sum()) for j in range(len(seconds))], np.int64)
    if count > 1:  # every host must weigh the buckets alike: sum the counts over the hosts
        from jax.experimental import multihost_utils

        local = np.asarray(multihost_utils.process_allgather(local)).reshape(count, -1).sum(0)
    if long_clips == "error" and local[0]:
        raise ConfigError(
            f"{corpus.name}: {int(local[0])} clip(s) are longer than the last duration bucket "
            f"({seconds[-1]:g} s, data.buckets; e.g. one of {lengths.max() / rate:.1f} s on this "
            "host): add a longer bucket, or set data.long_clips='skip' (leave them out) or "
            "'crop' (a random crop of the last bucket's length); either is counted")
    bspec = buckets_lib.Buckets(seconds, samples, sizes, count, long_clips,
                                tuple(int(c) for c in local[1:]))
    bspec.probabilities()  # raises when no clip fits any bucket
    corpora = [batcher.Corpus(f"{corpus.name}[{s:g}s]", corpus.index, corpus.rows[which == j])
               for j, s in enumerate(seconds)]
    key = "long_clip_cropped" if long_clips == "crop" else "long_clip_skipped"
    return corpora, bspec, ({key: n_long} if n_long else {})


def _indexes(ds: loader.BatchDataset) -> list:
    """The record indexes of a stream's corpora, once each (duration buckets share one)."""
    return list({id(c.index): c.index for c in ds.spec.corpora}.values())


def damaged_at_indexing(ds: loader.BatchDataset) -> list[str]:
    """Damage found while indexing (skip_bad=True only): the records after it are skipped."""
    return [m for index in _indexes(ds) for m in index.damaged]


def remote_shards_scanned(ds: loader.BatchDataset) -> list[str]:
    """Shards in a bucket indexed by reading all their headers (no `<shard>.idx`): slow starts."""
    return [p for index in _indexes(ds) for p in index.scanned if storage.is_url(p)]


def waveform_to_float(batch: Mapping) -> dict:
    """The batch with an int16 waveform as float32 (int16 / 32768, as soundfile decodes);
    float waveforms pass through. Runs inside the jitted step, on the device."""
    import jax.numpy as jnp

    wave = batch["waveform"]
    if wave.dtype == jnp.int16:
        wave = wave.astype(jnp.float32) * (1.0 / 32768.0)
    return {**batch, "waveform": wave}


class BadData:
    """The bad-data policy of every pass over the records (vocabulary, statistics, evaluation;
    training's is `batcher.BatchFiller`): strict (skip=False) raises the record's own error,
    which names file, record number and reason; skip=True (data.skip_bad) skips the record and
    counts it by reason (`batcher.BAD_REASONS`), damage found while indexing included."""

    def __init__(self, skip: bool = False):
        self.skip = skip
        self.counts: collections.Counter = collections.Counter()
        self.messages: list[str] = []  # the first few

    def handle(self, e: Exception) -> None:
        """Call in an `except` block: re-raises `e` unless it is bad data to skip."""
        reason = batcher.bad_reason(e)
        if reason is None or not self.skip:
            raise e
        self.count(reason, str(e))

    def count(self, reason: str, message: str) -> None:
        self.counts[reason] += 1
        if len(self.messages) < 3:
            self.messages.append(message)

    def summary(self) -> str:
        """One line for the logs ('' when nothing was skipped)."""
        if not self.counts:
            return ""
        return (f"data.skip_bad: skipped {sum(self.counts.values())} bad record(s) "
                f"{dict(self.counts)}, e.g. {self.messages[0]}")


def records(files: Sequence[str], verify_crc: bool = True, bad: BadData | None = None
            ) -> Iterator[tuple[bytes, str]]:
    """(record bytes, 'file record i') of every record of `files` once, in file order; bad
    ones raise or are counted in `bad` (see BadData)."""
    bad = bad or BadData()
    idx = index_lib.build_index(list(files), verify_crc=verify_crc, skip_bad=bad.skip)
    bad.counts.update(idx.lost)  # damage found while indexing (skip_bad only)
    bad.messages = (bad.messages + idx.damaged)[:3]
    reader = index_lib.RecordReader(idx, verify_crc)
    try:
        for row in range(len(idx)):
            try:
                data = reader.read(row)
            except Exception as e:  # noqa: BLE001 (bad data is counted or re-raised)
                bad.handle(e)
                continue
            yield data, reader.where(row)
    finally:
        reader.close()


def clips(files: Sequence[str], verify_crc: bool = True, bad: BadData | None = None
          ) -> Iterator[schema.Clip]:
    """The parsed clip (audio left encoded) of every record of `files` once, in file order;
    bad records raise, or with `bad` skipping are counted there and left out (see BadData)."""
    bad = bad or BadData()
    for data, where in records(files, verify_crc, bad):
        try:
            clip = schema.example_to_clip(data, where)
        except Exception as e:  # noqa: BLE001 (bad data is counted or re-raised)
            bad.handle(e)
            continue
        yield clip


class TFRecordSource:
    """Random access over the records of several shard files: (record bytes, 'file record i')."""

    def __init__(self, paths: Sequence[str], verify_crc: bool = True, bad: BadData | None = None):
        """With `bad` skipping, damage found while indexing is counted there and the records
        after it are left out (see BadData)."""
        skip = bad is not None and bad.skip
        idx = index_lib.build_index(list(paths), verify_crc=verify_crc, skip_bad=skip)
        if skip:
            bad.counts.update(idx.lost)
            bad.messages = (bad.messages + idx.damaged)[:3]
        self._reader = index_lib.RecordReader(idx, verify_crc)

    def __len__(self) -> int:
        return len(self._reader.index)

    def __getitem__(self, i: int) -> tuple[bytes, str]:
        i = i % len(self)
        return self._reader.read(i), self._reader.where(i)

    def __repr__(self) -> str:
        return f"TFRecordSource({len(self._reader.index.paths)} files, {len(self)} records)"


def eval_batches(files: Sequence[str], featurizer: Featurizer, batch_size: int,
                 verify_crc: bool = True, bad: BadData | None = None
                 ) -> Iterator[tuple[dict, list[schema.Clip]]]:
    """Every record once, in file order, in fixed-size batches; the last is padded and
    its padding rows have valid=False. Yields (batch, clips) so labels stay at hand. Bad
    records raise, or with `bad` skipping are left out and counted."""
    bad = bad or BadData()
    rows, clips = [], []
    for record in records(files, verify_crc, bad):
        try:
            row, clip = featurizer(record), schema.example_to_clip(*record)
        except Exception as e:  # noqa: BLE001 (bad data is counted or re-raised)
            bad.handle(e)
            continue
        rows.append(row)
        clips.append(clip)
        if len(rows) == batch_size:
            yield {k: np.stack([r[k] for r in rows]) for k in rows[0]}, clips
            rows, clips = [], []
    if rows:
        n = len(rows)
        rows += [{**rows[0], "valid": np.False_}] * (batch_size - n)
        yield {k: np.stack([r[k] for r in rows]) for k in rows[0]}, clips


def tag_vocabulary(files: Sequence[str], min_count: int = 1, *, verify_crc: bool = True,
                   bad: BadData | None = None) -> list[str]:
    """Tags of a corpus by descending document frequency (ties alphabetical). Bad records
    raise, or with `bad` skipping (data.skip_bad) are counted and left out."""
    bad = bad or BadData()
    counts: dict[str, int] = {}
    for data, where in records(files, verify_crc, bad):
        try:
            tags = schema.example_to_training_fields(data, where)[3]
        except Exception as e:  # noqa: BLE001 (bad data is counted or re-raised)
            bad.handle(e)
            continue
        for t in set(tags):
            counts[t] = counts.get(t, 0) + 1
    return sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))


def load_vocabulary(path: str) -> list[str]:
    """A UTS vocabulary file as released (`label_K.json`: {"0": "tag", "1": ...})."""
    with storage.open_file(path) as f:
        try:
            table = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not a JSON vocabulary file ({e}); expected "
                             "{\"0\": tag, \"1\": tag, ...} as in the released UTS "
                             "label_K.json files") from None
    try:
        return [table[str(i)] for i in range(len(table))]
    except (KeyError, TypeError):
        raise ValueError(f"{path} is not a vocabulary file: expected {{\"0\": tag, \"1\": tag, ...}} "
                         "with consecutive indices") from None
