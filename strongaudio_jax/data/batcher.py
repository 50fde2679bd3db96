"""Which records make up batch b, and filling that batch straight into (shared) memory.

Everything here is a pure function of (seed, batch number, per-corpus draw counts), which is
what makes a restored iterator produce the identical next batch:
  * corpus of each row: a multinomial draw with the config's weights from rng(seed, b);
  * the k-th record drawn from corpus c: position k % n of the epoch-(k // n) permutation
    rng(seed, c, epoch) of this host's n records of c (a fresh global shuffle each epoch);
  * random crop offsets: rng(seed, b) as well;
  * with duration buckets (data/buckets.py), the bucket of batch b is a global draw from
    rng(seed, b), and each bucket is read like a corpus (its rows, its draw count).
Decoding processes import this module, not JAX.
"""

from __future__ import annotations

import collections
import dataclasses
import traceback
from typing import Mapping, Sequence

import numpy as np

from strongaudio_jax.data import audio, buckets as buckets_lib, index as index_lib, schema, tfrecord
from strongaudio_jax.data.featurize import Featurizer

BAD_REASONS = ("corrupt_record", "truncated_record", "empty_file", "bad_record",
               "undecodable_audio", "zero_length_audio", "non_finite_audio", "sample_rate",
               "resampled", "long_clip_skipped", "long_clip_cropped")
# (resampled: not bad, changed; counted with data.resample=True. long_clip_*: clips longer than
#  the last duration bucket, left out or cropped under data.long_clips; see data/buckets.py)
NOT_SKIPPED = ("resampled", "long_clip_cropped")  # counted, but still trained on
_ALIGN = 64


def _mask_row(out: dict, r: int) -> None:
    """Row r of a batch becomes padding: zeros, length 0, valid False (the step ignores it)."""
    out["waveform"][r] = 0
    out["tags"][r] = 0
    out["length"][r] = 0
    out["valid"][r] = False


def bad_reason(e: Exception) -> str | None:
    """The counting key of a bad-data error, None for errors that are not about the data."""
    if isinstance(e, tfrecord.CorruptRecordError):
        return "truncated_record" if e.truncated else "corrupt_record"
    if isinstance(e, schema.SchemaError):
        return "bad_record"
    if isinstance(e, audio.AudioDecodeError):
        return e.reason
    return None


@dataclasses.dataclass
class Corpus:
    """One corpus as this host reads it: the record index and this host's rows of it."""
    name: str
    index: index_lib.RecordIndex
    rows: np.ndarray  # row numbers into index.rows owned by this host


@dataclasses.dataclass
class BatchSpec:
    """All a decoding process needs (picklable)."""
    corpora: list[Corpus]
    weights: np.ndarray  # normalised, one per corpus
    seed: int
    batch_size: int  # per host
    featurizer: Featurizer
    wave_dtype: str = "int16"
    verify_crc: bool = True
    skip_bad: bool = False
    # data.batching='duration_buckets': corpora[j] holds this host's clips of bucket j
    buckets: buckets_lib.Buckets | None = None
    long_clips: dict[str, int] = dataclasses.field(default_factory=dict)  # this host's, by reason

    def layout(self, which: np.ndarray | None = None) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Shapes of a batch; with buckets, of the batch whose plan gave `which` (None: the
        largest slot any bucket needs)."""
        b, samples = self.batch_size, self.featurizer.clip_samples
        if self.buckets is not None:
            if which is None:
                j = int(np.argmax(np.multiply(self.buckets.host_batch, self.buckets.samples)))
            else:
                j = int(which[0])
            b, samples = self.buckets.host_batch[j], self.buckets.samples[j]
        f = self.featurizer
        return {"waveform": ((b, samples), np.dtype(self.wave_dtype)),
                "length": ((b,), np.dtype(np.int32)),
                "tags": ((b, len(f.vocab)), np.dtype(np.float32)),
                "valid": ((b,), np.dtype(np.bool_))}

    def slot_bytes(self) -> int:
        if self.buckets is not None:  # the largest bucket's batch (tags scale with the batch)
            return max(sum(_aligned(int(np.prod(s)) * d.itemsize)
                           for s, d in self.layout(np.array([j])).values())
                       for j in range(len(self.buckets.seconds)))
        return sum(_aligned(int(np.prod(s)) * d.itemsize) for s, d in self.layout().values())

    def views(self, buf, offset: int = 0, which: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The batch arrays laid out in `buf` (a shared-memory slot) from `offset` (with buckets,
        those of the batch planned as `which`)."""
        out = {}
        for name, (shape, dtype) in self.layout(which).items():
            n = int(np.prod(shape)) * dtype.itemsize
            out[name] = np.ndarray(shape, dtype, buffer=buf, offset=offset)
            offset += _aligned(n)
        return out

    def plan(self, b: int, draws: Sequence[int]) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """(corpus of each row, draw number k of each row within its corpus, draws after)."""
        if self.buckets is not None:  # one bucket for the whole batch, the same on every host
            j = self.buckets.at(self.seed, b)
            n = self.buckets.host_batch[j]
            after = list(draws)
            after[j] += n
            return np.full(n, j, np.int64), draws[j] + np.arange(n, dtype=np.int64), after
        rng = np.random.default_rng([self.seed, 0x6D6978, b])
        if len(self.corpora) == 1:
            which = np.zeros(self.batch_size, np.int64)
        else:
            which = rng.choice(len(self.corpora), size=self.batch_size, p=self.weights)
        k = np.zeros(self.batch_size, np.int64)
        after = list(draws)
        for c in range(len(self.corpora)):
            rows = np.flatnonzero(which == c)
            k[rows] = after[c] + np.arange(len(rows))
            after[c] += len(rows)
        return which, k, after


