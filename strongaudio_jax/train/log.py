"""Training logs (process 0 only): a console line per log step, a JSONL file and TensorBoard
event files in <workdir>/tensorboard (written without TensorFlow)."""

from __future__ import annotations

import json
import os
import sys
import time

import jax

from strongaudio_jax.train import tensorboard


class Logger:
    def __init__(self, workdir: str):
        self._main = jax.process_index() == 0
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a") if self._main else None
        self._tb = tensorboard.SummaryWriter(os.path.join(workdir, "tensorboard"), enabled=self._main)
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
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
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
            self._jsonl.write(json.dumps(record) + "\n")
            self._jsonl.flush()
            if scalars:
                self._tb.scalars(step or 0, scalars)

    def close(self) -> None:
        if self._jsonl:
            self._jsonl.close()
        self._tb.close()
