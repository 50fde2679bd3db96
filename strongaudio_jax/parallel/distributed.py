"""Multi-host start-up from the environment, before anything touches the devices.

- Explicit (GPU clusters, local multi-process CPU tests): JAX_COORDINATOR_ADDRESS (host:port),
  JAX_NUM_PROCESSES and JAX_PROCESS_ID.
- SLURM with more than one task: jax.distributed.initialize() reads SLURM's variables.
- TPU pod slices: jax.distributed.initialize() finds the other workers itself
  (detected here by TPU_WORKER_HOSTNAMES listing more than one host).
Anything else is a single process and nothing is done.
"""

from __future__ import annotations

import os

import jax


def initialize_from_env() -> bool:
    """Joins the multi-process job described by the environment; True when one was joined."""
    env = os.environ
    if env.get("JAX_COORDINATOR_ADDRESS"):
        try:
            num, pid = int(env["JAX_NUM_PROCESSES"]), int(env["JAX_PROCESS_ID"])
        except KeyError as e:
            raise RuntimeError(f"JAX_COORDINATOR_ADDRESS is set but {e.args[0]} is not; set "
                               "JAX_NUM_PROCESSES and JAX_PROCESS_ID for every process") from None
        if env.get("JAX_PLATFORMS", "").startswith("cpu"):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(env["JAX_COORDINATOR_ADDRESS"], num, pid)
        return True
    if int(env.get("SLURM_NTASKS", "1")) > 1:
        jax.distributed.initialize()
        return True
    if len(env.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1:
        jax.distributed.initialize()
        return True
    return False
