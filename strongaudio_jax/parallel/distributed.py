"""Multi-host start-up from the environment, before anything touches the devices.

One process per host (TPU pods, GPU nodes where one process drives all local GPUs), or one
process per GPU; the launchers in launch/ set the environment (docs/launching.md):

- Explicit (launch/local.sh, launch/gpu.sh --per-gpu, launch/slurm.sbatch): JAX_COORDINATOR_ADDRESS
  (host:port), JAX_NUM_PROCESSES and JAX_PROCESS_ID; optionally JAX_LOCAL_DEVICE_IDS (the GPUs
  this process drives, e.g. "3"; default all of them). Nothing is auto-detected then: under
  SLURM, JAX's own detection would restrict each process to the GPU numbered SLURM_LOCALID,
  wrong for one process per node.
- SLURM with more than one task (`srun strongaudio train ...` without the above): the same from
  SLURM's variables: the job's first node as coordinator, SLURM_NTASKS, SLURM_PROCID, and one
  GPU per task (SLURM_LOCALID) only when several tasks share a node.
- STRONGAUDIO_DISTRIBUTED=1 (launch/tpu_pod.sh sets it): jax.distributed.initialize() with
  JAX's own cluster detection (Cloud TPU VM metadata, GKE, SLURM, Open MPI).
- TPU pod slices on GKE: TPU_WORKER_HOSTNAMES listing more than one host.
Anything else is a single process and nothing is done.

On CPU (JAX_PLATFORMS=cpu) collectives between processes go through gloo.
"""

from __future__ import annotations

import os
import re

import jax

DEFAULT_SLURM_PORT_BASE = 61440  # as JAX: a port in [61440, 65535] derived from the job id


def _int(env, name: str) -> int:
    try:
        return int(env[name])
    except KeyError:
        raise RuntimeError(f"{name} is not set; set it for every process (see "
                           "strongaudio_jax/parallel/distributed.py)") from None
    except ValueError:
        raise RuntimeError(f"{name}={env[name]!r} is not a number") from None


def slurm_tasks_on_node(env) -> int:
    """How many tasks of this job step run on this process's node, from SLURM's compact
    SLURM_STEP_TASKS_PER_NODE / SLURM_TASKS_PER_NODE (e.g. '8(x2)' or '2,1') and SLURM_NODEID."""
    spec = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
    if not spec:
        return 1
    counts = []
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if not m:
            raise RuntimeError(f"cannot read SLURM tasks per node {spec!r}")
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    node = int(env.get("SLURM_NODEID", "0"))
    return counts[node] if node < len(counts) else max(counts)


def slurm_coordinator(env) -> str:
    """The job's first node and a port derived from the job id (JAX's own choice)."""
    host = _first_slurm_node(env["SLURM_JOB_NODELIST"])
    port = env.get("JAX_COORDINATOR_PORT") or (
        int(env["SLURM_JOB_ID"]) % 4096 + DEFAULT_SLURM_PORT_BASE)
    return f"{host}:{port}"


def _first_slurm_node(node_list: str) -> str:
    """'node[001-004],x' -> 'node001' (as `scontrol show hostnames | head -1`)."""
    m = re.match(r"([^,\[]+)(?:\[([^,\-\]]+))?", node_list)
    if not m:
        raise RuntimeError(f"cannot read SLURM_JOB_NODELIST {node_list!r}")
    return m.group(1) + (m.group(2) or "")


def plan(env=None) -> dict | None:
    """The keyword arguments for jax.distributed.initialize() that the environment asks for,
    or None for a single process."""
    env = os.environ if env is None else env
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return dict(coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
                    num_processes=_int(env, "JAX_NUM_PROCESSES"),
                    process_id=_int(env, "JAX_PROCESS_ID"),
                    local_device_ids=_device_ids(env.get("JAX_LOCAL_DEVICE_IDS")),
                    cluster_detection_method="deactivate")
    if int(env.get("SLURM_NTASKS", "1")) > 1 and env.get("SLURM_JOB_NODELIST"):
        one_per_gpu = slurm_tasks_on_node(env) > 1
        return dict(coordinator_address=slurm_coordinator(env),
                    num_processes=_int(env, "SLURM_NTASKS"),
                    process_id=_int(env, "SLURM_PROCID"),
                    local_device_ids=[_int(env, "SLURM_LOCALID")] if one_per_gpu else None,
                    cluster_detection_method="deactivate")
    if env.get("STRONGAUDIO_DISTRIBUTED", "") not in ("", "0"):
        return {}  # JAX detects the cluster itself
    if len(env.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1:
        return {}
    return None


def _device_ids(value: str | None) -> list[int] | None:
    if not value:
        return None
    try:
        return [int(x) for x in value.split(",")]
    except ValueError:
        raise RuntimeError(f"JAX_LOCAL_DEVICE_IDS={value!r}: give device numbers, e.g. 0 or 0,1") \
            from None


def initialize_from_env() -> bool:
    """Joins the multi-process job described by the environment; True when one was joined."""
    kwargs = plan()
    if kwargs is None:
        return False
    if os.environ.get("JAX_PLATFORMS", "").startswith("cpu"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
    return True
