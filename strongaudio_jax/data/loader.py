"""The training stream as a Grain dataset: batches decoded by worker processes into a ring of
shared-memory slots, handed to the training process without copies.

Why not Grain's `mp_prefetch`: it creates a fresh shared-memory segment per batch, and on this
kind of host every 4 KiB page of it faults (~0.4 ms per 10 s clip, a third of decoding). Here
each worker owns a few fixed slots; a batch is decoded row by row straight into one, and the
slot is reused once the next batch is requested. The iterator is a `grain.DatasetIterator`, so
Grain's orbax handler saves its state (batch number, per-corpus draw counts, bad-data counts)
with the train state, and `set_state` resumes at the identical next batch.

A batch returned by `next()` is a view into a slot: valid until the following `next()` call.
Copy it (or place it on devices, as `parallel.mesh.global_batch` does) before asking for more.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import multiprocessing
import signal
import sys
import threading
import weakref
from multiprocessing import shared_memory

import grain
import numpy as np

from strongaudio_jax.data import batcher

STATE_VERSION = 1


class DataStateError(ValueError):
    """A saved iterator state does not belong to this data stream (says why and what to do)."""


def fingerprint(spec: batcher.BatchSpec, process_index: int, process_count: int) -> str:
    """Identifies the stream a state belongs to: files, their record counts, weights, seed,
    batch, and which host's share this is."""
    h = hashlib.sha1()
    for c in spec.corpora:
        h.update(json.dumps([c.name, c.index.paths, c.index.records_per_file().tolist(),
                             len(c.rows)]).encode())
    h.update(json.dumps([spec.weights.tolist(), spec.seed, spec.batch_size,
                         process_index, process_count]).encode())
    if spec.buckets is not None:  # (unbucketed streams keep their earlier fingerprints)
        b = spec.buckets
        h.update(json.dumps(["buckets", b.seconds, b.samples, b.global_batch, b.long_clips,
                             b.global_clips]).encode())
    return h.hexdigest()[:16]


class BatchDataset(grain.IterDataset):
    """Endless per-host batches (dicts of numpy arrays) of a mixture of corpora."""

    def __init__(self, spec: batcher.BatchSpec, workers: int, slots_per_worker: int = 3,
                 process_index: int = 0, process_count: int = 1):
        super().__init__()
        self.spec, self.workers, self.slots = spec, workers, slots_per_worker
        self.process_index, self.process_count = process_index, process_count

    def __iter__(self) -> "BatchIterator":
        return BatchIterator(self)

    def __str__(self) -> str:
        return (f"BatchDataset({len(self.spec.corpora)} corpora, batch {self.spec.batch_size}, "
                f"{self.workers} workers)")


