"""`strongaudio export`: a training checkpoint -> a params-only directory for evaluation.

Whatever mesh and process count wrote the checkpoint (local or gs://), only the parameters
(EMA or raw) are read, as host numpy arrays, and written as:

  params/             orbax checkpoint of {"encoder": ..., "heads": ...}
  model.safetensors   the same arrays, flattened names ("encoder/block0/mlp/fc1/kernel")
  config.json         the training config (train/run_config.py)
  frontend.json       the frontend exactly as trained: preset fields with the statistics applied
  frontend_stats.json the statistics file (when the run had frontend.stats_file)
  vocab.json          the tag vocabulary ({"0": tag, ...}: the MTC head's outputs)
  text_vocab.txt      the text objectives' WordPiece vocabulary (when the run had one)
  export.json         format version, source, step, ema/raw, counts, sample rate, sizes

Loading it (`strongaudio_jax.hub.load_model`) needs one CPU and executes nothing from the
directory: JSON, safetensors and orbax arrays only.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from strongaudio_jax.data import storage
from strongaudio_jax.train import run_config

FORMAT_VERSION = 1
COPIED = ("vocab.json", "frontend_stats.json", "text_vocab.txt")  # from the work dir, if there


class ExportError(ValueError):
    """The work dir, step or output directory given to export is not usable."""


def _abs(path: str) -> str:
    return path if storage.is_url(path) else os.path.abspath(path)


def checkpoint_steps(workdir: str) -> list[int]:
    """The complete checkpoint steps of a work dir (ExportError when there are none)."""
    import orbax.checkpoint as ocp

    root = storage.join(_abs(workdir), "checkpoints")
    steps = []
    if storage.isdir(root):
        mngr = ocp.CheckpointManager(root, options=ocp.CheckpointManagerOptions(
            read_only=True, create=False), item_names=("state", "data"))
        steps = sorted(mngr.all_steps())
    if not steps:
        raise ExportError(f"no complete checkpoint in {root}: is {workdir} a training --workdir "
                          "that has saved at least once (train.checkpoint_every)?")
    return steps


def read_params(workdir: str, step: int | None = None, ema: bool | None = None):
    """(params as nested dicts of numpy arrays, step, used_ema) of a checkpoint: EMA by
    default when the state has it, else the raw parameters; nothing else is read."""
    import jax
    import orbax.checkpoint as ocp

    steps = checkpoint_steps(workdir)
    step = steps[-1] if step is None else step
    if step not in steps:
        raise ExportError(f"no checkpoint of step {step} in {workdir}; available: {steps}")
    path = storage.join(_abs(workdir), f"checkpoints/{step}/state")
    tree = ocp.StandardCheckpointer().metadata(path).item_metadata.tree
    has_ema = bool(tree.get("ema_params"))
    if ema and not has_ema:
        raise ExportError(f"--ema: the state at step {step} in {workdir} has no EMA parameters "
                          "(trained with train.ema_decay=0); export the raw ones (--raw)")
    used_ema = has_ema if ema is None else ema
    key = "ema_params" if used_ema else "params"
    item = {key: tree[key]}
    as_numpy = ocp.RestoreArgs(restore_type=np.ndarray)  # host arrays: no mesh, no devices
    restore_args = {key: jax.tree.map(lambda _: as_numpy, tree[key])}
    restored = ocp.PyTreeCheckpointer().restore(path, args=ocp.args.PyTreeRestore(
        item=item, restore_args=restore_args, partial_restore=True))
    return _plain(restored[key]), step, used_ema


def _plain(tree):
    return ({k: _plain(v) for k, v in tree.items()} if isinstance(tree, dict)
            else np.asarray(tree))


def flatten(params: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for k, v in params.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    out: dict = {}
    for name, v in flat.items():
        *head, last = name.split("/")
        node = out
        for h in head:
            node = node.setdefault(h, {})
        node[last] = v
    return out


def _check_out(out: str) -> None:
    if storage.is_url(out):
        if storage.exists(out) and storage.glob(storage.join(out, "*")):
            raise ExportError(f"--out {out} is not empty; give a new directory")
    elif os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ExportError(f"--out {out} is not empty; give a new directory")


def export(workdir: str, out: str, step: int | None = None, ema: bool | None = None,
           cfg=None) -> dict:
    """Writes the export directory `out`; returns the contents of its export.json. `cfg`: the
    training config, for work dirs written before config.json was saved."""
    import jax
    import orbax.checkpoint as ocp
    from safetensors.numpy import save as safetensors_save

    from strongaudio_jax import registry
    from strongaudio_jax.train import step as step_lib

    _check_out(out)
    cfg_path = storage.join(workdir, run_config.FILE_NAME)
    if cfg is None:
        if not storage.exists(cfg_path):
            raise ExportError(f"{workdir} has no {run_config.FILE_NAME} (a run older than it); "
                              "give the config that trained it: --config configs/<name>.py"
                              "[:variant] plus the same key=value overrides")
        cfg = run_config.load(cfg_path)
    params, step, used_ema = read_params(workdir, step, ema)

    encoder = registry.resolve("models", cfg.model.name).build(
        {k: v for k, v in cfg.model.items() if k != "name"})
    frontend_cfg = cfg.frontend
    if cfg.frontend.get("stats_file"):  # the run's own copy (the original path may be gone)
        local = storage.join(workdir, "frontend_stats.json")
        if storage.exists(local):
            frontend_cfg = frontend_cfg.copy_and_resolve_references()
            with frontend_cfg.unlocked():
                frontend_cfg.stats_file = local
    mel_cfg = step_lib.frontend_config(frontend_cfg)
    sizes = embedding_sizes(encoder, params["encoder"], mel_cfg)

    if not storage.is_url(out):
        os.makedirs(out, exist_ok=True)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(storage.join(_abs(out), "params"), params)
    ckptr.wait_until_finished()
    with storage.open_file(storage.join(out, "model.safetensors"), "wb") as f:
        f.write(safetensors_save(flatten(params), metadata={"format": "strongaudio_jax",
                                                            "step": str(step)}))
    run_config.save(cfg, storage.join(out, run_config.FILE_NAME))
    with storage.open_file(storage.join(out, "frontend.json"), "w") as f:
        f.write(frontend_to_json(mel_cfg))
    copied = []
    for name in COPIED:
        src = storage.join(workdir, name)
        if storage.exists(src):
            with storage.open_file(src, "rb") as fi, storage.open_file(storage.join(out, name), "wb") as fo:
                fo.write(fi.read())
            copied.append(name)
    count = lambda tree: int(sum(x.size for x in jax.tree.leaves(tree)))
    info = {"format_version": FORMAT_VERSION, "source_workdir": _abs(workdir), "step": int(step),
            "params": "ema" if used_ema else "raw", "param_count": count(params),
            "encoder_param_count": count(params["encoder"]), "sample_rate": mel_cfg.sample_rate,
            "model": cfg.model.name, **sizes, "files": sorted(
                ["params", "model.safetensors", run_config.FILE_NAME, "frontend.json", *copied])}
    with storage.open_file(storage.join(out, "export.json"), "w") as f:
        json.dump(info, f, indent=1)
    return info


def frontend_to_json(mel_cfg) -> str:
    return json.dumps(dataclasses.asdict(mel_cfg), indent=1)


def frontend_from_json(text: str):
    """The MelConfig of frontend.json (per-bin statistics come back as tuples)."""
    from strongaudio_jax import frontend

    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(text).items()}
    return frontend.MelConfig(**fields)


def embedding_sizes(encoder, encoder_params, mel_cfg) -> dict:
    """Scene and timestamp embedding widths (the encoder's token width), from shapes only."""
    import jax
    import jax.numpy as jnp

    from strongaudio_jax import frontend

    wave = jax.ShapeDtypeStruct((1, mel_cfg.sample_rate), jnp.float32)
    enc = jax.eval_shape(lambda p, w: encoder.apply({"params": p}, *frontend.log_mel(w, mel_cfg)),
                         encoder_params, wave)
    d = int(enc.tokens.shape[-1])
    return {"scene_embedding_size": d, "timestamp_embedding_size": d}
