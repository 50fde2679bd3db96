"""Stopping cleanly on SIGTERM / SIGINT: finish the step, save, exit 0.

Single process: our own handlers set a flag the loop checks after every step. Several
processes: JAX's distributed runtime catches SIGTERM (its preemption service, on by default)
and `reached_preemption_sync_point` makes every process agree on the same step to stop at (a
save is collective, so a process stopping alone would hang the others). A SIGTERM to any one
process stops them all. Ctrl-C (SIGINT) on a process of a multi-process run is turned into a
SIGTERM to itself, so it takes the same path; a second Ctrl-C raises KeyboardInterrupt.
tests/test_preemption.py and tests/test_preemption_multihost.py run both paths.

Tests need the signal to arrive while the run is still going, whatever the machine's load: with
STRONGAUDIO_HOLD_FOR_SIGNAL_AT_STEP=k a single-process run says so on stderr after step k and
waits there for its stop signal, so it stops exactly at step k.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import jax
from jax.experimental import multihost_utils


class StopWatcher:
    def __init__(self):
        self.signum: int | None = None
        self._previous = {}
        self._stopped = threading.Event()
        self._hold_at = int(os.environ.get("STRONGAUDIO_HOLD_FOR_SIGNAL_AT_STEP", "0"))
        if threading.current_thread() is not threading.main_thread():
            return
        if jax.process_count() == 1:
            for s in (signal.SIGTERM, signal.SIGINT):
                self._previous[s] = signal.signal(s, self._handle)
        elif signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # launchers may ignore it
            self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._interrupt)

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means now
        self.signum = signum
        self._stopped.set()

    def _interrupt(self, signum, frame):
        """Multi-process: Ctrl-C becomes the preemption notice that JAX passes to all."""
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        os.kill(os.getpid(), signal.SIGTERM)

    def should_stop(self, step: int) -> bool:
        if jax.process_count() > 1:
            return multihost_utils.reached_preemption_sync_point(step)
        if step == self._hold_at and self._previous:
            print(f"holding after step {step} until a stop signal "
                  "(STRONGAUDIO_HOLD_FOR_SIGNAL_AT_STEP)", file=sys.stderr, flush=True)
            while not self._stopped.wait(0.1):  # (a bare wait() would not let the handler run)
                pass
        return self.signum is not None

    @property
    def reason(self) -> str:
        if jax.process_count() > 1:
            return "preemption notice"  # which process got which signal is not known here
        return signal.Signals(self.signum).name if self.signum else "preemption notice"

    def close(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
