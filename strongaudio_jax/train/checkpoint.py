"""Orbax checkpoints holding the train state and the Grain iterator state in one step dir.

The work dir may be local or a bucket: orbax reaches gs:// (and s3://) through tensorstore and
etils.epath itself; the few reads done here go through data/storage.py."""

from __future__ import annotations


import grain
import jax
import orbax.checkpoint as ocp

from strongaudio_jax.data import storage


def manager(workdir: str, keep: int) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        storage.join(storage.abspath(workdir), "checkpoints"),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_names=("state", "data"),
    )


def best_manager(workdir: str, metric: str) -> ocp.CheckpointManager:
    """A second manager keeping only the train state with the highest `metric` so far (the
    main one keeps the last N, for resuming)."""
    return ocp.CheckpointManager(
        storage.join(storage.abspath(workdir), "best"),
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
    check_matches(_step_dir(mngr, step, "state"), abstract_state)
    args = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None:
        data_dir = _step_dir(mngr, step, "data")
        mine = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        if not storage.exists(storage.join(data_dir, mine)):
            saved = [f for f in storage.listdir(data_dir) if f.startswith("process_")]
            raise CheckpointMismatchError(
                f"the data-iterator state in {data_dir} was written by {len(saved)} process(es) "
                f"({', '.join(saved)}), but this run has {jax.process_count()}. Resuming the data "
                "stream with another process count is not supported: resume with the same "
                "number of processes (the device count per process may differ), or start a new "
                "--workdir from the weights (checkpoint.load_for_eval).")
        args["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    restored = mngr.restore(step, args=ocp.args.Composite(**args))
    return restored["state"], restored.get("data") if data_iter is not None else None


def _step_dir(mngr: ocp.CheckpointManager, step: int, item: str) -> str:
    return storage.join(storage.join(str(mngr.directory), str(step)), item)


class CheckpointMismatchError(ValueError):
    """A checkpoint's arrays do not fit the config's model or optimizer."""


def _flat_shapes(tree) -> dict[str, tuple]:
    def name(k):
        return str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(name(k) for k in path): tuple(x.shape) for path, x in leaves}


def check_matches(path: str, abstract_state) -> None:
    """Compares saved shapes with the config's; the error names parameter paths and shapes."""
    saved = _flat_shapes(ocp.StandardCheckpointer().metadata(path).item_metadata.tree)
    wanted = _flat_shapes(abstract_state)
    problems = [f"{k}: checkpoint {saved[k]}, config {wanted[k]}"
                for k in wanted if k in saved and saved[k] != wanted[k]]
    problems += [f"{k}: only in the config" for k in wanted if k not in saved]
    problems += [f"{k}: only in the checkpoint" for k in saved if k not in wanted]
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise CheckpointMismatchError(
            f"the checkpoint in {path.rstrip('/').rsplit('/', 1)[0]} does not match this config's model or "
            f"optimizer: {'; '.join(problems[:5])}{more}. Use a new --workdir, or the config "
            "that wrote the checkpoint.")


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
    path = _step_dir(mngr, step, "state")
    ckptr = ocp.StandardCheckpointer()
    meta = ckptr.metadata(path).item_metadata.tree
    target = jax.sharding.SingleDeviceSharding(device or jax.devices()[0])
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=target), meta)
    return ckptr.restore(path, abstract)