@dataclasses.dataclass
class OutsideVocab:
    """Tags of the delivered records that the vocabulary does not hold (a fixed
    data.vocab_file, or tags under data.vocab_min_count): they train nothing, so they are
    counted and reported rather than dropped silently."""
    occurrences: int = 0
    records: int = 0
    examples: tuple[str, ...] = ()  # the first few distinct ones
    MAX_EXAMPLES = 10

    def add(self, tags: Sequence[str]) -> None:
        """One record's tags outside the vocabulary."""
        if tags:
            self.occurrences += len(tags)
            self.records += 1
            self.add_examples(tags)

    def merge(self, other: "OutsideVocab") -> None:
        self.occurrences += other.occurrences
        self.records += other.records
        self.add_examples(other.examples)

    def add_examples(self, tags: Sequence[str]) -> None:
        new = [t for t in dict.fromkeys(tags) if t not in self.examples]
        self.examples = (self.examples + tuple(new))[:self.MAX_EXAMPLES]


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


class BatchFiller:
    """Fills batches in one process: reads, checks and decodes each row in place."""

    def __init__(self, spec: BatchSpec):
        self.spec = spec
        self.readers = [index_lib.RecordReader(c.index, spec.verify_crc) for c in spec.corpora]
        self._perms: dict[tuple[int, int], np.ndarray] = collections.OrderedDict()
        self._extra_template: dict[str, np.ndarray] | None = None

    def record(self, c: int, k: int) -> int:
        """Row (into corpus c's index) of the k-th record drawn from corpus c on this host."""
        rows = self.spec.corpora[c].rows
        epoch, j = divmod(int(k), len(rows))
        perm = self._perms.get((c, epoch))
        if perm is None:
            perm = np.random.default_rng([self.spec.seed, c, epoch]).permutation(len(rows))
            self._perms[(c, epoch)] = perm
            while len(self._perms) > 2 * len(self.spec.corpora):
                self._perms.pop(next(iter(self._perms)))
        return int(rows[perm[j]])

    def fill(self, b: int, which: np.ndarray, k: np.ndarray, out: Mapping[str, np.ndarray]):
        """Fills `out` with batch b; returns (extras, bad counts by reason, first messages,
        OutsideVocab of the batch)."""
        spec, feat = self.spec, self.spec.featurizer
        size = len(which)
        crops = np.random.default_rng([spec.seed, 0x63726F70, b]).random(size)
        extras, bad, messages, outside = [], collections.Counter(), [], OutsideVocab()
        rows = [self.record(int(which[r]), k[r]) if len(spec.corpora[int(which[r])].rows) else -1
                for r in range(size)]
        data = [None] * size
        for c, reader in enumerate(self.readers):  # a corpus's records in one go (remote: concurrent)
            mine = [r for r in range(size) if which[r] == c and rows[r] >= 0]
            for r, d in zip(mine, reader.read_many([rows[r] for r in mine])):
                data[r] = d
        for r in range(size):
            reader = self.readers[int(which[r])]
            if rows[r] < 0:  # a duration bucket this host holds no clip of (others do): padding
                _mask_row(out, r)
                extras.append(None)
                continue
            where = reader.where(rows[r])
            try:
                if isinstance(data[r], Exception):
                    raise data[r]
                length, clip, unknown, resampled = feat.fill(
                    data[r], where, float(crops[r]), out["waveform"][r], out["tags"][r])
                more = feat.extras(clip, draw=(spec.seed, b, r))
            except Exception as e:  # noqa: BLE001 (bad data is classified, others re-raised)
                reason = bad_reason(e)
                if reason is None or not spec.skip_bad:
                    raise
                bad[reason] += 1
                if len(messages) < 3:
                    messages.append(str(e))
                _mask_row(out, r)
                extras.append(None)
                continue
            out["length"][r] = length
            out["valid"][r] = True
            if resampled:  # data.resample=True: kept, but changed, so counted
                bad["resampled"] += 1
            outside.add(unknown)
            extras.append(more)
            if more and self._extra_template is None:
                self._extra_template = {n: np.zeros_like(v) for n, v in more.items()}
        return self._stack_extras(extras), dict(bad), messages, outside

    def _stack_extras(self, extras: list) -> dict[str, np.ndarray]:
        if self.spec.featurizer.extra is None:
            return {}
        if self._extra_template is None and any(e is None for e in extras):
            self._extra_template = self._template_from_any_record()
        if self._extra_template is None:
            raise ValueError("every record so far was bad data, so the shapes of the "
                             "Featurizer.extra arrays are unknown; check the shards")
        rows = [e if e is not None else self._extra_template for e in extras]
        return {n: np.stack([r[n] for r in rows]) for n in self._extra_template}

    def _template_from_any_record(self) -> dict[str, np.ndarray] | None:
        """Zeros shaped as the extras of this host's first readable record (a batch of only
        masked rows, e.g. of a duration bucket this host holds no clip of, still needs them)."""
        feat = self.spec.featurizer
        for c, corpus in enumerate(self.spec.corpora):
            for row in corpus.rows[:8]:
                try:
                    clip = schema.example_to_clip(self.readers[c].read(int(row)),
                                                  self.readers[c].where(int(row)))
                    more = feat.extras(clip, draw=(self.spec.seed, 0, 0))
                except Exception as e:  # noqa: BLE001 (bad data: try another record)
                    if bad_reason(e) is None:
                        raise
                    continue
                return {n: np.zeros_like(v) for n, v in more.items()}
        return None