class BatchIterator(grain.DatasetIterator):
    """Yields batch 0, 1, 2, ... of the stream; decoding runs ahead in worker processes."""

    def __init__(self, ds: BatchDataset):
        super().__init__()
        self._ds, self._spec = ds, ds.spec
        self._fingerprint = fingerprint(ds.spec, ds.process_index, ds.process_count)
        self._next = 0  # the batch next() returns
        self._draws = [0] * len(ds.spec.corpora)  # draws per corpus before batch _next
        self._bad: collections.Counter = collections.Counter()
        self.bad_messages: list[str] = []  # first few skipped-record messages, for the logs
        self._outside = batcher.OutsideVocab()  # tags of delivered records not in the vocab
        self._pool: _Pool | None = None
        self._filler: batcher.BatchFiller | None = None

    # ------------------------------------------------------------------ iteration
    def __next__(self) -> dict[str, np.ndarray]:
        if self._ds.workers == 0:
            batch, extras, bad, messages, outside, draws = self._fill_here()
        else:
            if self._pool is None:
                self._pool = _Pool(self._spec, self._ds.workers, self._ds.slots)
                self._pool.start(self._next, self._draws)
            try:
                batch, extras, bad, messages, outside, draws = self._pool.get(self._next)
            except BaseException:
                self.close()  # a failed pool is not reused; the next call starts afresh
                raise
        self._next += 1
        self._draws = draws
        self._bad.update(bad)
        self.bad_messages = (self.bad_messages + messages)[:20]
        self._outside.merge(outside)
        return {**batch, **extras}

    def _fill_here(self):
        if self._filler is None:
            self._filler = batcher.BatchFiller(self._spec)
        which, k, draws = self._spec.plan(self._next, self._draws)
        out = {n: np.zeros(s, d) for n, (s, d) in self._spec.layout(which).items()}
        extras, bad, messages, outside = self._filler.fill(self._next, which, k, out)
        return out, extras, bad, messages, outside, draws

    def start_prefetch(self) -> None:
        """Starts the workers now (otherwise at the first next())."""
        if self._ds.workers and self._pool is None:
            self._pool = _Pool(self._spec, self._ds.workers, self._ds.slots)
            self._pool.start(self._next, self._draws)

    def bad_counts(self) -> dict[str, int]:
        """Records skipped so far (skip_bad=True) by reason, across restarts of the run, with
        those lost to damage found while indexing (every process indexes every file: process
        0 counts them, so sums over processes count them once)."""
        bad = collections.Counter(self._bad)
        bad.update(self._spec.long_clips)  # this host's clips longer than the last bucket
        if self._ds.process_index == 0:
            for index in {id(c.index): c.index for c in self._spec.corpora}.values():
                bad.update(index.lost)  # (duration buckets share one corpus's index)
        return dict(bad)

    def outside_vocab(self) -> batcher.OutsideVocab:
        """Tag occurrences (and records holding them) delivered so far that the vocabulary
        lacks, across restarts of the run, with a few examples."""
        return self._outside

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict:
        return {"version": STATE_VERSION, "next_batch": self._next, "draws": list(self._draws),
                "bad": dict(self._bad), "fingerprint": self._fingerprint,
                "outside_vocab": [self._outside.occurrences, self._outside.records,
                                  list(self._outside.examples)],
                "process_index": self._ds.process_index,
                "process_count": self._ds.process_count}

    def set_state(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION:
            raise DataStateError(f"data-iterator state version {state.get('version')} is not "
                                 f"{STATE_VERSION}; it was written by another version")
        if state["process_count"] != self._ds.process_count:
            raise DataStateError(
                f"the data-iterator state was written by a run with {state['process_count']} "
                f"process(es), this run has {self._ds.process_count}. Each process reads its own "
                "share of the files, so the stream cannot continue exactly: resume with the same "
                "number of processes, or start a new work dir from the weights.")
        if state["fingerprint"] != self._fingerprint:
            raise DataStateError(
                "the data-iterator state belongs to another data stream (the files, their record "
                "counts, data.mix weights, seed or batch size changed since it was saved); "
                "resume with the same data config, or start a new work dir from the weights")
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self._next, self._draws = int(state["next_batch"]), [int(d) for d in state["draws"]]
        self._bad = collections.Counter(state.get("bad", {}))
        occurrences, records, examples = state.get("outside_vocab", (0, 0, ()))
        self._outside = batcher.OutsideVocab(int(occurrences), int(records), tuple(examples))

    def __del__(self):
        self.close()

    def __str__(self) -> str:
        return f"BatchIterator(next batch {self._next}, {self._ds})"


class _Pool:
    """Worker processes, each with its own ring of slots in one shared-memory segment.

    Batch b goes to worker b % W, into one of that worker's free slots; results come back in
    order per worker. A slot is free again when the batch after the one it held is requested.
    """

    def __init__(self, spec: batcher.BatchSpec, workers: int, slots: int):
        self.spec, self.workers, self.slots = spec, workers, slots
        self.slot_bytes = spec.slot_bytes()
        ctx = multiprocessing.get_context("spawn")  # the parent may run JAX threads: no fork
        self.shms, self.conns, self.procs = [], [], []
        for w in range(workers):
            shm = shared_memory.SharedMemory(create=True, size=self.slot_bytes * slots)
            np.ndarray((shm.size,), np.uint8, buffer=shm.buf)[:] = 0  # fault pages in once
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=batcher.worker_main, daemon=True,
                               args=(child, spec, shm.name, self.slot_bytes),
                               name=f"strongaudio-data-{w}")
            with _main_module_hidden(), _stop_signals_blocked():
                proc.start()
            child.close()
            self.shms.append(shm)
            self.conns.append(parent)
            self.procs.append(proc)
        self.free = [collections.deque(range(slots)) for _ in range(workers)]
        self.inflight: dict[int, tuple] = {}  # b -> (draws after b, its plan's `which`)
        self.held: tuple[int, int] | None = None  # (worker, slot) of the batch last returned
        self._finalizer = weakref.finalize(self, _shutdown, self.conns, self.procs, self.shms)

    def start(self, b: int, draws: list[int]) -> None:
        self.next_dispatch, self.draws = b, list(draws)
        self._dispatch()

    def _dispatch(self) -> None:
        while True:
            b = self.next_dispatch
            w = b % self.workers
            if not self.free[w]:
                return
            slot = self.free[w].popleft()
            which, k, after = self.spec.plan(b, self.draws)
            self.conns[w].send((b, slot, which, k))
            self.inflight[b] = after, which
            self.draws = after
            self.next_dispatch += 1

    def get(self, b: int):
        if self.held is not None:  # the caller is done with the previous batch
            self.free[self.held[0]].append(self.held[1])
            self.held = None
        self._dispatch()
        w = b % self.workers
        try:
            msg = self.conns[w].recv()
        except EOFError:
            raise RuntimeError(f"data worker {w} died (exit code {self.procs[w].exitcode}); "
                               "see its output above (out of memory?)") from None
        if msg[0] == "error":
            _, mb, _, exc, tb = msg
            self.close()
            raise exc from RuntimeError(f"in data worker {w}, batch {mb}:\n{tb}")
        _, mb, slot, extras, bad, messages, outside = msg
        assert mb == b, (mb, b)
        self.held = (w, slot)
        draws, which = self.inflight.pop(b)
        batch = self.spec.views(self.shms[w].buf, slot * self.slot_bytes, which)
        return batch, extras, bad, messages, outside, draws

    def close(self) -> None:
        self._finalizer()


@contextlib.contextmanager
def _stop_signals_blocked():
    """Workers ignore SIGINT and SIGTERM (`batcher.worker_main`): a cluster's preemption notice
    and Ctrl-C reach the whole process group, and the training process must still get its
    batches while it finishes the step and saves; it shuts the workers down afterwards.
    Blocking the signals while a worker starts (the child inherits the mask) closes the window
    before the worker has set its handlers; a signal meant for this process meanwhile stays
    pending and is delivered when they are unblocked (as multiprocessing's resource tracker does)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _main_module_hidden():
    """Spawned workers normally re-run the caller's main script (so a script without an
    `if __name__ == "__main__"` guard would start workers recursively, and every worker would
    import what the script imports, JAX included). Workers only need the batcher module, so the
    main module is hidden from multiprocessing while they start."""
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update(saved)


def _shutdown(conns, procs, shms) -> None:
    for c in conns:
        try:
            c.send(None)
        except (OSError, BrokenPipeError):
            pass
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.terminate()
            p.join(timeout=5)
    for c in conns:
        c.close()
    for shm in shms:
        try:
            shm.close()
        except BufferError:  # batches still viewed by the caller: the mapping lives on with them
            pass
        shm.unlink()
