"""SIGTERM or Ctrl-C mid-run (to the training process, or to its whole process group with
decoding workers): the step finishes, a checkpoint is saved, exit 0; the resumed run replays
exactly what an uninterrupted run does (losses bit-identical on CPU, same final parameters).

No timing: STRONGAUDIO_HOLD_FOR_SIGNAL_AT_STEP makes the run wait after a chosen step until its
signal comes (train/preemption.py), so however loaded the machine, the signal finds the run
going and it stops exactly there."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # training processes stopped by SIGTERM and resumed


STEPS = 12


def _cmd(corpus, workdir, *extra):
    return [sys.executable, "-m", "strongaudio_jax.cli", "train",
            "--config", f"{REPO}/configs/mtc.py:smoke", "--workdir", str(workdir),
            f"data.train_files={corpus}/train-*.tfrecord", f"data.eval_files={corpus}/heldout-*.tfrecord",
            "data.batch_size=8", "data.clip_seconds=1.0", "data.vocab_min_count=1",
            f"train.steps={STEPS}", "train.log_every=1", "train.checkpoint_every=100", "probe.tasks=()",
            *extra]


def _env(hold_at=None):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    env.pop("STRONGAUDIO_HOLD_FOR_SIGNAL_AT_STEP", None)
    if hold_at is not None:
        env["STRONGAUDIO_HOLD_FOR_SIGNAL_AT_STEP"] = str(hold_at)
    return env


def _losses(workdir):
    rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.fixture(scope="module")
def uninterrupted(tiny_corpus, tmp_path_factory):
    """A run of all STEPS steps, never stopped: what every stopped-and-resumed run must equal."""
    full = tmp_path_factory.mktemp("full")
    subprocess.run(_cmd(tiny_corpus, full), env=_env(), check=True, capture_output=True)
    return full


def _wait_for_hold(proc, log):
    """Blocks until the run holds for its signal (after the step in its environment); fails
    if it ends first."""
    while proc.poll() is None:
        if "holding after step" in log.read_text():
            return
        time.sleep(0.01)
    pytest.fail(f"the run ended without holding for a signal:\n{log.read_text()}")


def _assert_equal_runs(full, cut):
    a, b = _losses(full), _losses(cut)
    assert sorted(b) == list(range(1, STEPS + 1))
    assert [a[s] for s in range(1, STEPS + 1)] == [b[s] for s in range(1, STEPS + 1)]  # bit-identical

    import jax
    import orbax.checkpoint as ocp
    params = [ocp.StandardCheckpointer().restore(d / "checkpoints" / str(STEPS) / "state")["params"]
              for d in (full, cut)]
    for x, y in zip(jax.tree.leaves(params[0]), jax.tree.leaves(params[1])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_sigterm_saves_and_resume_is_exact(uninterrupted, tiny_corpus, tmp_path):
    cut = tmp_path / "cut"
    proc = subprocess.Popen(_cmd(tiny_corpus, cut), env=_env(hold_at=5), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:  # wait until the run holds after step 5, then preempt
        seen.append(line)
        if line.startswith("holding after step 5 "):
            proc.send_signal(signal.SIGTERM)
            break
    out = "".join(seen) + proc.stdout.read()
    assert proc.wait(timeout=120) == 0, out
    assert "SIGTERM received: saved step 5 " in out, out
    assert sorted(int(d) for d in os.listdir(cut / "checkpoints") if d.isdigit()) == [5]

    resumed = subprocess.run(_cmd(tiny_corpus, cut), env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed from step 5" in resumed.stdout
    _assert_equal_runs(uninterrupted, cut)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_signal_to_the_process_group_with_workers_saves_and_resume_is_exact(
        signum, uninterrupted, tiny_corpus, tmp_path):
    """A cluster's preemption notice (SLURM, Kubernetes, TPU maintenance) and Ctrl-C reach
    the decoding workers too: they must keep serving until the step is saved."""
    at = random.Random().randint(2, STEPS - 2)  # (the stream does not depend on the worker count)
    cut, log = tmp_path / "cut", tmp_path / "cut.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(_cmd(tiny_corpus, cut, "data.workers=2"), env=_env(hold_at=at),
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_hold(proc, log)
        os.killpg(proc.pid, signum)  # the whole group: the run and its two workers
        assert proc.wait(timeout=120) == 0, f"signalled at step {at}:\n{log.read_text()}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = log.read_text()
    assert f"{signal.Signals(signum).name} received: saved step" in out, out
    assert "Traceback" not in out and "Error" not in out, out  # workers say nothing
    stopped = int(out.split("saved step ")[1].split()[0])
    assert stopped == at, out
    assert sorted(int(d) for d in os.listdir(cut / "checkpoints") if d.isdigit()) == [stopped]
    if signum == signal.SIGINT:
        return  # the resume is the same as after SIGTERM

    resumed = subprocess.run(_cmd(tiny_corpus, cut, "data.workers=2"), env=_env(),
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed from step {stopped}" in resumed.stdout
    _assert_equal_runs(uninterrupted, cut)


def test_nonfinite_loss_stops_or_skips(tiny_config, tmp_path):
    from strongaudio_jax.train import trainer
    with pytest.raises(trainer.NonFiniteLossError,
                       match=r"loss is nan .* at step \d+; last good checkpoint: none"):
        trainer.train(tiny_config("optimizer.lr=1e30", "train.steps=6", "probe.tasks=()"),
                      str(tmp_path / "stop"))
    assert not (tmp_path / "stop" / "checkpoints" / "6").exists()  # nothing bad was saved
    out = trainer.train(tiny_config("optimizer.lr=1e30", "train.steps=6", "probe.tasks=()",
                                    "train.skip_nonfinite=True"), str(tmp_path / "skip"))
    assert sum(h["nonfinite"] for h in out["history"]) >= 1
    import jax
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(out["state"].params))
