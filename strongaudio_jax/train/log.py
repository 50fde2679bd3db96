"""Training logs (process 0 only): a console line per log step, <workdir>/metrics.jsonl and
TensorBoard event files in <workdir>/tensorboard, for a local or a bucket (gs://, s3://) work dir.

Everything goes through `data/storage.py`. metrics.jsonl is a `storage.TextLog` (appended
locally; on an object store rewritten whole from an in-memory copy read back on resume, since
objects cannot be appended to).

TensorBoard events are written with tensorboardX's synchronous `EventsWriter` (no TensorFlow)
into a local directory, the work dir's own when it is local. For a bucket work dir that
directory is a temporary one and the event file is uploaded through storage after every log
step. tensorboardX's own remote writers are not used: its gs:// writer needs the
google-cloud-storage client and its s3:// one boto3 (second clients with their own settings,
beside fsspec's), and its asynchronous `SummaryWriter.flush()` does not wait for queued events,
so an upload right after it could miss the last step.

clu is not used. `clu.metric_writers` writes TensorBoard through TensorFlow (the dependency
this module avoids); `clu.metrics` aggregates metrics inside the jitted step, but train/step.py
already returns the step's scalars and this logger reports the last one with throughput; and
`clu.periodic_actions` (ReportProgress, Profile) reports through a metric writer and a
profiler log dir of its own, where the trainer needs MFU, data wait and the profile uploaded to
a bucket work dir.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
import tempfile
import time

import jax
from tensorboardX import summary as tbx_summary
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto import event_pb2

from strongaudio_jax.data import storage


_writers = itertools.count()


class EventWriter:
    """Scalars into a TensorBoard event file under `logdir` (local or URL)."""

    def __init__(self, logdir: str):
        self.logdir = logdir
        self._remote = storage.is_url(logdir)
        self._local_dir = tempfile.mkdtemp(prefix="strongaudio_tb_") if self._remote else logdir
        os.makedirs(self._local_dir, exist_ok=True)
        # The pid and a count keep the files of writers started in the same second apart.
        self._writer = EventsWriter(os.path.join(self._local_dir, "events"),
                                    f".{os.getpid()}.{next(_writers)}")
        self.path = self._writer._file_name  # the local event file
        self.flush()

    def scalars(self, step: int, values: dict) -> None:
        event = event_pb2.Event(wall_time=time.time(), step=int(step))
        for tag, value in values.items():
            if value is None or isinstance(value, (str, bytes)):
                continue
            event.summary.value.extend(tbx_summary.scalar(tag, float(value)).value)
        self._writer.write_event(event)
        self.flush()

    def flush(self) -> None:
        self._writer.flush()
        if self._remote:
            storage.copy(self.path, storage.join(self.logdir, os.path.basename(self.path)))

    def close(self) -> None:
        self.flush()
        self._writer.close()
        if self._remote:
            shutil.rmtree(self._local_dir, ignore_errors=True)


class Logger:
    def __init__(self, workdir: str):
        self._main = jax.process_index() == 0
        self._jsonl = storage.TextLog(storage.join(workdir, "metrics.jsonl")) if self._main else None
        self._tb = EventWriter(storage.join(workdir, "tensorboard")) if self._main else None
        self._t0 = time.perf_counter()
        self._first_step_time = None

    def info(self, msg: str) -> None:
        if self._main:
            print(f"[strongaudio] {msg}", flush=True)

    def metrics(self, step: int, total: int, metrics: dict, **extra) -> None:
        if not self._main:
            return
        now = time.perf_counter()
        if self._first_step_time is None:  # first log includes compilation; ETA from then on
            self._first_step_time, self._first_step = now, step
        rate = (step - self._first_step) / max(now - self._first_step_time, 1e-9)
        eta = (total - step) / rate if rate > 0 else float("nan")
        record = {"step": step, **metrics, **extra, "elapsed_s": now - self._t0}
        self._jsonl.append(json.dumps(record))
        self._tb.scalars(step, {f"train/{k}": v for k, v in record.items() if k != "step"})
        eta_str = f"{eta:5.0f} s" if eta == eta else "    -"
        speed = (f"MFU {100 * extra['mfu']:4.1f}%" if extra.get("mfu") is not None else
                 f"{extra.get('tflops_per_device', 0.0):.3f} TFLOP/s/device")
        bar = ""
        if sys.stdout.isatty():  # a progress bar for people; plain lines for log files
            done = int(20 * step / total)
            bar = "[" + "#" * done + "." * (20 - done) + "] "
        print(f"{bar}step {step:>6}/{total} ({100 * step / total:5.1f}%)  loss {metrics['loss']:.4f}  "
              f"lr {metrics['lr']:.2e}  {extra['samples_per_s']:7.1f} samples/s  {speed}  "
              f"data wait {100 * extra['data_wait']:4.1f}%  ETA {eta_str}", flush=True)

    def write(self, record: dict, step: int | None = None, scalars: dict | None = None) -> None:
        """A JSONL record; `scalars` also go to TensorBoard at `step`."""
        if self._main:
            self._jsonl.append(json.dumps(record))
            if scalars:
                self._tb.scalars(step or 0, scalars)

    def close(self) -> None:
        if self._main:
            self._jsonl.close()
            self._tb.close()
