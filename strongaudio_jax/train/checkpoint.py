"""Orbax checkpoints holding the train state and the Grain iterator state in one step dir."""

from __future__ import annotations

import os

import grain
import jax
import orbax.checkpoint as ocp


def manager(workdir: str, keep: int) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "checkpoints"),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_names=("state", "data"),
    )


def best_manager(workdir: str, metric: str) -> ocp.CheckpointManager:
    """A second manager keeping only the train state with the highest `metric` so far (the
    main one keeps the last N, for resuming)."""
    return ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "best"),
        options=ocp.CheckpointManagerOptions(max_to_keep=1, best_fn=lambda m: m[metric],
                                             best_mode="max", create=True),
        item_names=("state",))


def save_best(mngr: ocp.CheckpointManager, step: int, state, metrics: dict) -> None:
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)), metrics=metrics)


def save(mngr: ocp.CheckpointManager, step: int, state, data_iter) -> None:
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iter)))


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state, data_iter=None):
    """Restores onto the shardings carried by `abstract_state` (ShapeDtypeStructs with
    .sharding), so a checkpoint loads onto any mesh. Returns (state, data_iter)."""
    args = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None:
        args["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    try:
        restored = mngr.restore(step, args=ocp.args.Composite(**args))
    except ValueError as e:
        raise ValueError(f"checkpoint step {step} in {mngr.directory} does not match this config's "
                         f"model or optimizer ({e}); use a new --workdir or the config that wrote it"
                         ) from e
    return restored["state"], restored.get("data") if data_iter is not None else None


def abstract_like(tree, shardings):
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        tree, shardings)


def load_for_eval(workdir: str, step: int | None = None, device: jax.Device | None = None) -> dict:
    """The saved train state of `workdir` (latest step by default) on one device, whatever
    mesh or process count wrote it: for evaluation and export on a laptop."""
    mngr = manager(workdir, keep=1 << 30)
    step = mngr.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no complete checkpoint in {mngr.directory}")
    path = os.path.join(str(mngr.directory), str(step), "state")
    ckptr = ocp.StandardCheckpointer()
    meta = ckptr.metadata(path).item_metadata.tree
    target = jax.sharding.SingleDeviceSharding(device or jax.devices()[0])
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=target), meta)
    return ckptr.restore(path, abstract)
