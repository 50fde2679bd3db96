"""Whole clips batched by duration (data.batching='duration_buckets').

The alternative to fixed-length crops that the reference study trained with (Lhotse's
DynamicBucketingSampler: whole 1-60 s clips, a total-duration budget per batch), fitted to XLA,
which compiles one program per batch shape:
  * a few fixed bucket lengths (data.buckets, seconds, ascending); each clip goes whole into
    the shortest bucket that holds it, zero-padded to that length with its valid length (the
    frontend, encoder and objectives mask the padding);
  * each bucket has a fixed global batch: the most clips of its length within
    data.max_batch_seconds, rounded down to a multiple of the data-parallel size (and of the
    process count), so every batch shape is known, and compiled once, up front;
  * clips longer than the last bucket follow data.long_clips: 'error' (the default: refused,
    with their count), 'skip' (left out) or 'crop' (a random crop of the last bucket's
    length each time); skipped and cropped clips are counted (`long_clip_skipped`,
    `long_clip_cropped` in the data counts), never truncated silently;
  * the bucket of batch b is one global draw from rng(seed, b) with probabilities proportional
    to the number of batches each bucket holds over all hosts, so every host picks the same
    shape at the same step (their jitted steps stay in lockstep); within a bucket, each host
    draws its own records as for a corpus (a fresh shuffle of its share every epoch).
Every choice is a pure function of (seed, batch number, per-bucket draw counts), so the saved
iterator state resumes at the identical next batch. Decoding processes import this module, not JAX.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import os
from typing import Sequence

import numpy as np

from strongaudio_jax.data import index as index_lib, schema, storage

LONG_CLIPS = ("error", "skip", "crop")


class BucketConfigError(ValueError):
    """data.buckets / data.max_batch_seconds / data.long_clips cannot make batches (says why)."""


@dataclasses.dataclass(frozen=True)
class Buckets:
    """Bucket lengths, their batch sizes and the global bucket schedule."""
    seconds: tuple[float, ...]  # ascending
    samples: tuple[int, ...]  # the same at the data's sample rate
    global_batch: tuple[int, ...]  # clips per batch of each bucket, over all hosts
    process_count: int
    long_clips: str  # one of LONG_CLIPS
    global_clips: tuple[int, ...] = ()  # clips per bucket over all hosts (schedule weights)

    @property
    def host_batch(self) -> tuple[int, ...]:
        return tuple(n // self.process_count for n in self.global_batch)

    def probabilities(self) -> np.ndarray:
        """Chance of each bucket per batch: its share of all batches (clips / batch size)."""
        batches = np.asarray(self.global_clips, np.float64) / np.asarray(self.global_batch)
        if not batches.sum() > 0:
            raise BucketConfigError("no clip falls into any duration bucket (data.buckets)")
        return batches / batches.sum()

    def at(self, seed: int, b: int) -> int:
        """The bucket of global batch b: the same on every host."""
        return int(np.random.default_rng([seed, 0x62756B74, b]).choice(
            len(self.seconds), p=self.probabilities()))

    def describe(self) -> str:
        return ", ".join(f"{s:g} s x {n} ({c} clips)" for s, n, c in
                         zip(self.seconds, self.global_batch, self.global_clips))


def batch_sizes(seconds: Sequence[float], max_batch_seconds: float, multiple: int) -> tuple[int, ...]:
    """Global batch of each bucket: the most clips of its length within max_batch_seconds,
    a multiple of `multiple` (the data-parallel size and process count)."""
    out = []
    for s in seconds:
        n = int(math.floor(max_batch_seconds / s + 1e-9)) // multiple * multiple
        if n == 0:
            raise BucketConfigError(
                f"data.max_batch_seconds={max_batch_seconds:g} holds fewer than {multiple} clips "
                f"of the {s:g} s bucket, and every batch must split over {multiple} data-parallel "
                f"devices/processes; raise data.max_batch_seconds to at least {s * multiple:g} or "
                "shorten data.buckets")
        out.append(n)
    return tuple(out)


def check_lengths(seconds: Sequence[float]) -> tuple[float, ...]:
    seconds = tuple(float(s) for s in seconds)
    if not seconds or any(not s > 0 for s in seconds) or list(seconds) != sorted(set(seconds)):
        raise BucketConfigError(f"data.buckets must be ascending, distinct clip lengths in seconds "
                                f"(e.g. (2.0, 5.0, 10.0)), not {seconds}")
    return seconds


def assign(num_samples: np.ndarray, samples: Sequence[int], long_clips: str) -> np.ndarray:
    """Bucket of each clip: the shortest that holds it whole; a longer clip gets the last
    bucket under long_clips='crop', else -1."""
    j = np.searchsorted(np.asarray(samples), np.asarray(num_samples), side="left")
    too_long = j == len(samples)
    j[too_long] = len(samples) - 1 if long_clips == "crop" else -1
    return j.astype(np.int64)


def clip_samples(idx: index_lib.RecordIndex, rows: np.ndarray, rate: int,
                 verify_crc: bool = True, skip_bad: bool = False,
                 cache_dir: str | None = None) -> np.ndarray:
    """Length of each row's clip in samples at `rate`, from the record's audio/num_samples
    (from the audio header where a record lacks it). The first time, every record of each file
    the rows touch is read once; the lengths are then kept per file in `cache_dir` (default
    `index.default_cache_dir()`, keyed by path, size, record count and rate), so a restart
    reads none. skip_bad: a record that cannot be read gets length 0 (the first bucket), where
    the batcher counts it as bad data when it is drawn; otherwise its error is raised."""
    cache_dir = cache_dir or index_lib.default_cache_dir()
    rows = np.asarray(rows, np.int64)
    out = np.zeros(len(rows), np.int64)
    reader = index_lib.RecordReader(idx, verify_crc)
    try:
        for f in np.unique(idx.rows[rows, 0]):
            file_rows = np.flatnonzero(idx.rows[:, 0] == f)  # in record order
            lengths = _file_lengths(idx, reader, int(f), file_rows, rate, skip_bad, cache_dir)
            pos = np.searchsorted(file_rows, rows)
            mine = idx.rows[rows, 0] == f
            out[mine] = lengths[pos[mine]]
    finally:
        reader.close()
    return out


def _file_lengths(idx, reader, f: int, file_rows: np.ndarray, rate: int, skip_bad: bool,
                  cache_dir: str) -> np.ndarray:
    path = idx.paths[f]
    stamp = "" if storage.is_url(path) else os.stat(path).st_mtime_ns  # a rewritten local file
    key = hashlib.sha1(f"{path}|{storage.size(path)}|{stamp}|{len(file_rows)}|{rate}".encode()
                       ).hexdigest()
    cached = os.path.join(cache_dir, f"{key[:20]}.lengths.npy")
    if os.path.exists(cached):
        lengths = np.load(cached)
        if len(lengths) == len(file_rows):
            return lengths
    lengths = np.zeros(len(file_rows), np.int64)
    for i, (row, data) in enumerate(zip(file_rows, reader.read_many([int(r) for r in file_rows]))):
        try:
            if isinstance(data, Exception):
                raise data
            clip = schema.example_to_clip(data, reader.where(int(row)))
            n, clip_rate = clip.num_samples, clip.sample_rate
            if n < 0:
                import soundfile

                info = soundfile.info(io.BytesIO(clip.audio))
                n, clip_rate = info.frames, info.samplerate
        except Exception:
            if not skip_bad:
                raise
            n, clip_rate = 0, rate
        lengths[i] = int(math.ceil(n * rate / clip_rate)) if clip_rate != rate else n
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{cached}.tmp{os.getpid()}.npy"
    np.save(tmp, lengths)
    os.replace(tmp, cached)
    return lengths
