"""The pre-training loop, top to bottom: data, model, sharded state, step, loop, probe.

One story in banner-commented sections (after big_vision's train.py). The model and the
objective are resolved by name from the config (`strongaudio_jax.models.<name>`,
`strongaudio_jax.objectives.<name>`), so adding one is adding a module.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import time

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from strongaudio_jax import frontend
from strongaudio_jax.frontend import augment
from strongaudio_jax.config import ConfigError
from strongaudio_jax.data import pipeline
from strongaudio_jax.models.vit import masked_mean
from strongaudio_jax.parallel import mesh as mesh_lib
from strongaudio_jax.train import checkpoint, flops, log as log_lib, optimizer, preemption


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: dict
    opt_state: optax.OptState
    ema_params: dict | None = None  # exponential moving average (train.ema_decay > 0)


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or Inf; the message names the step and the last good checkpoint."""


def resolve(kind: str, name: str):
    """Imports strongaudio_jax.<kind>.<name>, with a clear error for an unknown name."""
    try:
        return importlib.import_module(f"strongaudio_jax.{kind}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"strongaudio_jax.{kind}.{name}":
            raise
        pkg = importlib.import_module(f"strongaudio_jax.{kind}")
        known = sorted(f[:-3] for f in os.listdir(os.path.dirname(pkg.__file__))
                       if f.endswith(".py") and not f.startswith("_"))
        raise ConfigError(f"unknown {kind[:-1]} {name!r} in the config; available: {known}") from None


def frontend_config(cfg) -> frontend.MelConfig:
    """A named preset with the config's field overrides (e.g. norm_mean / norm_std); with
    `stats_file` (from `strongaudio stats`), normalised by those statistics instead."""
    fields = {k: v for k, v in cfg.items() if k not in ("preset", "stats_file")}
    try:
        mel_cfg = dataclasses.replace(frontend.get_preset(cfg.preset), **fields)
        if cfg.get("stats_file"):
            from strongaudio_jax.frontend import stats
            mel_cfg = stats.with_stats(mel_cfg, stats.load_stats(cfg.stats_file))
        return mel_cfg
    except (KeyError, TypeError, ValueError, OSError) as e:
        raise ConfigError(f"frontend config {dict(cfg)}: {e}") from e


def train(cfg: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs (or resumes) pre-training in `workdir`, then probes the frozen encoder."""
    os.makedirs(workdir, exist_ok=True)
    logger = log_lib.Logger(workdir)
    logger.info(f"devices: {jax.device_count()} x {jax.devices()[0].platform}, "
                f"processes: {jax.process_count()}")

    # ---------------------------------------------------------------- Mesh and data
    mesh = mesh_lib.make_mesh(cfg.mesh)
    train_files = pipeline.expand_paths(cfg.data.train_files)
    if cfg.data.vocab_file:  # a fixed vocabulary (e.g. a released UTS label_K.json)
        try:
            vocab = pipeline.load_vocabulary(cfg.data.vocab_file)
        except (OSError, ValueError) as e:
            raise ConfigError(f"data.vocab_file: {e}") from e
    else:  # the training corpus's own tags (one pass over the records)
        vocab = pipeline.tag_vocabulary(train_files, cfg.data.vocab_min_count)
    if not vocab:
        raise ValueError(f"the training files hold no tag seen >= {cfg.data.vocab_min_count} times")
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "vocab.json"), "w") as f:
            json.dump({str(i): t for i, t in enumerate(vocab)}, f, indent=1)
    mel_cfg = frontend_config(cfg.frontend)
    if cfg.frontend.get("stats_file") and jax.process_index() == 0:  # evaluation reads this copy
        shutil.copyfile(cfg.frontend.stats_file, os.path.join(workdir, "frontend_stats.json"))
    try:
        aug_cfg = augment.AugmentConfig(**cfg.augment)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"augment config: {e}") from e
    if mel_cfg.sample_rate != cfg.data.sample_rate:
        raise ValueError(f"frontend preset {cfg.frontend.preset!r} expects {mel_cfg.sample_rate} Hz "
                         f"but data.sample_rate is {cfg.data.sample_rate}")
    featurizer = pipeline.Featurizer(
        vocab={t: i for i, t in enumerate(vocab)}, sample_rate=cfg.data.sample_rate,
        clip_samples=int(cfg.data.clip_seconds * cfg.data.sample_rate), random_crop=True)
    data_iter = iter(pipeline.train_dataset(train_files, featurizer, cfg.data.batch_size,
                                            cfg.seed, cfg.data.verify_crc, cfg.data.workers))
    logger.info(f"train: {len(train_files)} files, vocabulary of {len(vocab)} tags, "
                f"global batch {cfg.data.batch_size}, mesh {dict(mesh.shape)}")

    # ---------------------------------------------------------------- Model and objective
    encoder = resolve("models", cfg.model.name).build(
        {k: v for k, v in cfg.model.items() if k != "name"})
    objective = resolve("objectives", cfg.objective.name)
    head = objective.build(cfg.objective, num_classes=len(vocab))
    tx, schedule = optimizer.make(cfg.optimizer, cfg.train.steps)
    ema_decay = cfg.train.ema_decay

    def features(batch):
        return frontend.log_mel(batch["waveform"], mel_cfg, batch["length"])

    def init(rng):
        n = int(cfg.data.clip_seconds * cfg.data.sample_rate)
        dummy = {"waveform": jnp.zeros((1, n)), "length": jnp.full((1,), n, jnp.int32)}
        feats, frame_mask = features(dummy)
        enc_vars = encoder.init(rng, feats, frame_mask)
        enc = encoder.apply(nn.meta.unbox(enc_vars), feats, frame_mask)
        params = {"encoder": enc_vars["params"], "head": head.init(rng, enc)["params"]}
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                          ema_params=params if ema_decay else None)

    # ---------------------------------------------------------------- Sharded state
    rng = jax.random.key(cfg.seed)
    boxed = jax.eval_shape(init, rng)
    state_shardings = mesh_lib.state_shardings(nn.get_partition_spec(boxed), nn.meta.unbox(boxed),
                                               mesh)
    state = jax.jit(lambda r: nn.meta.unbox(init(r)), out_shardings=state_shardings)(rng)
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    logger.info(f"model: {cfg.model.name}-{cfg.model.get('size', '')}, {n_params / 1e6:.2f}M params")

    mngr = checkpoint.manager(workdir, cfg.train.keep_checkpoints)
    if mngr.latest_step() is not None:
        state, data_iter = checkpoint.restore(
            mngr, mngr.latest_step(), checkpoint.abstract_like(state, state_shardings), data_iter)
        logger.info(f"resumed from step {int(state.step)} in {mngr.directory}")

    # ---------------------------------------------------------------- Train step
    skip_nonfinite = cfg.train.skip_nonfinite
    grad_accum = cfg.train.grad_accum
    if cfg.data.batch_size % grad_accum:
        raise ConfigError(f"data.batch_size={cfg.data.batch_size} is not divisible by "
                          f"train.grad_accum={grad_accum}")
    def train_step(state: TrainState, batch: dict):
        # Augmentation randomness is a function of (seed, step): a resumed run replays it.
        k_wave, k_spec = jax.random.split(jax.random.fold_in(jax.random.key(cfg.seed), state.step))
        batch = augment.augment_waveforms(k_wave, batch, aug_cfg)
        feats, frame_mask = features(batch)
        feats = augment.augment_features(k_spec, feats, frame_mask, aug_cfg)

        def loss_fn(params, feats, frame_mask, batch):
            enc = encoder.apply({"params": params["encoder"]}, feats, frame_mask, train=True)
            logits = head.apply({"params": params["head"]}, enc)
            return objective.loss_and_metrics(logits, batch)

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        if grad_accum == 1:
            (loss, metrics), grads = grad_fn(state.params, feats, frame_mask, batch)
        else:
            # Gradient accumulation: the mean of the gradients of grad_accum equal microbatches
            # (rows j, j+k, j+2k, ...: every device holds part of each). This saves activation
            # memory only; batch statistics and contrastive negatives stay per microbatch.
            micro = jax.tree.map(lambda x: x.reshape(-1, grad_accum, *x.shape[1:]).swapaxes(0, 1),
                                 (feats, frame_mask, batch))

            def accumulate(total, mb):
                out = grad_fn(state.params, *mb)
                return jax.tree.map(jnp.add, total, out), None

            zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(grad_fn, state.params,
                                 *jax.tree.map(lambda x: x[0], micro)))
            summed, _ = jax.lax.scan(accumulate, zeros, micro)
            (loss, metrics), grads = jax.tree.map(lambda x: x / grad_accum, summed)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        if skip_nonfinite:  # keep the old parameters and optimizer state for this batch
            keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
            params, opt_state = keep(params, state.params), keep(opt_state, state.opt_state)
        ema = state.ema_params
        if ema_decay:
            ema = jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p, ema, params)
        metrics = {**metrics, "loss": loss, "grad_norm": grad_norm, "lr": schedule(state.step),
                   "nonfinite": 1 - finite.astype(jnp.int32)}
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state,
                          ema_params=ema), metrics

    batch_shardings = {k: mesh_lib.batch_sharding(mesh, nd)
                       for k, nd in (("waveform", 2), ("length", 1), ("tags", 2), ("valid", 1))}
    train_step = jax.jit(train_step, in_shardings=(state_shardings, batch_shardings),
                         out_shardings=(state_shardings, None), donate_argnums=0)

    # ---------------------------------------------------------------- Evaluation
    from strongaudio_jax.eval import probe

    @jax.jit
    def embed(params, batch):
        enc = encoder.apply({"params": params}, *features(batch))
        return masked_mean(enc.tokens, enc.mask)

    def evaluate(state: TrainState) -> list:
        """Linear probes on the frozen encoder (its EMA when kept); keeps the best checkpoint."""
        params = (state.ema_params or state.params)["encoder"]
        results = probe.run(cfg, embed_fn=lambda b: embed(params, b), featurizer=featurizer,
                            train_files=train_files, logger=logger, step=int(state.step))
        scores = {f"probe/{r.task}_accuracy": r.accuracy for r in results}
        if best_mngr and best_metric in scores:
            checkpoint.save_best(best_mngr, int(state.step), state, scores)
        return results

    best_metric = cfg.train.best_metric
    best_mngr = checkpoint.best_manager(workdir, best_metric) if best_metric else None

    # ---------------------------------------------------------------- Loop
    start = int(state.step)
    total = cfg.train.steps
    pending, history = [], []
    skipped = 0
    t_log, data_wait = time.perf_counter(), 0.0
    last_saved = mngr.latest_step()

    def drain():
        """Fetches pending metrics; stops on a non-finite loss before anything is saved."""
        nonlocal pending, skipped
        for s, m in jax.device_get(pending):
            if m["nonfinite"] and not skip_nonfinite:
                raise NonFiniteLossError(
                    f"loss is {m['loss']} (gradient norm {m['grad_norm']}) at step {s}; last good "
                    f"checkpoint: {'step ' + str(last_saved) if last_saved else 'none'} in "
                    f"{mngr.directory}. Lower optimizer.lr, check the data, or set "
                    f"train.skip_nonfinite=True to skip such updates (they are counted).")
            skipped += int(m["nonfinite"])
            history.append({"step": s, **{k: float(v) for k, v in m.items()}})
        n, pending = len(pending), []
        return n

    flops_per_step = None
    profile = tuple(cfg.train.profile_steps)  # (first, last): trace steps first+1 .. last
    stop = preemption.StopWatcher()
    try:
        for step in range(start + 1, total + 1):
            t0 = time.perf_counter()
            batch = mesh_lib.global_batch(next(data_iter), mesh)
            data_wait += time.perf_counter() - t0
            if flops_per_step is None:  # first step: count the compiled program's FLOPs once
                flops_per_step = flops.step_flops(train_step.lower(state, batch).compile()) or 0.0
            state, metrics = train_step(state, batch)
            pending.append((step, metrics))
            stopping = stop.should_stop(step)

            if step % cfg.train.log_every == 0 or step == total or stopping:
                n = drain()
                elapsed = time.perf_counter() - t_log
                tflops = flops_per_step * n / elapsed / 1e12  # per device
                logger.metrics(step, total, history[-1], samples_per_s=n * cfg.data.batch_size /
                               elapsed, data_wait=data_wait / elapsed, skipped_updates=skipped,
                               tflops_per_device=tflops,
                               mfu=tflops / peak if (peak := flops.peak_tflops(jax.devices()[0]))
                               else None)
                t_log, data_wait = time.perf_counter(), 0.0

            if step % cfg.train.checkpoint_every == 0 or step == total or stopping:
                drain()
                checkpoint.save(mngr, step, state, data_iter)
                last_saved = step
            if cfg.train.eval_every and step % cfg.train.eval_every == 0 and step != total:
                evaluate(state)
            if step == profile[0]:
                jax.profiler.start_trace(os.path.join(workdir, "profile"))
            if step == profile[1]:
                jax.profiler.stop_trace()
                logger.info(f"profile of steps {profile[0] + 1}-{profile[1]} in {workdir}/profile")
            if stopping:
                mngr.wait_until_finished()
                logger.info(f"{stop.reason} received: saved step {step} in {mngr.directory}; "
                            "run the same command again to resume")
                logger.close()
                return {"history": history, "probe": [], "vocab": vocab, "state": state,
                        "stopped_at": step}
    finally:
        stop.close()
    mngr.wait_until_finished()
    if skipped:
        logger.info(f"{skipped} update(s) skipped because the loss or gradient was not finite")
    logger.info(f"checkpoint: {mngr.directory} (step {mngr.latest_step()})")

    # ---------------------------------------------------------------- Final probe
    results = evaluate(state)
    if best_mngr:
        best_mngr.wait_until_finished()
        logger.info(f"best {best_metric}: step {best_mngr.best_step()} in {best_mngr.directory}")
    logger.close()
    return {"history": history, "probe": results, "vocab": vocab, "state": state}
