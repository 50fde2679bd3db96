"""The launchers in launch/: their dry runs (the gcloud / sbatch / srun commands and the
environment they would use), the TPU worker's detached start and stop, local.sh's process
supervision, an end-to-end 2-process run with resume, shellcheck, and distributed.plan()."""

import os
import shlex
import shutil
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO

LAUNCH = REPO / "launch"


def _sh(*args, env=None, check=True, timeout=60):
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                         env=dict(os.environ, **(env or {})), cwd=REPO)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def _commands(stdout: str) -> list[list[str]]:
    """The '+ ...' lines of a dry run, parsed back into argument lists (the printed quoting
    must be valid shell)."""
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def _exports(stdout: str) -> dict:
    return {c[1].split("=", 1)[0]: c[1].split("=", 1)[1] for c in _commands(stdout)
            if c[0] == "export"}


# ---------------------------------------------------------------------------- TPU pods

def test_tpu_pod_dry_run_create_run_stop_delete():
    where = ["--zone", "us-east5-a", "--dry-run"]
    out = _sh(LAUNCH / "tpu_pod.sh", "create", "pod", "--accelerator-type", "v5p-64", "--spot",
              *where).stdout
    assert "v5p-64: 32 chips on 8 worker(s)" in out
    assert _commands(out)[-1] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "pod", "--zone",
                                  "us-east5-a", "--accelerator-type", "v5p-64", "--version",
                                  "v2-alpha-tpuv5", "--spot"]
    out = _sh(LAUNCH / "tpu_pod.sh", "create", "pod", "--accelerator-type", "v5e-256", "--queued",
              "--project", "proj", *where).stdout
    assert "v5e-256: 256 chips on 64 worker(s)" in out
    assert _commands(out)[0] == ["gcloud", "compute", "tpus", "queued-resources", "create", "pod",
                                 "--zone", "us-east5-a", "--project", "proj", "--node-id", "pod",
                                 "--accelerator-type", "v5e-256", "--runtime-version",
                                 "v2-alpha-tpuv5-lite"]

    out = _sh(LAUNCH / "tpu_pod.sh", "run", "pod", "configs/vit_b_mtc.py:v5p-64", "gs://b/run",
              "data.train_files=gs://b/c/train-*.tfrecord", "--env", "LIBTPU_INIT_ARGS=--a=1 --b",
              *where).stdout
    ssh = [c for c in _commands(out) if c[4] == "ssh"]
    assert all(c[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod"] for c in ssh)
    assert [c[8] for c in ssh] == ["--worker=all"] * 3 + ["--worker=0"]  # mkdir, install, start; follow
    assert "pip install -q -e \".[tpu]\"" in ssh[1][10]
    start = shlex.split(ssh[2][10])  # the command every worker runs
    assert start == ["cd", "strongaudio_jax", "&&", "env", "STRONGAUDIO_DISTRIBUTED=1",
                     "LIBTPU_INIT_ARGS=--a=1 --b", "launch/tpu_worker.sh", "start",
                     "configs/vit_b_mtc.py:v5p-64", "gs://b/run",
                     "data.train_files=gs://b/c/train-*.tfrecord"]
    assert shlex.split(ssh[3][10])[-1] == "follow"
    assert any(c[4] == "scp" and c[-1] == "--worker=all" for c in _commands(out))

    stop = _commands(_sh(LAUNCH / "tpu_pod.sh", "stop", "pod", *where).stdout)
    assert stop[0][8] == "--worker=all" and shlex.split(stop[0][10])[-1] == "stop"
    delete = _commands(_sh(LAUNCH / "tpu_pod.sh", "delete", "pod", "--queued", *where).stdout)
    assert delete == [["gcloud", "compute", "tpus", "queued-resources", "delete", "pod", "--zone",
                       "us-east5-a", "--force", "--quiet"]]


def test_tpu_pod_usage_errors_are_one_clear_line():
    assert "commands:" in _sh(LAUNCH / "tpu_pod.sh", "help").stdout
    for args, message in [(["launch"], "unknown command 'launch'"),
                          (["create", "pod", "--zone", "z"], "create needs --accelerator-type"),
                          (["run", "pod"], "no zone"),
                          (["run", "pod", "--zone", "z", "cfg"], "run needs NAME CONFIG WORKDIR"),
                          (["create", "p", "--zone", "z", "--accelerator-type", "v5p-8",
                            "--queued", "--preemptible"], "take --spot, not --preemptible")]:
        out = _sh(LAUNCH / "tpu_pod.sh", *args, check=False, env={"ZONE": ""})
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)


def test_tpu_pod_dry_run_of_an_inference_job_and_of_a_job_with_its_own_arguments():
    where = ["--zone", "us-east5-a", "--dry-run", "--no-install"]
    out = _sh(LAUNCH / "tpu_pod.sh", "run", "pod", "--job", "tag", "configs/tag.py:v5p-64",
              "model.path=gs://b/mtc", "input.files=gs://b/c/*.tfrecord",
              "output.dir=gs://b/tagged", "--accelerator-type", "v5p-64", *where).stdout
    assert "v5p-64: 32 chips on 8 worker(s), one process each" in out
    ssh = [c for c in _commands(out) if c[4] == "ssh"]
    assert [c[8] for c in ssh] == ["--worker=all", "--worker=0"]  # start; follow
    start = shlex.split(ssh[0][10])
    assert start == ["cd", "strongaudio_jax", "&&", "env", "STRONGAUDIO_DISTRIBUTED=1",
                     "launch/tpu_worker.sh", "start", "--job", "tag", "configs/tag.py:v5p-64",
                     "model.path=gs://b/mtc", "input.files=gs://b/c/*.tfrecord",
                     "output.dir=gs://b/tagged"]
    out = _sh(LAUNCH / "tpu_pod.sh", "run", "pod", "--job", "finetune", *where, "--",
              "--from", "gs://b/e", "--task", "demo", "--out", "gs://b/ft").stdout
    assert shlex.split(_commands(out)[0][10])[6:] == [
        "start", "--job", "finetune", "--", "--from", "gs://b/e", "--task", "demo", "--out",
        "gs://b/ft"]
    for args, message in [(["--job", "caption"], "run needs NAME CONFIG [key=value ...]"),
                          (["--job", "export", "--accelerator-type", "v5p-64", "--", "--out", "o"],
                           "strongaudio export runs in one process")]:
        out = _sh(LAUNCH / "tpu_pod.sh", "run", "pod", *where, *args, check=False)
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)


