"""`strongaudio finetune`: an exported encoder + a classifier head, trained end to end on a task.

    strongaudio finetune --from EXPORT --task TASK --out WORKDIR [--config configs/finetune.py[:variant]] [key=value ...]

EXPORT is a `strongaudio export` directory (encoder weights, training config, frontend); TASK is
any task `strongaudio eval` reads (`eval/tasks.py`: a HEAR task directory, demo[:DIR][:LABEL],
fsd50k:DIR, ...). One story, top to bottom, in banner-commented sections:

- **Data**: the task's training split (of `fold`), a window of `data.clip_seconds` cut at random
  from each clip (padded when shorter), in a stream that is a pure function of (seed, position):
  epochs of the clips in a seeded random order, or with `data.balanced` drawn with probability
  proportional to 1 / (frequency of the clip's rarest class). It is a Grain dataset whose iterator
  state is checkpointed with the train state (train/checkpoint.py), so a resumed run sees exactly
  the batches an uninterrupted one would. Each process reads only its own rows of each global batch.
- **Model**: the export's encoder (model fields not changing its parameters may be overridden in
  `model`, e.g. `model.drop_path=0.1`), masked mean pooling of its tokens, and a linear head
  (zeros at the start). Multi-class tasks train with softmax cross-entropy, multi-label ones with
  binary cross-entropy; mixup mixes the targets with the waveforms and SpecAugment masks the
  features (frontend/augment.py), on the device inside the step.
- **Optimizer**: the trainer's (train/optimizer.py) with layer-wise learning-rate decay: the
  head and the encoder's output norm learn at the full rate, block i of L at
  `layer_decay ** (L + 1 - (i + 1))` of it, and the input embeddings (patches, positions) at
  `layer_decay ** (L + 1)` (BEiT / Dasheng / BEATs). An EMA of the weights is kept with
  `train.ema_decay` > 0 and is what gets evaluated.
- **Mesh**: the config's mesh and sharding rules, parameters placed by their logical axis names as
  in pre-training; SIGTERM / Ctrl-C saves and exits, the same command resumes.
- **Evaluation**: clips of the valid and test splits are cut into windows of the training length
  (the last one padded and masked), which go through the mesh in global batches; a clip's scores
  are the length-weighted mean of its windows' probabilities. Accuracy (multi-class) or mAP
  (multi-label) as `strongaudio eval` computes them. `<WORKDIR>/results.json` holds both splits for
  the weights evaluated (EMA or raw) and the raw ones, and with `baseline_linear=True` the frozen
  export's linear probe on the same task (eval/report.py) for comparison.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import math
import os
import platform
import re
import time

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from strongaudio_jax import frontend, registry
from strongaudio_jax.config import ConfigError
from strongaudio_jax.data import storage
from strongaudio_jax.eval import protocols, tasks as tasks_lib
from strongaudio_jax.frontend import augment
from strongaudio_jax.models.base import dense, masked_mean
from strongaudio_jax.parallel import mesh as mesh_lib
from strongaudio_jax.train import checkpoint, log as log_lib, optimizer, preemption, run_config
from strongaudio_jax.train.step import TrainState

RESULTS_FILE = "results.json"
# Encoder parameters after the last block (they learn at the head's rate); everything else that
# is not in a block (patch / convolutional embeddings, position tables) is layer 0.
TOP_PARAMS = ("ln_out", "out_downsample_logits")


# ----------------------------------------------------------------------------- layer decay


def layer_ids(encoder_params: dict) -> tuple[dict, int]:
    """(a tree like `encoder_params` of layer ids, number of layers L): 0 for the input
    embeddings, 1..L for the blocks in order (ViT `block{i}` or scanned `blocks`, whose leaves get
    an array of ids along their stacked axis; Zipformer `stack{s}/layer{j}` counted across
    stacks, a stack's own parameters with its first layer), L + 1 for TOP_PARAMS."""
    ids, depth = {}, 0
    names = sorted(encoder_params, key=lambda k: [int(t) if t.isdigit() else t
                                                 for t in re.split(r"(\d+)", k)])
    for name in names:
        sub = encoder_params[name]
        if m := re.fullmatch(r"block(\d+)", name):
            ids[name] = jax.tree.map(lambda _, i=int(m[1]) + 1: np.int32(i), sub)
            depth = max(depth, int(m[1]) + 1)
        elif name == "blocks":  # nn.scan: parameters stacked on a leading 'layers' axis
            n = jax.tree.leaves(sub)[0].shape[0]
            ids[name] = jax.tree.map(lambda x: np.arange(1, n + 1, dtype=np.int32).reshape(
                (n,) + (1,) * (len(x.shape) - 1)), sub)
            depth = max(depth, n)
        elif re.fullmatch(r"stack(\d+)", name):
            layers = sorted((k for k in sub if re.fullmatch(r"layer(\d+)", k)), key=lambda k: int(k[5:]))
            first = depth + 1
            ids[name] = {k: jax.tree.map(lambda _, i=(depth + 1 + int(k[5:]) if k in layers
                                                      else first): np.int32(i), v)
                         for k, v in sub.items()}
            depth += len(layers)
    for name in names:
        if name not in ids:
            top = name in TOP_PARAMS
            ids[name] = jax.tree.map(lambda _, t=top: np.int32(-1 if t else 0), encoder_params[name])
    ids = jax.tree.map(lambda i: np.where(i == -1, depth + 1, i).astype(np.int32), ids)
    return ids, depth


def layer_scales(params: dict, decay: float) -> dict:
    """Learning-rate multipliers for {"encoder": ..., "head": ...}: decay ** (L + 1 - layer id);
    1 for the head. Arrays broadcast against their parameter (scanned layers: one per layer)."""
    ids, depth = layer_ids(params["encoder"])
    scale = lambda i: (decay ** (depth + 1 - i)).astype(np.float32)
    return {"encoder": jax.tree.map(scale, ids),
            "head": jax.tree.map(lambda _: np.float32(1.0), params["head"])}


def scale_updates(scales: dict) -> optax.GradientTransformation:
    """Multiplies each update by a fixed per-parameter factor (the layer-wise lr decay)."""
    def init(params):
        return optax.EmptyState()

    def update(updates, state, params=None):
        return jax.tree.map(lambda u, s: u * jnp.asarray(s, u.dtype), updates, scales), state

    return optax.GradientTransformation(init, update)


# ----------------------------------------------------------------------------- the program


class Head(nn.Module):
    """Masked mean of the encoder's tokens -> linear layer (zeros at the start)."""
    num_classes: int

    @nn.compact
    def __call__(self, tokens, mask):
        pooled = masked_mean(tokens, mask)
        return dense(self.num_classes, ("embed", "classes"), "out", jnp.float32,
                     init=nn.initializers.zeros)(pooled)


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: jit caches on it
class FineTune:
    """The pure functions of fine-tuning; `compile` places them on a mesh."""

    cfg: ml_collections.ConfigDict
    encoder: nn.Module
    head: Head
    mel_cfg: frontend.MelConfig
    aug_cfg: augment.AugmentConfig
    multilabel: bool
    samples: int  # waveform samples of one window
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    rules: mesh_lib.Rules

    def features(self, batch):
        return frontend.log_mel(batch["waveform"], self.mel_cfg, batch["length"])

    def _init_boxed(self, rng):
        """Fresh parameters with their logical axis names (shapes and shardings only)."""
        wave = jnp.zeros((1, self.samples), jnp.float32)
        feats, mask = self.features({"waveform": wave, "length": jnp.full((1,), self.samples)})
        enc_vars = self.encoder.init(rng, feats, mask)
        enc = self.encoder.apply(nn.meta.unbox(enc_vars), feats, mask)
        head = self.head.init(rng, enc.tokens, enc.mask)
        return {"encoder": enc_vars["params"], "head": head["params"]}

    def abstract_params(self):
        return jax.eval_shape(lambda: nn.meta.unbox(self._init_boxed(jax.random.key(0))))

    def init(self, encoder_params) -> TrainState:
        """The state: the export's encoder, a zero head, the optimizer state."""
        head = nn.meta.unbox(self._init_boxed(jax.random.key(0))["head"])
        params = {"encoder": encoder_params, "head": head}
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=self.tx.init(params),
                          ema_params=params if self.cfg.train.ema_decay else None)

    def logits(self, params, batch, train: bool = False, rng=None, feats=None):
        if feats is None:
            feats, mask = self.features(batch)
        else:
            feats, mask = feats
        rngs = {"dropout": rng} if rng is not None else {}
        enc = self.encoder.apply({"params": params["encoder"]}, feats, mask, train=train, rngs=rngs)
        return self.head.apply({"params": params["head"]}, enc.tokens, enc.mask)

    def loss(self, logits, targets, valid):
        smoothing = self.cfg.loss.label_smoothing
        if self.multilabel:
            if smoothing:
                targets = targets * (1 - smoothing) + 0.5 * smoothing
            per = optax.sigmoid_binary_cross_entropy(logits, targets).mean(-1)
        else:
            if smoothing:
                targets = targets * (1 - smoothing) + smoothing / targets.shape[-1]
            per = optax.softmax_cross_entropy(logits, targets)
        w = valid.astype(per.dtype)
        return (per * w).sum() / jnp.maximum(w.sum(), 1.0)

    def train_step(self, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        cfg = self.cfg
        # Augmentation and dropout are functions of (seed, step): a resumed run replays them.
        step_key = jax.random.fold_in(jax.random.key(cfg.seed), state.step)
        k_wave, k_spec, k_drop = jax.random.split(step_key, 3)
        batch = augment.augment_waveforms(k_wave, batch, self.aug_cfg)  # mixup mixes "tags"
        feats, mask = self.features(batch)
        feats = augment.augment_features(k_spec, feats, mask, self.aug_cfg)

        def loss_fn(params):
            logits = self.logits(params, batch, train=True, rng=k_drop, feats=(feats, mask))
            return self.loss(logits, batch["tags"], batch["valid"])

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema, decay = state.ema_params, cfg.train.ema_decay
        if decay:
            ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema, params)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
                   "lr": self.schedule(state.step)}
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state,
                          ema_params=ema), metrics

    def predict(self, params, batch):
        """Class probabilities [B, K] (sigmoid for multi-label, softmax otherwise)."""
        logits = self.logits(params, batch)
        return jax.nn.sigmoid(logits) if self.multilabel else jax.nn.softmax(logits)

    def shardings(self, mesh):
        """(state, params) NamedShardings on `mesh`, from the parameters' logical axis names
        (the optimizer state of boxed parameters carries the same names)."""
        def boxed_state():
            params = self._init_boxed(jax.random.key(0))
            return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                              opt_state=self.tx.init(params),
                              ema_params=params if self.cfg.train.ema_decay else None)

        boxed = jax.eval_shape(boxed_state)
        state = mesh_lib.state_shardings(nn.get_partition_spec(boxed), nn.meta.unbox(boxed), mesh,
                                         self.rules)
        return state, state.params

    def compile(self, mesh):
        """(init from encoder weights, train step, predict, state shardings) on `mesh`."""
        state_sh, params_sh = self.shardings(mesh)
        batch_sh = lambda ndim: mesh_lib.batch_sharding(mesh, ndim, self.rules)
        train_batch = {"waveform": batch_sh(2), "length": batch_sh(1), "tags": batch_sh(2),
                       "valid": batch_sh(1)}
        jitted = jax.jit(self.init, out_shardings=state_sh)

        def init(encoder_params):
            """From host arrays (every process holds them all): each device gets its shard."""
            placed = jax.tree.map(lambda x, s: jax.make_array_from_callback(
                x.shape, s, lambda index: x[index]), encoder_params, params_sh["encoder"])
            return jitted(placed)

        step = jax.jit(mesh_lib.on_mesh(mesh, self.train_step, self.rules),
                       in_shardings=(state_sh, train_batch), out_shardings=(state_sh, None),
                       donate_argnums=0)
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        predict = jax.jit(mesh_lib.on_mesh(mesh, self.predict, self.rules),
                          in_shardings=(params_sh, {k: train_batch[k] for k in ("waveform", "length")}),
                          out_shardings=replicated)
        return init, step, predict, state_sh


