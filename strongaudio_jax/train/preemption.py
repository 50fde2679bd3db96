"""Stopping cleanly on SIGTERM / SIGINT: finish the step, save, exit 0.

Single process: our own handlers set a flag the loop checks after every step. Several
processes: JAX's distributed runtime catches SIGTERM and `reached_preemption_sync_point`
makes every process agree on the same step to stop at (a save is collective, so a process
stopping alone would hang the others).
"""

from __future__ import annotations

import signal
import threading

import jax
from jax.experimental import multihost_utils


class StopWatcher:
    def __init__(self):
        self.signum: int | None = None
        self._previous = {}
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._previous[s] = signal.signal(s, self._handle)

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means now
        self.signum = signum

    def should_stop(self, step: int) -> bool:
        if jax.process_count() > 1:
            return multihost_utils.reached_preemption_sync_point(step)
        return self.signum is not None

    @property
    def reason(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "preemption notice"

    def close(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