def worker_main(conn, spec: BatchSpec, shm_name: str, slot_bytes: int) -> None:
    """A decoding process: fills the batches it is sent into its shared-memory slots.

    Receives (b, slot, which, k); answers ('ok', b, slot, extras, bad, messages) or
    ('error', b, slot, exception, traceback). Exits on None or when the parent goes away.
    Ignores SIGINT and SIGTERM: a signal to the whole process group (Ctrl-C, a cluster's
    preemption notice) is the training process's to handle; it finishes the step, saves, then
    shuts the workers down (`loader._stop_signals_blocked` holds the signals back until here).
    """
    import signal
    from multiprocessing import shared_memory

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)  # a pending one is discarded
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGINT, signal.SIGTERM))

    # The parent owns and unlinks the segment (spawned children share its resource tracker).
    shm = shared_memory.SharedMemory(name=shm_name)
    filler = BatchFiller(spec)
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg is None:
                return
            b, slot, which, k = msg
            try:
                out = spec.views(shm.buf, slot * slot_bytes, which)
                extras, bad, messages, outside = filler.fill(b, which, k, out)
                del out
                conn.send(("ok", b, slot, extras, bad, messages, outside))
            except Exception as e:  # noqa: BLE001 (sent to the parent, which raises it)
                try:
                    conn.send(("error", b, slot, e, traceback.format_exc()))
                except Exception:  # noqa: BLE001 (an unpicklable exception)
                    conn.send(("error", b, slot, RuntimeError(str(e)), traceback.format_exc()))
    finally:
        for r in filler.readers:
            r.close()
        try:
            shm.close()
        except BufferError:  # a view outlived its batch (after an error): exit frees it
            pass