def build(cfg: ml_collections.ConfigDict, export_cfg: ml_collections.ConfigDict,
          mel_cfg: frontend.MelConfig, num_classes: int, multilabel: bool,
          clip_seconds: float) -> FineTune:
    """The FineTune program for an export's config and a task's classes."""
    model_cfg = {k: v for k, v in export_cfg.model.items() if k != "name"}
    model_cfg.update(dict(cfg.model))
    try:
        encoder = registry.resolve("models", export_cfg.model.name).build(model_cfg)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model overrides {dict(cfg.model)}: {e}") from e
    try:
        aug_cfg = augment.AugmentConfig(**cfg.augment)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"augment config: {e}") from e
    try:
        rules = mesh_lib.rules_from_config(cfg.get("sharding_rules"))
    except ValueError as e:
        raise ConfigError(str(e)) from e
    samples = int(round(clip_seconds * mel_cfg.sample_rate))
    base_tx, schedule = optimizer.make(cfg.optimizer, cfg.train.steps)
    program = FineTune(cfg=cfg, encoder=encoder, head=Head(num_classes), mel_cfg=mel_cfg,
                       aug_cfg=aug_cfg, multilabel=multilabel, samples=samples, tx=base_tx,
                       schedule=schedule, rules=rules)
    decay = cfg.optimizer.get("layer_decay", 1.0)
    if not 0.0 < decay <= 1.0:
        raise ConfigError(f"optimizer.layer_decay={decay} must be in (0, 1] (1: no decay)")
    if decay < 1.0:
        scales = layer_scales(program.abstract_params(), decay)
        program = dataclasses.replace(program, tx=optax.chain(base_tx, scale_updates(scales)))
    return program


