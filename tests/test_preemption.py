"""SIGTERM mid-run: the step finishes, a checkpoint is saved, exit 0; the resumed run replays
exactly what an uninterrupted run does (losses bit-identical on CPU, same final parameters)."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # training processes stopped by SIGTERM and resumed


def _cmd(corpus, workdir, *extra):
    return [sys.executable, "-m", "strongaudio_jax.cli", "train",
            "--config", f"{REPO}/configs/mtc.py:smoke", "--workdir", str(workdir),
            f"data.train_files={corpus}/train-*.tfrecord", f"data.eval_files={corpus}/heldout-*.tfrecord",
            "data.batch_size=8", "data.clip_seconds=1.0", "data.vocab_min_count=1",
            "train.steps=24", "train.log_every=1", "train.checkpoint_every=100", "probe.tasks=()",
            *extra]


def _env():
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    return env


def _losses(workdir):
    rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_sigterm_saves_and_resume_is_exact(tiny_corpus, tmp_path):
    full = tmp_path / "full"
    subprocess.run(_cmd(tiny_corpus, full), env=_env(), check=True, capture_output=True)

    cut = tmp_path / "cut"
    proc = subprocess.Popen(_cmd(tiny_corpus, cut), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # wait until training is under way, then preempt
        if line.startswith("step      5/"):
            proc.send_signal(signal.SIGTERM)
            break
    out = proc.stdout.read()
    assert proc.wait(timeout=120) == 0, out
    assert "SIGTERM received: saved step" in out, out
    stopped = int(out.split("saved step ")[1].split()[0])
    assert 5 <= stopped < 24
    assert sorted(int(d) for d in os.listdir(cut / "checkpoints") if d.isdigit()) == [stopped]

    resumed = subprocess.run(_cmd(tiny_corpus, cut), env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed from step {stopped}" in resumed.stdout
    a, b = _losses(full), _losses(cut)
    assert sorted(b) == list(range(1, 25))
    assert [a[s] for s in range(1, 25)] == [b[s] for s in range(1, 25)]  # bit-identical

    import orbax.checkpoint as ocp
    params = [ocp.StandardCheckpointer().restore(d / "checkpoints" / "24" / "state")["params"]
              for d in (full, cut)]
    import jax
    for x, y in zip(jax.tree.leaves(params[0]), jax.tree.leaves(params[1])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


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
