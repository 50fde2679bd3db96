"""SIGKILL while an async checkpoint is being written: the next start ignores the partial
checkpoint and resumes from the previous complete one."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.test_preemption import _cmd, _env

pytestmark = pytest.mark.slow  # a training process killed during an asynchronous save


def test_kill_during_async_save_resumes_from_complete_checkpoint(tiny_corpus, tmp_path):
    workdir = tmp_path / "run"
    ckpt_dir = workdir / "checkpoints"
    proc = subprocess.Popen(_cmd(tiny_corpus, workdir, "train.checkpoint_every=1",
                                 "train.steps=100000"),  # killed long before the end
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = None
    while proc.poll() is None:  # (a save every step: one is soon caught in flight)
        names = os.listdir(ckpt_dir) if ckpt_dir.is_dir() else []
        complete = [n for n in names if n.isdigit()]
        writing = [n for n in names if "tmp" in n]
        if writing and len(complete) >= 2:  # a save is in flight: kill now
            proc.send_signal(signal.SIGKILL)
            partial = writing[0]
            break
        time.sleep(0.0005)
    proc.wait(timeout=60)
    assert partial is not None, f"the run ended (exit {proc.returncode}) before a save was seen"
    complete = sorted(int(n) for n in os.listdir(ckpt_dir) if n.isdigit())
    partial_step = int(partial.split(".")[0])
    assert partial_step not in complete  # the interrupted one never looks complete

    resumed = subprocess.run(_cmd(tiny_corpus, workdir, "train.checkpoint_every=1",
                                  f"train.steps={max(complete) + 2}"),
                             env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed from step {max(complete)}" in resumed.stdout
    assert not [n for n in os.listdir(ckpt_dir) if "tmp" in n]
