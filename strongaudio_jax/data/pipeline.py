"""Grain pipeline: TFRecord shards -> decoded, cropped, batched numpy -> global arrays.

Training order: shard files are indexed once (headers only), records are globally
shuffled with a seed (a new permutation each epoch), split across hosts by
`jax.process_index()`, decoded and randomly cropped with per-record RNG streams, then
batched. Everything is a pure function of (seed, step), which is what makes the Grain
iterator state in the checkpoint sufficient for an exact resume.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Callable, Iterator, Mapping, Sequence

import grain
import jax
import numpy as np

from strongaudio_jax.data import audio, schema, tfrecord


def expand_paths(pattern: str | Sequence[str]) -> list[str]:
    """Glob patterns (or a directory's *.tfrecord*) into a sorted file list; errors if empty."""
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    paths: list[str] = []
    for p in patterns:
        p = os.path.expanduser(p)
        if os.path.isdir(p):
            p = os.path.join(p, "*.tfrecord*")
        found = sorted(glob.glob(p))
        if not found:
            raise FileNotFoundError(f"no TFRecord files match {p!r}; check the data path in the "
                                    "config (data.train_files / data.eval_files)")
        paths.extend(found)
    return paths


class TFRecordSource:
    """Random access over the records of several TFRecord files (a Grain data source).

    Plain files are indexed by reading headers only and read with one seek per record.
    GZIP files cannot be seeked, so they are decompressed into memory at start-up.
    """

    def __init__(self, paths: Sequence[str], verify_crc: bool = True):
        self._paths = list(paths)
        self._verify = verify_crc
        self._in_memory: dict[int, list[bytes]] = {}
        rows = []
        for fi, path in enumerate(self._paths):
            if tfrecord.is_gzip(path):
                recs = list(tfrecord.read_records(path, verify_crc=verify_crc))
                self._in_memory[fi] = recs
                rows.append(np.stack([np.full(len(recs), fi), np.arange(len(recs)),
                                      np.arange(len(recs)), np.zeros(len(recs))], 1))
            else:
                idx = tfrecord.index_records(path, verify_crc=verify_crc)
                rows.append(np.concatenate([np.full((len(idx), 1), fi), np.arange(len(idx))[:, None],
                                            idx], 1))
        self._rows = np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 4), np.int64)
        self._files: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> tuple[bytes, str]:
        fi, ri, offset, length = (int(v) for v in self._rows[i % len(self._rows)])
        where = f"{self._paths[fi]} record {ri}"
        if fi in self._in_memory:
            return self._in_memory[fi][ri], where
        f = self._files.get(fi)
        if f is None:
            f = self._files[fi] = open(self._paths[fi], "rb")
        return tfrecord.read_record_at(f, offset, length, verify_crc=self._verify,
                                       path=self._paths[fi], index=ri), where

    def __getstate__(self):  # open files do not cross process boundaries
        return {**self.__dict__, "_files": {}}

    def __repr__(self) -> str:
        return f"TFRecordSource({len(self._paths)} files, {len(self)} records)"


@dataclasses.dataclass(frozen=True)
class Featurizer:
    """Record bytes -> model inputs: waveform crop, its valid length, multi-hot tags.

    `extra` (optional) maps the parsed clip to more fixed-shape numpy arrays (e.g. tokenised
    caption text for text objectives); they are merged into each row under their own keys.
    It must be picklable (a module-level function or a dataclass) to run in worker processes.
    """

    vocab: Mapping[str, int]
    sample_rate: int
    clip_samples: int
    random_crop: bool
    extra: Callable[[schema.Clip], dict[str, np.ndarray]] | None = None

    def __call__(self, record: tuple[bytes, str], rng: np.random.Generator | None = None) -> dict:
        data, where = record
        clip = schema.example_to_clip(data, where)
        if clip.sample_rate != self.sample_rate:
            raise audio.AudioDecodeError(
                f"{where} (clip {clip.id!r}): sample rate {clip.sample_rate} Hz, but the config "
                f"expects {self.sample_rate} Hz (data.sample_rate); resample the corpus")
        wave, _ = audio.decode(clip.audio, f"{where} (clip {clip.id!r})")
        start = 0
        if len(wave) > self.clip_samples and self.random_crop:
            start = int(rng.integers(0, len(wave) - self.clip_samples + 1))
        wave = wave[start:start + self.clip_samples]
        out = np.zeros(self.clip_samples, np.float32)
        out[:len(wave)] = wave
        tags = np.zeros(len(self.vocab), np.float32)
        for t in clip.tags:
            if t in self.vocab:
                tags[self.vocab[t]] = 1.0
        row = {"waveform": out, "length": np.int32(len(wave)), "tags": tags, "valid": np.True_}
        if self.extra is not None:
            more = self.extra(clip)
            clash = set(more) & set(row)
            if clash:
                raise ValueError(f"Featurizer.extra returned keys {sorted(clash)} that the "
                                 f"featurizer already fills; rename them")
            row.update(more)
        return row


def train_dataset(files: Sequence[str], featurizer: Featurizer, batch_size: int, seed: int,
                  verify_crc: bool = True, workers: int = 0) -> grain.IterDataset:
    """Infinite shuffled stream of per-host batches (batch_size is the global batch).

    workers > 0 decodes in that many processes ahead of the train step; 0 decodes in this
    process on demand (simplest to debug; enough for small models)."""
    count = jax.process_count()
    if batch_size % count:
        raise ValueError(f"global batch size {batch_size} is not divisible by {count} processes")
    source = TFRecordSource(files, verify_crc)
    if len(source) < batch_size:
        raise ValueError(f"{source} holds fewer records than one batch ({batch_size})")
    ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat(None)
    ds = ds[jax.process_index()::count]
    ds = ds.random_map(featurizer, seed=seed)
    ds = ds.batch(batch_size // count, drop_remainder=True).to_iter_dataset()
    if workers > 0:
        # Grain's workers read absl flags, which a plain script never parses (grain#1355).
        from absl import flags
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return ds


def eval_batches(files: Sequence[str], featurizer: Featurizer, batch_size: int,
                 verify_crc: bool = True) -> Iterator[tuple[dict, list[schema.Clip]]]:
    """Every record once, in file order, in fixed-size batches; the last is padded and
    its padding rows have valid=False. Yields (batch, clips) so labels stay at hand."""
    source = TFRecordSource(files, verify_crc)
    for start in range(0, len(source), batch_size):
        records = [source[i] for i in range(start, min(start + batch_size, len(source)))]
        rows = [featurizer(r) for r in records]
        clips = [schema.example_to_clip(*r) for r in records]
        while len(rows) < batch_size:
            rows.append({**rows[0], "valid": np.False_})
        yield {k: np.stack([r[k] for r in rows]) for k in rows[0]}, clips


def tag_vocabulary(files: Sequence[str], min_count: int = 1) -> list[str]:
    """Tags of a corpus by descending document frequency (ties alphabetical)."""
    counts: dict[str, int] = {}
    for path in files:
        for data in tfrecord.read_records(path):
            for t in set(schema.example_to_clip(data, path).tags):
                counts[t] = counts.get(t, 0) + 1
    return sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))


def load_vocabulary(path: str) -> list[str]:
    """A UTS vocabulary file as released (`label_K.json`: {"0": "tag", "1": ...})."""
    import json

    with open(path) as f:
        table = json.load(f)
    try:
        return [table[str(i)] for i in range(len(table))]
    except (KeyError, TypeError):
        raise ValueError(f"{path} is not a vocabulary file: expected {{\"0\": tag, \"1\": tag, ...}} "
                         "with consecutive indices") from None

