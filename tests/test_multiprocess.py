"""Two processes on loopback (jax.distributed + gloo): train, checkpoint, get killed, resume
with two processes, and restore the checkpoint in one process with another device count."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # two training processes, killed and resumed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_env(pid: int, port: int) -> dict:
    """The environment of process `pid` of 2 joined on 127.0.0.1:`port`, 2 CPU devices each."""
    return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
                XLA_FLAGS="--xla_force_host_platform_device_count=2",
                JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                JAX_PROCESS_ID=str(pid))


def run_two_hosts(cmd: list, timeout: float = 300) -> list[str]:
    """`cmd` as processes 0 and 1 of a 2-process job on loopback; both must exit 0. Their
    outputs (stdout and stderr), in process order."""
    port = _free_port()
    procs = [subprocess.Popen(cmd, env=host_env(pid, port), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for pid in range(2)]
    outs = [p.communicate(timeout=timeout)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    return outs


def _launch_args(corpus, workdir, steps, *extra):
    return [sys.executable, "-m", "strongaudio_jax.cli", "train",
            "--config", f"{REPO}/configs/mtc.py:smoke", "--workdir", str(workdir),
            f"data.train_files={corpus}/train-*.tfrecord",
            f"data.eval_files={corpus}/heldout-*.tfrecord", "data.batch_size=8",
            "data.clip_seconds=1.0", "data.vocab_min_count=1", f"train.steps={steps}",
            "train.log_every=1", "train.checkpoint_every=4", "probe.tasks=()", *extra]


def _launch(corpus, workdir, port, steps, *extra):
    return [subprocess.Popen(_launch_args(corpus, workdir, steps, *extra),
                             env=host_env(pid, port), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for pid in range(2)]


def test_two_processes_train_die_resume_and_restore_on_one(tiny_corpus, tmp_path):
    workdir = tmp_path / "run"
    # One tag per class: each clip's other two tags are outside the vocabulary (counted).
    vocab = tmp_path / "label_3.json"
    vocab.write_text('{"0": "tone", "1": "noise", "2": "click"}')
    extra = (f"data.vocab_file={vocab}",)
    procs = _launch(tiny_corpus, workdir, _free_port(), 100_000, *extra)  # killed long before
    seen = []
    for line in procs[0].stdout:  # process 0 logs; kill both once a checkpoint exists
        seen.append(line)
        if line.startswith("step      6/"):
            break
    else:
        pytest.fail("".join(seen) + procs[1].stdout.read())
    assert "processes: 2" in "".join(seen) and "'data': 4" in "".join(seen)
    # Checkpoints are written asynchronously: wait until step 4's is committed (renamed from
    # its temporary name), then kill; training may have committed a later one meanwhile.
    checkpoints = workdir / "checkpoints"
    while not (checkpoints / "4").is_dir():
        assert all(p.poll() is None for p in procs), "a process ended before checkpoint 4"
        time.sleep(0.05)
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
    latest = max(int(d) for d in os.listdir(checkpoints) if d.isdigit())
    assert latest >= 4, os.listdir(checkpoints)

    final = latest + 8  # a multiple of checkpoint_every (4)
    procs = _launch(tiny_corpus, workdir, _free_port(), final, *extra)
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert f"resumed from step {latest}" in outs[0], outs[0]
    assert f"step {final:>6}/{final}" in outs[0]
    # Counted by each host for its share, restored from each host's state, logged pod-wide.
    assert (f"vocabulary: {2 * 8 * final} tag occurrence(s) in {8 * final} training record(s) "
            "in all") in outs[0], outs[0]
    data_state = sorted(f for f in os.listdir(checkpoints / str(final) / "data")
                        if f.startswith("process_"))
    assert data_state == ["process_0-of-2.json", "process_1-of-2.json"]

    # One process cannot continue the 2-process data stream: a clear refusal, not a traceback.
    one = subprocess.run(_launch_args(tiny_corpus, workdir, final + 4, *extra), capture_output=True,
                         text=True, env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO)))
    assert one.returncode == 2 and "written by 2 process(es)" in one.stderr, one.stderr[-2000:]

    # One process, three devices: the parameters restore (as plain arrays) and are finite.
    code = ("import numpy as np, jax;"
            "from strongaudio_jax.train import checkpoint;"
            f"s = checkpoint.load_for_eval({str(workdir)!r});"
            "leaves = jax.tree.leaves(s['params']);"
            "assert jax.device_count() == 3 and leaves;"
            "assert all(np.isfinite(np.asarray(x)).all() for x in leaves);"
            "print('restored', int(s['step']), sum(x.size for x in leaves))")
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
               XLA_FLAGS="--xla_force_host_platform_device_count=3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith(f"restored {final} "), out.stderr[-3000:]


_READ_ONE_EPOCH = r"""
import json, sys
import numpy as np
from strongaudio_jax.parallel import distributed
distributed.initialize_from_env()
import jax
from strongaudio_jax.data import pipeline
from strongaudio_jax.parallel import mesh as mesh_lib
sys.path.insert(0, {repo!r})
from tests.test_pipeline import feat, ids_of

files = pipeline.expand_paths({pattern!r})
ds = pipeline.train_dataset(files, feat(), 8, seed=0, workers={workers})
it = iter(ds)
mesh = mesh_lib.make_mesh({{"data": -1}})
ids, shapes = [], []
for _ in range(6):  # 24 records per host = 6 batches of 4 = one epoch of this host's share
    local = next(it)
    ids += ids_of(local)
    placed = mesh_lib.global_batch({{k: local[k] for k in ("waveform", "length", "valid")}}, mesh)
    shapes.append(list(placed["waveform"].shape))
it.close()
print("RESULT " + json.dumps({{"process": jax.process_index(), "ids": ids, "shapes": shapes,
                              "devices": jax.device_count()}}), flush=True)
"""


def test_two_processes_read_disjoint_files_and_every_record_once_per_epoch(tmp_path):
    import json

    from tests.test_pipeline import write_corpus

    for f in range(4):
        write_corpus(tmp_path / f"shard{f}.tfrecord", f"shard{f}", 12)
    script = tmp_path / "read.py"
    # two decoding worker processes inside each of the two JAX processes
    script.write_text(_READ_ONE_EPOCH.format(repo=str(REPO), workers=2,
                                             pattern=str(tmp_path / "shard*.tfrecord")))
    outs = run_two_hosts([sys.executable, str(script)])
    got = [json.loads(next(line[7:] for line in o.splitlines() if line.startswith("RESULT ")))
           for o in outs]
    files = [{i.split("-")[0] for i in r["ids"]} for r in got]
    assert files[0] and files[1] and not files[0] & files[1], files  # disjoint files
    everything = sorted(f"shard{f}-{i}" for f in range(4) for i in range(12))
    assert sorted(got[0]["ids"] + got[1]["ids"]) == everything  # each record exactly once
    assert all(r["devices"] == 4 and r["shapes"] == [[8, 1600]] * 6 for r in got)
