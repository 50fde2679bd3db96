"""Preemption of a 2-process run (jax.distributed on loopback, gloo collectives): SIGTERM to one
process reaches the other through JAX's preemption service (Ctrl-C, SIGINT, is turned into
it); both stop at the same step, save it together and exit 0, and running the same command
again resumes from that step. (SIGTERM to both: tests/test_launch.py, through launch/local.sh.)"""

import os
import signal

import pytest

from tests.test_multiprocess import _free_port, _launch


def _committed(checkpoints):
    return sorted(int(d) for d in os.listdir(checkpoints) if d.isdigit()) if checkpoints.is_dir() else []


@pytest.mark.parametrize("signum, signalled", [(signal.SIGTERM, (1,)), (signal.SIGINT, (0, 1))],
                         ids=["sigterm-to-one", "ctrl-c-to-both"])
def test_a_signal_stops_both_processes_at_the_same_step_and_resume(signum, signalled,
                                                                   tiny_corpus, tmp_path):
    workdir = tmp_path / "run"
    # checkpoint_every is larger than the run: the only checkpoint is the preemption's.
    procs = _launch(tiny_corpus, workdir, _free_port(), 200, "train.checkpoint_every=1000")
    seen = []
    for line in procs[0].stdout:  # process 0 logs every step; preempt at step 3
        seen.append(line)
        if line.startswith("step      3/"):
            for i in signalled:
                procs[i].send_signal(signum)
            break
    outs = ["".join(seen) + procs[0].communicate(timeout=300)[0],
            procs[1].communicate(timeout=300)[0]]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "received: saved step " in outs[0], outs[0][-3000:]
    stopped = int(outs[0].split("saved step ")[1].split()[0])
    assert 3 <= stopped < 200
    assert _committed(workdir / "checkpoints") == [stopped]  # one save, made by both together
    data_state = sorted(f for f in os.listdir(workdir / "checkpoints" / str(stopped) / "data")
                        if f.startswith("process_"))
    assert data_state == ["process_0-of-2.json", "process_1-of-2.json"]
    if len(signalled) > 1:
        return  # the resume is the same as after one signal

    final = stopped + 2
    procs = _launch(tiny_corpus, workdir, _free_port(), final, "train.checkpoint_every=1000")
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert f"resumed from step {stopped}" in outs[0], outs[0][-3000:]
    assert f"step {stopped + 1:>6}/{final}" in outs[0] and f"step {final:>6}/{final}" in outs[0]
    assert f"step {stopped:>6}/" not in outs[0]  # nothing before the resume point is redone
    assert _committed(workdir / "checkpoints") == [stopped, final]
