"""Error exits keep their checkpoint: saves are asynchronous and trail the step, so a run that
stops on an error (NaN loss, bad data) first waits for the save in flight; the step it names
is committed, and the one-line message is the last thing printed (no orbax traceback)."""

import os
import shutil
import subprocess

import pytest

from tests.test_pipeline_bad_data import BAD, _shard
from tests.test_preemption import _cmd, _env

pytestmark = pytest.mark.slow  # training processes that end on an error


def _steps(checkpoints):
    names = os.listdir(checkpoints) if checkpoints.is_dir() else []
    assert not [n for n in names if "tmp" in n], names  # nothing left half-written
    return sorted(int(n) for n in names if n.isdigit())


def _run(*args):
    r = subprocess.run(list(args), env=_env(), capture_output=True, text=True, timeout=600)
    return r.returncode, r.stdout, r.stderr


def test_nonfinite_loss_names_a_committed_checkpoint(tiny_corpus, tmp_path):
    rc, out, err = _run(*_cmd(tiny_corpus, tmp_path / "w", "optimizer.lr=1e30",
                              "train.checkpoint_every=1"))
    assert rc == 2, out + err
    assert "Traceback" not in out + err, out + err
    last = err.strip().splitlines()[-1]
    assert last.startswith("strongaudio train: error: loss is nan"), err
    named = int(last.split("last good checkpoint: step ")[1].split()[0])
    assert named in _steps(tmp_path / "w" / "checkpoints") and named == max(
        _steps(tmp_path / "w" / "checkpoints")), out + err


def test_data_error_keeps_the_checkpoint_in_flight(tiny_corpus, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(next(tiny_corpus.glob("train-*.tfrecord")), data / "a.tfrecord")
    bad = _shard(data / "b.tfrecord", BAD["undecodable_audio"][0], good=3)
    cmd = _cmd(tiny_corpus, tmp_path / "w", "train.checkpoint_every=1", "data.workers=2",
               "train.steps=40")
    cmd = [a if not a.startswith("data.train_files=") else f"data.train_files={data}/*.tfrecord"
           for a in cmd]
    rc, out, err = _run(*cmd)
    assert rc == 2, out + err
    assert "Traceback" not in out + err, out + err
    assert err.strip().splitlines()[-1].startswith(
        f"strongaudio train: error: {bad} record 2 (clip 'bad'): audio cannot be decoded"), err
    assert err.strip().endswith("(data.skip_bad=True skips such records and counts them)"), err
    failed = int(out.split("stopped by an error at step ")[1].split(";")[0])
    named = int(out.split("last complete checkpoint: step ")[1].split()[0])
    assert _steps(tmp_path / "w" / "checkpoints")[-1] == named == failed - 1, out
