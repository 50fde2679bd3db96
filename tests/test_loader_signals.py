"""Decoding workers ignore SIGTERM and SIGINT: a signal to the whole process group (a cluster's
preemption notice, Ctrl-C) is for the training process, which still needs batches while it
finishes the step and saves (tests/test_preemption.py runs the whole path)."""

import os
import signal

import numpy as np

from strongaudio_jax.data import pipeline
from tests.test_pipeline import feat


def test_workers_keep_serving_after_sigterm_and_sigint(tiny_corpus):
    files = pipeline.expand_paths(f"{tiny_corpus}/train-*.tfrecord")
    reference = pipeline.train_dataset(files, feat(), 4, seed=0, workers=0)
    it0 = iter(reference)
    want = [{k: np.array(v) for k, v in next(it0).items()} for _ in range(12)]

    it = iter(pipeline.train_dataset(files, feat(), 4, seed=0, workers=2))
    try:
        got = [{k: np.array(v) for k, v in next(it).items()}]
        for proc, signum in zip(it._pool.procs, (signal.SIGTERM, signal.SIGINT)):
            os.kill(proc.pid, signum)
        # more batches than the workers had decoded ahead (3 slots each): new requests
        got += [{k: np.array(v) for k, v in next(it).items()} for _ in range(11)]
        assert all(p.is_alive() for p in it._pool.procs)
    finally:
        it.close()
    for a, b in zip(want, got):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