def _fake_trainer(tmp_path):
    """A stand-in for `python3 -m strongaudio_jax.cli train`: logs its arguments and a step,
    then waits for SIGTERM and exits 0 as the trainer does."""
    script = tmp_path / "fake_python"
    script.write_text(f"#!{sys.executable}\n" + """import signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
print("args", sys.argv[1:], flush=True)
print("step 1", flush=True)
signal.sigwait([signal.SIGTERM])
print("SIGTERM received: saved step 1", flush=True)
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_tpu_worker_starts_detached_refuses_a_second_start_and_stops(tmp_path):
    env = {"RUN_DIR": str(tmp_path / "run"), "PYTHON": str(_fake_trainer(tmp_path))}
    worker = LAUNCH / "tpu_worker.sh"
    out = _sh(worker, "start", "cfg.py:x", "gs://b/w", "a=1", env=env)
    assert "started strongaudio train (pid" in out.stdout
    log = tmp_path / "run" / "job.log"
    assert "running (pid" in _sh(worker, "status", env=env).stdout
    again = _sh(worker, "start", "cfg.py:x", "gs://b/w", env=env, check=False)
    assert again.returncode == 2 and "already running" in again.stderr
    deadline = time.monotonic() + 60
    while "step 1" not in log.read_text():  # the trainer is up (and listens for SIGTERM)
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    assert "SIGTERM sent to pid" in _sh(worker, "stop", env=env).stdout
    follow = _sh(worker, "follow", env=env)  # returns when the run has ended
    text = log.read_text()
    assert ("args ['-m', 'strongaudio_jax.cli', 'train', '--config', 'cfg.py:x', '--workdir', "
            "'gs://b/w', 'a=1']") in text
    assert "SIGTERM received: saved step 1" in text and "exit status 0" in text
    assert "not running" in _sh(worker, "status", env=env).stdout
    assert "exit status 0" in follow.stdout


def test_tpu_worker_starts_an_inference_job(tmp_path):
    env = {"RUN_DIR": str(tmp_path / "run"), "PYTHON": str(_fake_trainer(tmp_path))}
    worker = LAUNCH / "tpu_worker.sh"
    assert "started strongaudio caption" in _sh(worker, "start", "--job", "caption", "cfg.py:x",
                                                "output.dir=gs://b/o", env=env).stdout
    log = tmp_path / "run" / "job.log"
    deadline = time.monotonic() + 60
    while "step 1" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    _sh(worker, "stop", env=env)
    _sh(worker, "follow", env=env)
    assert ("args ['-m', 'strongaudio_jax.cli', 'caption', '--config', 'cfg.py:x', "
            "'output.dir=gs://b/o']") in log.read_text()


# ---------------------------------------------------------------------------- GPU and SLURM

def test_gpu_env_flags_are_known_to_this_jaxlib():
    out = _sh("bash", "-c", "source launch/common.sh; DRY_RUN=1; source launch/gpu_env.sh",
              env={"XLA_FLAGS": ""}).stdout
    env = _exports(out)
    flags = env["XLA_FLAGS"].split()
    assert "--xla_gpu_enable_latency_hiding_scheduler=true" in flags and len(flags) >= 4
    assert env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.9" and env["NCCL_DEBUG"] == "WARN"
    # XLA parses every GPU flag on any backend and aborts on one it does not know.
    check = _sh(sys.executable, "-c", "import jax; print(jax.numpy.ones(3).sum())",
                env={"XLA_FLAGS": env["XLA_FLAGS"], "JAX_PLATFORMS": "cpu"}, check=False)
    assert check.returncode == 0 and "3.0" in check.stdout, check.stderr[-2000:]
    # A flag already set by the user is kept, not doubled.
    out = _sh("bash", "-c", "source launch/common.sh; DRY_RUN=1; source launch/gpu_env.sh",
              env={"XLA_FLAGS": "--xla_gpu_enable_latency_hiding_scheduler=false"}).stdout
    flags = _exports(out)["XLA_FLAGS"].split()
    assert [f for f in flags if "latency_hiding" in f] == ["--xla_gpu_enable_latency_hiding_scheduler=false"]


def test_gpu_dry_run_one_process_or_one_per_gpu():
    out = _sh(LAUNCH / "gpu.sh", "--dry-run", "configs/vit_b_mtc.py:gpu8", "/runs/b", "a=1").stdout
    assert _exports(out)["NCCL_LAUNCH_MODE"] == "GROUP"
    assert _commands(out)[-1][1:] == ["-m", "strongaudio_jax.cli", "train", "--config",
                                      "configs/vit_b_mtc.py:gpu8", "--workdir", "/runs/b", "a=1"]
    out = _sh(LAUNCH / "gpu.sh", "--dry-run", "--per-gpu", "cfg", "/runs/b", env={"GPUS": "4"}).stdout
    env = _exports(out)
    assert env["JAX_NUM_PROCESSES"] == "4" and env["JAX_COORDINATOR_ADDRESS"].startswith("127.0.0.1:")
    procs = [c for c in _commands(out) if c[0] == "env"]
    assert [c[1:3] for c in procs] == [[f"JAX_PROCESS_ID={i}", f"JAX_LOCAL_DEVICE_IDS={i}"]
                                       for i in range(4)]


def test_slurm_dry_run_submit_batch_step_and_task(tmp_path):
    out = _sh(LAUNCH / "slurm.sh", "--dry-run", "--nodes", "4", "--per-gpu", "--partition", "gpu",
              "cfg.py:gpu-2x8", "/shared/run", "data.train_files=/c/train-*.tfrecord").stdout
    assert "4 node(s) x 8 GPU(s), 32 process(es)" in out
    assert _commands(out) == [["sbatch", "--job-name=strongaudio", "--nodes=4",
                               "--ntasks-per-node=8", "--gpus-per-node=8", "--partition=gpu",
                               "launch/slurm.sbatch", "cfg.py:gpu-2x8", "/shared/run",
                               "data.train_files=/c/train-*.tfrecord"]]

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "scontrol").write_text("#!/bin/sh\n[ \"$1 $2 $3\" = 'show hostnames gpu[07-08]' ] "
                                   "&& printf 'gpu07\\ngpu08\\n'\n")
    (fake / "scontrol").chmod(0o755)
    slurm = {"DRY_RUN": "1", "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu[07-08]",
             "SLURM_NTASKS": "2", "SLURM_JOB_NUM_NODES": "2", "XLA_FLAGS": "",
             "PATH": f"{fake}:{os.environ['PATH']}"}
    out = _sh(LAUNCH / "slurm.sbatch", "cfg.py:gpu-2x8", "/shared/run", "a=1", env=slurm).stdout
    env = _exports(out)
    assert env["JAX_COORDINATOR_ADDRESS"] == f"gpu07:{4242 % 4096 + 61440}"
    assert env["JAX_NUM_PROCESSES"] == "2" and "latency_hiding" in env["XLA_FLAGS"]
    srun = _commands(out)[-1]
    assert srun[:3] == ["srun", "--kill-on-bad-exit=1", "--label"]
    assert srun[3].endswith("launch/slurm.sbatch") and srun[4:] == ["--task", "cfg.py:gpu-2x8",
                                                                    "/shared/run", "a=1"]
    # One task per node: all its GPUs; one per GPU: the GPU numbered SLURM_LOCALID.
    for ntasks, ids in (("2", None), ("16", "3")):
        task = dict(slurm, SLURM_NTASKS=ntasks, SLURM_PROCID="11", SLURM_LOCALID="3")
        out = _sh(LAUNCH / "slurm.sbatch", "--task", "cfg.py", "/w", "a=1", env=task).stdout
        env = _exports(out)
        assert env["JAX_PROCESS_ID"] == "11" and env.get("JAX_LOCAL_DEVICE_IDS") == ids
        assert _commands(out)[-1][1:] == ["-m", "strongaudio_jax.cli", "train", "--config",
                                          "cfg.py", "--workdir", "/w", "a=1"]
    out = _sh(LAUNCH / "slurm.sbatch", "cfg", "/w", env={"SLURM_JOB_ID": ""}, check=False)
    assert out.returncode == 2 and "run under SLURM" in out.stderr


def test_slurm_and_gpu_dry_run_of_an_inference_job(tmp_path):
    out = _sh(LAUNCH / "slurm.sh", "--dry-run", "--nodes", "2", "--job", "tag",
              "configs/tag.py:gpu-2x8", "model.path=/s/mtc", "output.dir=/s/tagged").stdout
    assert "strongaudio-tag: 2 node(s) x 8 GPU(s), 2 process(es)" in out
    assert _commands(out) == [["sbatch", "--job-name=strongaudio-tag", "--nodes=2",
                               "--ntasks-per-node=1", "--gpus-per-node=8", "launch/slurm.sbatch",
                               "--job", "tag", "configs/tag.py:gpu-2x8", "model.path=/s/mtc",
                               "output.dir=/s/tagged"]]
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "scontrol").write_text("#!/bin/sh\nprintf 'gpu01\\ngpu02\\n'\n")
    (fake / "scontrol").chmod(0o755)
    slurm = {"DRY_RUN": "1", "SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "gpu[01-02]",
             "SLURM_NTASKS": "2", "SLURM_JOB_NUM_NODES": "2", "XLA_FLAGS": "",
             "PATH": f"{fake}:{os.environ['PATH']}"}
    job = ["--job", "tag", "configs/tag.py:gpu-2x8", "output.dir=/s/tagged"]
    out = _sh(LAUNCH / "slurm.sbatch", *job, env=slurm).stdout
    assert _exports(out)["JAX_NUM_PROCESSES"] == "2"
    assert _commands(out)[-1][4:] == ["--task", *job]
    out = _sh(LAUNCH / "slurm.sbatch", "--task", *job, env=dict(slurm, SLURM_PROCID="1")).stdout
    assert _exports(out)["JAX_PROCESS_ID"] == "1"
    assert _commands(out)[-1][1:] == ["-m", "strongaudio_jax.cli", "tag", "--config",
                                      "configs/tag.py:gpu-2x8", "output.dir=/s/tagged"]
    # A job that does not split its work is refused on several processes, and runs on one.
    out = _sh(LAUNCH / "slurm.sh", "--dry-run", "--job", "eval", "--", "--model", "m",
              check=False)
    assert out.returncode == 2 and "strongaudio eval runs in one process" in out.stderr
    out = _sh(LAUNCH / "slurm.sh", "--dry-run", "--nodes", "1", "--job", "eval", "--",
              "--model", "m").stdout
    assert _commands(out)[0][-6:] == ["launch/slurm.sbatch", "--job", "eval", "--", "--model", "m"]
    out = _sh(LAUNCH / "gpu.sh", "--dry-run", "--job", "caption", "configs/caption.py:gpu8",
              "output.dir=/o").stdout
    assert _commands(out)[-1][1:] == ["-m", "strongaudio_jax.cli", "caption", "--config",
                                      "configs/caption.py:gpu8", "output.dir=/o"]


def test_distributed_plan_from_the_environment():
    from strongaudio_jax.parallel import distributed

    assert distributed.plan({}) is None
    explicit = distributed.plan({"JAX_COORDINATOR_ADDRESS": "h:1234", "JAX_NUM_PROCESSES": "4",
                                 "JAX_PROCESS_ID": "2", "JAX_LOCAL_DEVICE_IDS": "2",
                                 "SLURM_NTASKS": "4", "SLURM_LOCALID": "0"})
    assert explicit == dict(coordinator_address="h:1234", num_processes=4, process_id=2,
                            local_device_ids=[2], cluster_detection_method="deactivate")
    with pytest.raises(RuntimeError, match="JAX_PROCESS_ID is not set"):
        distributed.plan({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2"})
    slurm = {"SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "0", "SLURM_NODEID": "1",
             "SLURM_JOB_ID": "77", "SLURM_JOB_NODELIST": "node[003-004]",
             "SLURM_TASKS_PER_NODE": "1(x2)"}
    assert distributed.plan(slurm) == dict(
        coordinator_address=f"node003:{77 % 4096 + 61440}", num_processes=2, process_id=1,
        local_device_ids=None, cluster_detection_method="deactivate")  # all GPUs of the node
    per_gpu = dict(slurm, SLURM_NTASKS="16", SLURM_TASKS_PER_NODE="8(x2)", SLURM_LOCALID="5")
    assert distributed.plan(per_gpu)["local_device_ids"] == [5]
    assert distributed.slurm_tasks_on_node({"SLURM_TASKS_PER_NODE": "2,1", "SLURM_NODEID": "1"}) == 1
    assert distributed.plan({"STRONGAUDIO_DISTRIBUTED": "1"}) == {}
    assert distributed.plan({"TPU_WORKER_HOSTNAMES": "a,b"}) == {}


# ---------------------------------------------------------------------------- local processes

def test_local_dry_run_and_a_failed_process_stops_the_rest(tmp_path):
    out = _sh(LAUNCH / "local.sh", "--dry-run", "3", "cfg.py:smoke", "/tmp/w", "a=1",
              env={"PORT": "5555", "XLA_FLAGS": ""}).stdout
    env = _exports(out)
    assert env["JAX_COORDINATOR_ADDRESS"] == "127.0.0.1:5555" and env["JAX_NUM_PROCESSES"] == "3"
    assert env["JAX_PLATFORMS"] == "cpu"
    assert env["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
    assert [c[1] for c in _commands(out) if c[0] == "env"] == [f"JAX_PROCESS_ID={i}" for i in range(3)]

    # Process 1 fails at once; process 0 would wait for ever: it is killed, the status is 1's.
    fake = tmp_path / "fake_python"
    fake.write_text("#!/bin/sh\necho \"process $JAX_PROCESS_ID up\"\n"
                    "[ \"$JAX_PROCESS_ID\" = 1 ] && exit 3\nexec sleep 600\n")
    fake.chmod(0o755)
    out = _sh(LAUNCH / "local.sh", "2", "cfg", "/tmp/w", env={"PYTHON": str(fake), "PORT": "1"},
              check=False)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "[p1] process 1 up" in out.stdout and "exited with status 3; killing the others" in out.stderr


def test_local_two_processes_stop_on_sigterm_and_resume(tmp_path):
    """launch/local.sh 2 on the demo config, small: SIGTERM to the launcher reaches both
    processes, which save the same step and exit 0; the same command resumes from it."""
    import json
    import signal

    workdir = tmp_path / "run"
    small = ["data.batch_size=8", "data.clip_seconds=1.0", "model.size=mu", "train.log_every=1",
             "train.checkpoint_every=1000", "probe.tasks=()", "data.eval_files="]
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(REPO), XLA_FLAGS="")
    cmd = [str(LAUNCH / "local.sh"), "2", "configs/mtc.py:demo", str(workdir)]
    proc = subprocess.Popen([*cmd, "train.steps=200", *small], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = []
    for line in proc.stdout:  # wait for training to be under way, then stop the launcher
        seen.append(line)
        if line.startswith("[p0] step      3/"):
            proc.send_signal(signal.SIGTERM)
            break
    out = "".join(seen) + proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    assert "[p0] [strongaudio] devices: 4 x cpu, processes: 2" in out
    stopped = int(out.split("received: saved step ")[1].split()[0])
    assert {"process_0-of-2.json", "process_1-of-2.json"} <= set(
        os.listdir(workdir / "checkpoints" / str(stopped) / "data"))

    final = stopped + 2
    second = _sh(*cmd, f"train.steps={final}", *small, env=env, timeout=300)
    assert f"[p0] [strongaudio] resumed from step {stopped}" in second.stdout, second.stdout
    assert f"[p0] step {final:>6}/{final}" in second.stdout
    steps = [json.loads(line)["step"] for line in open(workdir / "metrics.jsonl")
             if '"loss"' in line]
    assert steps == list(range(1, final + 1))


@pytest.mark.slow  # two jax.distributed processes
def test_local_two_processes_run_the_tag_job(tmp_path):
    """launch/local.sh 2 --job tag on the smoke config: the two processes split the input
    shards, and every clip comes out exactly once."""
    from tests.test_infer import _corpus, _make_export, _records

    model = _make_export(tmp_path / "mtc", f"{REPO}/configs/mtc.py:smoke", ["data.clip_seconds=1.0"])
    corpus = _corpus(tmp_path / "in", shards=3, per_shard=2)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(REPO), XLA_FLAGS="")
    run = _sh(LAUNCH / "local.sh", "2", "--job", "tag", "configs/tag.py:smoke",
              f"model.path={model}", f"input.files={corpus}/*.tfrecord", f"output.dir={out}",
              f"compilation_cache={tmp_path / 'cache'}", env=env, timeout=600)
    assert "[p0] tag: 3 input shard(s), 2 on process 0 of 2" in run.stdout, run.stdout
    assert "[p1] tag: 3 input shard(s), 1 on process 1 of 2" in run.stdout, run.stdout
    ids = [c.id for p in sorted(out.glob("*.tfrecord")) for c in _records(p)]
    originals = [c.id for p in sorted(corpus.glob("*.tfrecord")) for c in _records(p)]
    assert sorted(ids) == sorted(originals) and len(ids) == 6


# ---------------------------------------------------------------------------- shellcheck

def test_launch_scripts_are_shellcheck_clean():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (apt-get install shellcheck; it is in "
                    "tools/debian-packages.txt)")
    scripts = sorted(str(p.relative_to(REPO)) for p in LAUNCH.iterdir()
                     if p.suffix in (".sh", ".sbatch"))
    assert "launch/tpu_pod.sh" in scripts and "launch/slurm.sbatch" in scripts
    out = _sh("shellcheck", "-x", *scripts, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


# ---------------------------------------------------------------------------- config targets

GPUS = {"gpu1": 1, "gpu8": 8, "gpu-2x8": 16}
TARGETS = ["v5p-64", "v5e-256", "gpu8", "gpu-2x8"]
CONFIG_TARGETS = [(name, t) for name in ("mtc", "par", "contrastive", "captioning", "masked",
                                         "multitask", "zipformer_mtc", "vit_b_mtc", "vit_l_mtc")
                  for t in TARGETS] + [("vit_b_mtc", "gpu1"), ("vit_l_mtc", "gpu1")]


def _chips(target: str) -> int:
    from strongaudio_jax.train import compile_check

    if target in GPUS:
        return GPUS[target]
    dims = compile_check.TOPOLOGIES[target].split(":")[1].split("x")  # e.g. v5p:4x4x2
    return int(np.prod([int(d) for d in dims]))


@pytest.mark.parametrize("name, target", CONFIG_TARGETS)
def test_config_target_mesh_fits_its_chips_and_names_its_launch(name, target):
    """Each launch target's mesh fills exactly its chips, the global batch splits over the
    data-parallel devices, compile-check knows the TPU topology, and the docstring says how
    to launch it. (Compiling for the full topologies takes minutes: `strongaudio compile-check`.)"""
    from strongaudio_jax import config as config_lib
    from strongaudio_jax.parallel import mesh as mesh_lib
    from strongaudio_jax.train import compile_check

    path = REPO / "configs" / f"{name}.py"
    cfg = config_lib.load(f"{path}:{target}", [])
    chips = _chips(target)
    sizes = [int(cfg.mesh.get(a, 1)) for a in mesh_lib.MESH_AXES]
    known = int(np.prod([s for s in sizes if s != -1]))
    assert sizes.count(-1) <= 1 and chips % known == 0, (sizes, chips)
    sizes = [chips // known if s == -1 else s for s in sizes]
    assert int(np.prod(sizes)) == chips
    data_parallel = sizes[0] * sizes[1]
    assert cfg.data.batch_size % data_parallel == 0, (cfg.data.batch_size, sizes)
    assert cfg.data.train_files == ""  # a real corpus is given on the command line

    topology = cfg.compile_check.topology
    launch = open(path).read().split('"""')[1]
    assert f"configs/{name}.py:{target}" in launch
    if target in GPUS:
        assert topology == ""
        assert ("launch/slurm.sh" if target == "gpu-2x8" else "launch/gpu.sh") in launch
        return
    assert topology == target and compile_check.TOPOLOGIES[topology]
    assert "launch/tpu_pod.sh run" in launch
    if compile_check.libtpu_available():  # the devices compile-check would compile for
        devices = compile_check.topology_devices(topology)
        mesh = mesh_lib.make_mesh(cfg.mesh, devices)
        assert len(devices) == chips and list(mesh.shape.values()) == sizes


@pytest.mark.parametrize("name", ["tag", "caption"])
@pytest.mark.parametrize("target", TARGETS)
def test_inference_config_target_names_its_launch_and_compile_check(name, target):
    """configs/{tag,caption}.py have every launch target: its docstring says how to launch it,
    and a TPU one names its topology and the model compile-check compiles without model.path
    (tests/test_compile_check.py compiles them)."""
    from strongaudio_jax import config as config_lib
    from strongaudio_jax.train import compile_check

    path = REPO / "configs" / f"{name}.py"
    cfg = config_lib.load(f"{path}:{target}", [])
    doc = open(path).read().split('"""')[1]
    assert f"configs/{name}.py:{target}" in doc and f"--job {name}" in doc
    if target in GPUS:
        assert cfg.compile_check.topology == ""
        return
    assert cfg.compile_check.topology == target and compile_check.TOPOLOGIES[target]
    train = "captioning" if name == "caption" else "mtc"
    assert cfg.compile_check.model_config == f"configs/{train}.py:{target}"
    assert config_lib.load(str(REPO / "configs" / f"{train}.py") + f":{target}", [])
