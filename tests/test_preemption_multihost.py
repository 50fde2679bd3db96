"""Preemption of a 2-process run (jax.distributed on loopback, gloo collectives): SIGTERM to one
process reaches the other through JAX's preemption service (Ctrl-C, SIGINT, is turned into
it); both stop at the same step, save it together and exit 0, and running the same command
again resumes from that step. (SIGTERM to both: tests/test_launch.py, through launch/local.sh.)"""

import os
import signal
import subprocess

import pytest

from tests.conftest import REPO
from tests.test_multiprocess import _free_port, _launch, _launch_args


LONG = 100_000  # steps: a run that cannot end before it is signalled


def _committed(checkpoints):
    return sorted(int(d) for d in os.listdir(checkpoints) if d.isdigit()) if checkpoints.is_dir() else []


@pytest.mark.parametrize("signum, signalled", [(signal.SIGTERM, (1,)), (signal.SIGINT, (0, 1))],
                         ids=["sigterm-to-one", "ctrl-c-to-both"])
def test_a_signal_stops_both_processes_at_the_same_step_and_resume(signum, signalled,
                                                                   tiny_corpus, tmp_path):
    workdir = tmp_path / "run"
    # checkpoint_every is larger than the run: the only checkpoint is the preemption's.
    # So many steps that the signal finds the run going however loaded the machine; the
    # assertions hold wherever it stops.
    procs = _launch(tiny_corpus, workdir, _free_port(), LONG, f"train.checkpoint_every={LONG}")
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
    assert 3 <= stopped < LONG
    assert _committed(workdir / "checkpoints") == [stopped]  # one save, made by both together
    data_state = sorted(f for f in os.listdir(workdir / "checkpoints" / str(stopped) / "data")
                        if f.startswith("process_"))
    assert data_state == ["process_0-of-2.json", "process_1-of-2.json"]
    if len(signalled) > 1:
        return  # the resume is the same as after one signal

    final = stopped + 2
    procs = _launch(tiny_corpus, workdir, _free_port(), final, f"train.checkpoint_every={LONG}")
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert f"resumed from step {stopped}" in outs[0], outs[0][-3000:]
    assert f"step {stopped + 1:>6}/{final}" in outs[0] and f"step {final:>6}/{final}" in outs[0]
    assert f"step {stopped:>6}/" not in outs[0]  # nothing before the resume point is redone
    assert _committed(workdir / "checkpoints") == [stopped, final]


# A launcher (as srun or a pod's init would be) that keeps running when its process group is
# signalled, starts the two processes in its group, and exits when they have.
_LAUNCHER = """
import json, signal, subprocess, sys
for s in (signal.SIGTERM, signal.SIGINT):
    signal.signal(s, lambda *a: None)  # a handler, not SIG_IGN: the children get the default
runs = json.loads(sys.argv[1])
procs = [subprocess.Popen(r["cmd"], env=r["env"], stdout=open(r["log"], "w"),
                          stderr=subprocess.STDOUT) for r in runs]
sys.exit(max(p.wait() for p in procs))
"""


def test_sigterm_to_the_process_group_with_workers_stops_both_and_resumes(tiny_corpus, tmp_path):
    """What SLURM, Kubernetes and TPU maintenance do: SIGTERM to every process of the job,
    decoding workers included (they ignore it and keep serving until the save is done)."""
    import json
    import sys
    import time

    workdir = tmp_path / "run"
    port = _free_port()
    extra = (f"train.checkpoint_every={LONG}", "data.workers=2")
    runs = [{"cmd": _launch_args(tiny_corpus, workdir, LONG, *extra),
             "log": str(tmp_path / f"p{pid}.log"),
             "env": dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
                         XLA_FLAGS="--xla_force_host_platform_device_count=2",
                         JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                         JAX_PROCESS_ID=str(pid))} for pid in range(2)]
    launcher = subprocess.Popen([sys.executable, "-c", _LAUNCHER, json.dumps(runs)],
                                start_new_session=True)
    metrics = workdir / "metrics.jsonl"
    try:
        while launcher.poll() is None and not (  # process 0 logs every step: wait for step 3
                metrics.exists() and any(json.loads(line)["step"] >= 3 for line in
                                         metrics.read_text().splitlines() if '"loss"' in line)):
            time.sleep(0.01)
        assert launcher.poll() is None, [open(r["log"]).read() for r in runs]
        os.killpg(launcher.pid, signal.SIGTERM)  # the launcher, both processes, their workers
        rc = launcher.wait(timeout=300)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    outs = [open(r["log"]).read() for r in runs]
    assert rc == 0, outs
    assert "Traceback" not in outs[0] + outs[1], outs
    stopped = int(outs[0].split("saved step ")[1].split()[0])
    assert _committed(workdir / "checkpoints") == [stopped]

    final = stopped + 2
    procs = _launch(tiny_corpus, workdir, _free_port(), final, *extra)
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert f"resumed from step {stopped}" in outs[0], outs[0][-3000:]
    assert _committed(workdir / "checkpoints") == [stopped, final]
