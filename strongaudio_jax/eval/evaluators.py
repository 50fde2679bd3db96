"""Evaluators during training, named in the config (after big_vision's `config.evals`).

    c.evals = {
        "probe": dict(type="probe", every=0, train_files="", eval_files="", max_clips=0,
                      clip_seconds=3.0, batch_size=32, tasks=("domain",), pooling=("mean",),
                      l2=1e-3, steps=500),
        "tags": dict(type="tagging", every=0, eval_files="", max_clips=0, clip_seconds=3.0,
                     batch_size=32),
    }

Each entry is one evaluator: `type` T is the module `strongaudio_jax.eval.T`, whose `Evaluator`
class is built with (name, the entry, a Context) and has `run(params, step) -> {metric: value}`.
Each has its own files (empty: the run's training files / `data.eval_files`), clip cap
(`max_clips`: the first N records; 0: all) and period (`every` steps; 0: `train.eval_every`; every
evaluator also runs once at the end). A config without `evals` gets the evaluators its `probe`
block and objectives imply (`default_evals`), so older configs behave as before.

`embed` is what they share: the records are split over the processes (each reads and decodes
only its own contiguous rows of every global batch), placed as global arrays sharded along the
batch axis of the training mesh, and run through one jitted function on the mesh whose small
outputs (pooled embeddings, logits, tokens only when asked) come back to every process in record
order. Nothing but those outputs is kept.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Callable, Sequence

import jax
import ml_collections
import numpy as np

from strongaudio_jax.config import ConfigError
from strongaudio_jax.data import pipeline, schema
from strongaudio_jax.parallel import mesh as mesh_lib


@dataclasses.dataclass
class Context:
    """What evaluators may use: the run's config, its program (train/step.py), the training
    featurizer, the mesh, the training files and the logger."""
    cfg: ml_collections.ConfigDict
    program: object
    featurizer: pipeline.Featurizer
    mesh: jax.sharding.Mesh
    train_files: Sequence[str]
    logger: object


def default_evals(cfg, has_tag_head: bool) -> dict:
    """The evaluators of a config without `evals`: its probe block, and the tag head's mAP."""
    evals = {}
    if cfg.probe.tasks:
        evals["probe"] = dict(type="probe", **{k: v for k, v in cfg.probe.items()})
    if has_tag_head and cfg.data.eval_files:
        evals["tags"] = dict(type="tagging", clip_seconds=cfg.probe.clip_seconds,
                             batch_size=cfg.probe.batch_size)
    return evals


def from_config(ctx: Context) -> list:
    """The config's evaluators (`evals`, else `default_evals`), built."""
    has_tag_head = any(o.name == "mtc" for o in ctx.program.objectives)
    evals = ctx.cfg.get("evals")
    evals = default_evals(ctx.cfg, has_tag_head) if evals is None else evals
    out = []
    for name, block in dict(evals).items():
        block = dict(block)
        kind = block.pop("type", None)
        module = None
        if isinstance(kind, str) and kind.isidentifier():
            try:
                module = importlib.import_module(f"strongaudio_jax.eval.{kind}")
            except ModuleNotFoundError:
                module = None
        if module is None or not hasattr(module, "Evaluator"):
            raise ConfigError(f"evals.{name}.type={kind!r} is not an evaluator; known: "
                              "probe, tagging")
        out.append(module.Evaluator(name, block, ctx))
    return out


def due(every: int, cfg, step: int) -> bool:
    """Whether an evaluator with period `every` (0: train.eval_every) runs after `step`."""
    period = every or cfg.train.eval_every
    return bool(period) and step % period == 0 and step != cfg.train.steps


def eval_featurizer(featurizer: pipeline.Featurizer, clip_seconds: float,
                    sample_rate: int) -> pipeline.Featurizer:
    """The training featurizer for evaluation: clips from their start, up to clip_seconds."""
    return dataclasses.replace(featurizer, random_crop=False,
                               clip_samples=int(clip_seconds * sample_rate))


def on_mesh(fn: Callable, mesh, rules=None):
    """fn(params, batch) jitted on `mesh`: inputs keep their shardings (a batch from
    `global_batch` is split along the batch axes), outputs are replicated to every process."""
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return jax.jit(mesh_lib.on_mesh(mesh, fn, rules), out_shardings=replicated)


def _any_row(featurizer: pipeline.Featurizer, source, keep: np.ndarray) -> dict:
    """A decoded row of the first record that decodes (its shapes pad masked rows)."""
    for i in np.flatnonzero(keep):
        try:
            return featurizer(source[i])
        except Exception:  # noqa: BLE001 (counted where it was read for its own row)
            continue
    raise ValueError(f"{source}: no record could be decoded (all skipped as bad data)")


def embed(files: Sequence[str], featurizer: pipeline.Featurizer, jitted: Callable, params,
          batch_size: int, mesh, rules=None, max_clips: int = 0, verify_crc: bool = True,
          bad: pipeline.BadData | None = None):
    """(jitted(params, batch)'s outputs (`jitted` from `on_mesh`) for every record, concatenated
    in record order, and the records' clips (labels; audio not decoded)). Every process decodes
    only its own rows of each global batch of `batch_size`; the last batch is padded with
    valid=False rows, dropped here. Bad records raise, or with `bad` skipping (data.skip_bad)
    are counted there and left out of both results."""
    count, me = jax.process_count(), jax.process_index()
    if batch_size % count:
        raise ConfigError(f"evaluation batch size {batch_size} is not divisible by {count} processes")
    bad = bad or pipeline.BadData()
    local = batch_size // count
    source = pipeline.TFRecordSource(list(files), verify_crc, bad)
    n = min(max_clips, len(source)) if max_clips else len(source)
    clips, keep = [None] * n, np.ones(n, bool)  # every process parses every record's labels
    for i in range(n):
        try:
            clips[i] = schema.example_to_clip(*source[i])
        except Exception as e:  # noqa: BLE001 (bad data is counted or re-raised)
            bad.handle(e)
            keep[i] = False
    failed = np.zeros(n, bool)  # audio this process could not decode (its rows only)
    outs = []
    for b in range(math.ceil(n / batch_size)):
        first = b * batch_size + me * local  # this process's rows: first .. first + local - 1
        rows = []
        for i in range(first, min(first + local, n)):
            try:
                rows.append(featurizer(source[i]) if keep[i] else None)
            except Exception as e:  # noqa: BLE001 (bad data is counted or re-raised)
                bad.handle(e)
                failed[i] = True
                rows.append(None)
        template = next((r for r in rows if r is not None), None)
        if template is None:  # nothing decodable in this process's rows: shapes from another
            template = _any_row(featurizer, source, keep)
        rows = [{**template, "valid": np.False_} if r is None else r for r in rows]
        rows += [{**template, "valid": np.False_}] * (local - len(rows))
        batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
        out = jax.device_get(jitted(params, mesh_lib.global_batch(batch, mesh, rules)))
        real = min(batch_size, n - b * batch_size)
        outs.append(jax.tree.map(lambda x: np.asarray(x)[:real], out))
    if count > 1:  # every process drops the records any of them could not decode
        from jax.experimental import multihost_utils
        failed = np.asarray(multihost_utils.process_allgather(failed)).any(0)
    keep &= ~failed
    out = jax.tree.map(lambda *xs: np.concatenate(xs), *outs)
    return jax.tree.map(lambda x: x[keep], out), [c for c, k in zip(clips, keep) if k]