# ----------------------------------------------------------------------------- data


def read_clip(example: tasks_lib.Example, rate: int) -> np.ndarray:
    from strongaudio_jax.data import audio

    wave, sr = example.read()
    if wave.ndim > 1:
        wave = wave.mean(-1)
    if sr != rate:
        wave = audio.resample(wave, sr, rate)
    return np.asarray(wave, np.float32)


def _window(wave: np.ndarray, start: int, samples: int) -> tuple[np.ndarray, int]:
    piece = wave[start:start + samples]
    return np.pad(piece, (0, samples - len(piece))), len(piece)


class Sampler:
    """Which training clip fills position p of the stream: epochs of the clips in a random
    order drawn from (seed, epoch), or (weights given) n clips drawn with replacement with those
    probabilities per epoch."""

    def __init__(self, n: int, seed: int, weights: np.ndarray | None = None):
        self.n, self.seed = n, seed
        self.p = None if weights is None else weights / weights.sum()

    @functools.lru_cache(maxsize=8)
    def order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        return rng.permutation(self.n) if self.p is None else rng.choice(self.n, self.n, p=self.p)

    def __call__(self, position: int) -> int:
        return int(self.order(position // self.n)[position % self.n])


def balance_weights(targets: np.ndarray, multilabel: bool) -> np.ndarray:
    """Per clip: 1 / (number of training clips of its rarest class)."""
    onehot = targets if multilabel else np.eye(int(targets.max()) + 1)[targets]
    counts = onehot.sum(0)
    inv = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    return (onehot * inv).max(1) + 1e-12


def train_dataset(task: tasks_lib.Task, examples, rate: int, samples: int, batch_size: int,
                  steps: int, seed: int, balanced: bool, threads: int) -> grain.IterDataset:
    """This process's rows of global batches 0..steps-1 (dicts of numpy arrays)."""
    count, me = jax.process_count(), jax.process_index()
    if batch_size % count:
        raise ConfigError(f"data.batch_size={batch_size} is not divisible by {count} processes")
    local = batch_size // count
    targets = task.targets(examples)
    num_classes = len(task.vocabulary)
    onehot = targets.astype(np.float32) if task.multilabel else np.eye(num_classes, dtype=np.float32)[targets]
    sampler = Sampler(len(examples), seed,
                      balance_weights(targets, task.multilabel) if balanced else None)

    def load(j: int) -> dict:
        position = (j // local) * batch_size + me * local + j % local  # global stream position
        i = sampler(position)
        wave = read_clip(examples[i], rate)
        start = 0
        if len(wave) > samples:
            start = int(np.random.default_rng([seed, 1, position]).integers(len(wave) - samples + 1))
        window, length = _window(wave, start, samples)
        return {"waveform": window, "length": np.int32(length), "tags": onehot[i],
                "valid": np.bool_(True)}

    ds = grain.MapDataset.range(steps * local).map(load).batch(local, drop_remainder=True)
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=max(threads, 1),
                                                prefetch_buffer_size=2 * local))


def windows(examples, rate: int, samples: int):
    """(clip index, window [samples], real length) over every clip, cut end to end."""
    for i, e in enumerate(examples):
        wave = read_clip(e, rate)
        for start in range(0, max(len(wave), 1), samples):
            window, length = _window(wave, start, samples)
            yield i, window, max(length, 1)


def evaluate(predict, params, examples, task, rate, samples, batch_size, mesh, rules) -> np.ndarray:
    """Per clip: the length-weighted mean of its windows' class probabilities [N, K]. Every
    process reads the same windows and feeds its own rows of each global batch."""
    count, me = jax.process_count(), jax.process_index()
    local = batch_size // count
    sums = np.zeros((len(examples), len(task.vocabulary)), np.float64)
    weights = np.zeros(len(examples), np.float64)

    def run(rows):
        real = len(rows)
        waves = np.zeros((batch_size, samples), np.float32)
        lengths = np.full(batch_size, samples, np.int32)
        for r, (_, w, n) in enumerate(rows):
            waves[r], lengths[r] = w, n
        mine = {"waveform": waves[me * local:(me + 1) * local],
                "length": lengths[me * local:(me + 1) * local]}
        probs = np.asarray(jax.device_get(predict(params, mesh_lib.global_batch(mine, mesh, rules))))
        for r, (i, _, n) in enumerate(rows[:real]):
            sums[i] += n * probs[r]
            weights[i] += n

    rows = []
    for item in windows(examples, rate, samples):
        rows.append(item)
        if len(rows) == batch_size:
            run(rows)
            rows = []
    if rows:
        run(rows)
    return sums / np.maximum(weights, 1e-9)[:, None]


# ----------------------------------------------------------------------------- the run


def _clip_seconds(cfg, task: tasks_lib.Task, encoder, mel_cfg) -> float:
    """data.clip_seconds, else the task's sample_duration, else 10 s; capped to what the
    encoder's position table holds (ViT max_frames) unless it interpolates."""
    seconds = cfg.data.clip_seconds or task.sample_duration or 10.0
    max_frames = getattr(encoder, "max_frames", None)
    if max_frames and getattr(encoder, "pos_time", "slice") != "interpolate":
        while int(frontend.num_frames(int(round(seconds * mel_cfg.sample_rate)), mel_cfg)) > max_frames:
            seconds = round(seconds - 0.01, 2)
    return seconds


def _load_export(path: str):
    """(export config, frontend, encoder params as host arrays, export.json) of an export dir."""
    from strongaudio_jax import hub

    model = hub.load_model(path)  # checks the directory and says what is wrong
    return model.config, model.mel_cfg, jax.device_get(model.params), model.info


def finetune(cfg: ml_collections.ConfigDict, export_dir: str, task_spec: str, workdir: str) -> dict:
    """Fine-tunes the export's encoder on the task in `workdir` (resuming when it holds a
    checkpoint); evaluates on the task's valid and test splits; writes results.json."""
    cfg = cfg.copy_and_resolve_references()
    with cfg.unlocked():
        cfg.export, cfg.task = export_dir, task_spec
    storage.makedirs(workdir)
    logger = log_lib.Logger(workdir)
    run_config.record(cfg, workdir, logger)  # <workdir>/config.json, with --from and --task

    # ---------------------------------------------------------------- Export, task, mesh
    export_cfg, mel_cfg, encoder_params, info = _load_export(export_dir)
    task = tasks_lib.load(task_spec, mel_cfg.sample_rate)
    if task.mode != "scene":
        raise tasks_lib.TaskError(f"task {task.name} is an {task.mode} (timestamp) task; "
                                  "fine-tuning takes scene tasks (one label set per clip)")
    if not 0 <= cfg.fold < len(task.folds):
        raise ConfigError(f"fold={cfg.fold}: task {task.name} has {len(task.folds)} fold(s)")
    train_names, valid_name, test_name = task.folds[cfg.fold]
    train_examples = [e for s in train_names for e in task.splits[s]]
    mesh = mesh_lib.make_mesh(cfg.mesh)
    encoder = registry.resolve("models", export_cfg.model.name).build(
        {**{k: v for k, v in export_cfg.model.items() if k != "name"}, **dict(cfg.model)})
    seconds = _clip_seconds(cfg, task, encoder, mel_cfg)
    program = build(cfg, export_cfg, mel_cfg, len(task.vocabulary), task.multilabel, seconds)
    rate = mel_cfg.sample_rate
    logger.info(f"fine-tuning {export_dir} ({export_cfg.model.name}, step {info.get('step')}) on "
                f"{task.name}: {len(task.vocabulary)} classes, {task.metric}, "
                f"{len(train_examples)} training clips, {seconds} s windows, global batch "
                f"{cfg.data.batch_size}, mesh {dict(mesh.shape)}")

    # ---------------------------------------------------------------- State and data
    init, train_step, predict, state_sh = program.compile(mesh)
    wanted = jax.tree.map(lambda x: (x.shape, x.dtype), program.abstract_params()["encoder"])
    given = jax.tree.map(lambda x: (x.shape, x.dtype), encoder_params)
    if wanted != given:
        raise ConfigError(f"the export's encoder weights do not fit the encoder built from its "
                          f"config with model overrides {dict(cfg.model)}: only override fields "
                          "that keep the parameters (drop_path, dtype, remat, attention, pos_time)")
    state = init(encoder_params)
    dataset = train_dataset(task, train_examples, rate, program.samples, cfg.data.batch_size,
                            cfg.train.steps, cfg.seed, cfg.data.balanced, cfg.data.threads)
    data_iter = iter(dataset)
    mngr = checkpoint.manager(workdir, cfg.train.keep_checkpoints)
    if mngr.latest_step() is not None:
        state, data_iter = checkpoint.restore(
            mngr, mngr.latest_step(), checkpoint.abstract_like(state, state_sh), data_iter)
        logger.info(f"resumed from step {int(state.step)} in {mngr.directory}")

    def scores(params, split: str) -> float:
        examples = task.splits[split]
        probs = evaluate(predict, params, examples, task, rate, program.samples,
                         cfg.data.eval_batch_size or cfg.data.batch_size, mesh, program.rules)
        return protocols.score(task.targets(examples), probs, task.multilabel)

    # ---------------------------------------------------------------- Loop
    total, history, pending = cfg.train.steps, [], []
    t_log, data_wait = time.perf_counter(), 0.0
    stop = preemption.StopWatcher()
    try:
        for step in range(int(state.step) + 1, total + 1):
            t0 = time.perf_counter()
            batch = mesh_lib.global_batch(next(data_iter), mesh, program.rules)
            data_wait += time.perf_counter() - t0
            state, metrics = train_step(state, batch)
            pending.append((step, metrics))
            stopping = stop.should_stop(step)
            if step % cfg.train.log_every == 0 or step == total or stopping:
                for s, m in jax.device_get(pending):
                    history.append({"step": s, **{k: float(v) for k, v in m.items()}})
                elapsed = time.perf_counter() - t_log
                last = {**history[-1], "samples_per_s": len(pending) * cfg.data.batch_size / elapsed,
                        "data_wait": data_wait / elapsed}
                logger.write(last, step, {f"train/{k}": v for k, v in last.items() if k != "step"})
                logger.info(f"step {step}/{total}  loss {last['loss']:.4f}  lr {last['lr']:.2e}  "
                            f"{last['samples_per_s']:.1f} samples/s  data wait "
                            f"{100 * last['data_wait']:.0f}%")
                if not math.isfinite(last["loss"]):
                    raise FloatingPointError(f"fine-tuning loss is {last['loss']} at step {step}; "
                                             "lower optimizer.lr")
                pending, t_log, data_wait = [], time.perf_counter(), 0.0
            if step % cfg.train.checkpoint_every == 0 or step == total or stopping:
                checkpoint.save(mngr, step, state, data_iter)
            if cfg.train.eval_every and step % cfg.train.eval_every == 0 and step != total:
                v = scores(state.ema_params or state.params, valid_name)
                logger.write({"step": step, f"valid/{task.metric}": v}, step,
                             {f"valid/{task.metric}": v})
                logger.info(f"step {step}: valid {task.metric} {v:.4f}")
            if stopping:
                mngr.wait_until_finished()
                logger.info(f"{stop.reason} received: saved step {step} in {mngr.directory}; "
                            "run the same command again to resume")
                logger.close()
                return {"history": history, "state": state, "stopped_at": step}
    finally:
        stop.close()
    mngr.wait_until_finished()

    # ---------------------------------------------------------------- Evaluation
    evaluated = "ema" if state.ema_params is not None else "raw"
    results = {"task": task.name, "task_spec": task_spec, "metric": task.metric,
               "export": export_dir, "export_step": info.get("step"), "steps": int(state.step),
               "fold": cfg.fold, "clip_seconds": seconds, "weights": evaluated,
               "clips": {"train": len(train_examples), "valid": len(task.splits[valid_name]),
                         "test": len(task.splits[test_name])},
               "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "machine": f"{platform.machine()}, {jax.device_count()} x {jax.devices()[0].platform}"
                          f", {os.cpu_count()} CPU cores"}
    weights = {"raw": state.params} if evaluated == "raw" else {"ema": state.ema_params,
                                                               "raw": state.params}
    for name, params in weights.items():
        results[name] = {"valid": scores(params, valid_name), "test": scores(params, test_name)}
    results["valid"], results["test"] = results[evaluated]["valid"], results[evaluated]["test"]
    if cfg.baseline_linear:  # the frozen export's linear probe (strongaudio eval's), same task
        from strongaudio_jax.eval import hear_api, report

        frozen, _ = report.evaluate_task(hear_api.load(export_dir), task, ["linear"])
        results["frozen_linear_probe"] = {"test": frozen["linear"]["folds"][cfg.fold],
                                          "valid": frozen["linear"]["valid"]}
    logger.info(f"{task.name} ({evaluated} weights, step {int(state.step)}): valid {task.metric} "
                f"{results['valid']:.4f}, test {results['test']:.4f}" + (
                    f"; frozen linear probe test {results['frozen_linear_probe']['test']:.4f}"
                    if "frozen_linear_probe" in results else ""))
    if jax.process_index() == 0:
        storage.write_text(storage.join(workdir, RESULTS_FILE), json.dumps(results, indent=1))
    logger.close()
    return {"history": history, "state": state, "results": results}
