"""The compiled program of pre-training: state init, train step and embedding.

Built from the config alone (no data files, no devices), so `train` runs it on this host's
mesh and `compile-check` lowers the very same step for a TPU topology it does not have.
The model and the objectives are resolved by name (`strongaudio_jax.registry`: modules
`strongaudio_jax.models.<name>`, `strongaudio_jax.objectives.<name>`), so adding one is adding a
module; the loss is the weighted sum of the configured objectives (`objectives/__init__.py`
describes the interface). The tokenised text the objectives read comes from the input pipeline
(`data/text_fields.py`, built from the config by the trainer).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from strongaudio_jax import frontend, objectives as objectives_lib, registry
from strongaudio_jax.config import ConfigError
from strongaudio_jax.data import text_fields as text_fields_lib
from strongaudio_jax.frontend import augment
from strongaudio_jax.models.base import masked_mean
from strongaudio_jax.parallel import mesh as mesh_lib
from strongaudio_jax.train import flops, optimizer


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: dict
    opt_state: optax.OptState
    # exponential moving average (train.ema_decay > 0) or icefall's model average
    # (train.average_period > 0); evaluation and export use it
    ema_params: dict | None = None


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


def batch_spec(cfg: ml_collections.ConfigDict, num_classes: int,
               text_fields: tuple[str, ...] = ()) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes and dtypes of one global batch, as the input pipeline delivers it (with the
    tokenised text fields the objectives read)."""
    b, n = cfg.data.batch_size, int(cfg.data.clip_seconds * cfg.data.sample_rate)
    return {"waveform": jax.ShapeDtypeStruct((b, n), jnp.float32),
            "length": jax.ShapeDtypeStruct((b,), jnp.int32),
            "tags": jax.ShapeDtypeStruct((b, num_classes), jnp.float32),
            "valid": jax.ShapeDtypeStruct((b,), jnp.bool_),
            **objectives_lib.text_batch_spec(text_fields, b, text_fields_lib.text_length(cfg))}


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: jit caches on it
class Program:
    """The pure functions of training; `compile` places them on a mesh."""

    cfg: ml_collections.ConfigDict
    encoder: nn.Module
    objectives: tuple[objectives_lib.Objective, ...]  # weighted; heads in params["heads"]
    text_fields: tuple[str, ...]  # what the objectives read (keys of text.tokenizer.FIELDS)
    mel_cfg: frontend.MelConfig
    aug_cfg: augment.AugmentConfig
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    batch_spec: dict
    rules: mesh_lib.Rules  # logical axis -> mesh axes: the config's sharding_rules

    def features(self, batch):
        return frontend.log_mel(batch["waveform"], self.mel_cfg, batch["length"])

    def init(self, rng) -> TrainState:
        """Fresh parameters (boxed with their logical axis names) and optimizer state."""
        one = {k: jnp.zeros((1, *v.shape[1:]), v.dtype) for k, v in self.batch_spec.items()}
        one["length"] = jnp.full((1,), self.batch_spec["waveform"].shape[1], jnp.int32)
        feats, frame_mask = self.features(one)
        enc_vars = self.encoder.init(rng, feats, frame_mask)
        encode = lambda f, m, train=False, **kw: self.encoder.apply(nn.meta.unbox(enc_vars), f, m,
                                                                   train=train, **kw)
        enc = encode(feats, frame_mask)
        heads = objectives_lib.init_all(self.objectives, rng, enc,
                                        {**one, "features": feats, "frame_mask": frame_mask}, encode)
        params = {"encoder": enc_vars["params"], "heads": heads}
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=self.tx.init(params),
                          ema_params=params if (self.cfg.train.ema_decay
                                                or self.cfg.train.get("average_period", 0)) else None)

    def train_step(self, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        cfg = self.cfg
        # Augmentation and objective randomness is a function of (seed, step): a resumed run
        # replays it.
        step_key = jax.random.fold_in(jax.random.key(cfg.seed), state.step)
        k_wave, k_spec = jax.random.split(step_key)
        k_obj = jax.random.fold_in(step_key, 1)  # the objectives' masking / dropout
        batch = augment.augment_waveforms(k_wave, batch, self.aug_cfg)
        feats, frame_mask = self.features(batch)
        feats = augment.augment_features(k_spec, feats, frame_mask, self.aug_cfg)

        def loss_fn(params, feats, frame_mask, batch):
            def encode(f, m, train=True, **kw):  # kw: e.g. keep, a subset of patches (MAE)
                return self.encoder.apply({"params": params["encoder"]}, f, m, train=train,
                                          rngs={"dropout": jax.random.fold_in(step_key, 2)}, **kw)

            enc = encode(feats, frame_mask)
            batch = {**batch, "features": feats, "frame_mask": frame_mask}
            return objectives_lib.weighted_loss(self.objectives, params["heads"], enc, batch,
                                                k_obj, train=True, encode=encode)

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        grad_accum = cfg.train.grad_accum
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
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        if cfg.train.skip_nonfinite:  # keep the old parameters and optimizer state for this batch
            keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
            params, opt_state = keep(params, state.params), keep(opt_state, state.opt_state)
        ema, decay = state.ema_params, cfg.train.ema_decay
        if decay:
            ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema, params)
        period = cfg.train.get("average_period", 0)
        if period:  # icefall's update_averaged_model: the mean of the states at every period-th step
            done = state.step + 1
            w = jnp.where(done % period == 0, period / done.astype(jnp.float32), 0.0)
            ema = jax.tree.map(lambda e, p: (1 - w) * e + w * p, ema, params)
        metrics = {**metrics, "loss": loss, "grad_norm": grad_norm, "lr": self.schedule(state.step),
                   "nonfinite": 1 - finite.astype(jnp.int32)}
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state,
                          ema_params=ema), metrics

    def embed(self, encoder_params, batch) -> jax.Array:
        """Clip embeddings of the frozen encoder (mean over real tokens), for probes."""
        enc = self.encoder.apply({"params": encoder_params}, *self.features(batch))
        return masked_mean(enc.tokens, enc.mask)

    def tokens(self, encoder_params, batch) -> tuple[jax.Array, jax.Array]:
        """The frozen encoder's tokens [B, N, D] and real-token mask [B, N] (attention-pooling
        probes, evaluation through the objectives' heads)."""
        enc = self.encoder.apply({"params": encoder_params}, *self.features(batch))
        return enc.tokens, enc.mask

    def model_flops(self, state, batch) -> float:
        """Matmul FLOPs of one train step on the global batch, as MFU counts them: traced (not
        compiled) with the encoder's activation recomputation off (`train/flops.py`)."""
        encoder = self.encoder
        if getattr(encoder, "remat", "none") != "none":
            encoder = encoder.clone(remat="none")
        plain = dataclasses.replace(self, encoder=encoder)
        return flops.matmul_flops(jax.make_jaxpr(plain.train_step)(state, batch))

    def tag_logits(self, params, batch) -> jax.Array:
        """Clip-level tag logits [B, K] of the MTC head on the frozen encoder (tag mAP)."""
        (mtc,) = [o for o in self.objectives if o.name == "mtc"]
        enc = self.encoder.apply({"params": params["encoder"]}, *self.features(batch))
        return mtc.module.apply({"params": params["heads"]["mtc"]}, enc, method="logits")

    def shardings(self, mesh):
        """(state, batch) NamedShardings on `mesh`, from the parameters' logical axis names."""
        boxed = jax.eval_shape(self.init, jax.random.key(0))
        state = mesh_lib.state_shardings(nn.get_partition_spec(boxed), nn.meta.unbox(boxed), mesh,
                                         self.rules)
        batch = {k: mesh_lib.batch_sharding(mesh, len(v.shape), self.rules)
                 for k, v in self.batch_spec.items()}
        return state, batch

    def compile(self, mesh):
        """(init, train_step) jitted onto `mesh`; the step donates the old state."""
        state_sh, batch_sh = self.shardings(mesh)
        init = jax.jit(lambda r: nn.meta.unbox(self.init(r)), out_shardings=state_sh)
        step = jax.jit(mesh_lib.on_mesh(mesh, self.train_step, self.rules),
                       in_shardings=(state_sh, batch_sh),
                       out_shardings=(state_sh, None), donate_argnums=0)
        return init, step, state_sh


def build(cfg: ml_collections.ConfigDict, num_classes: int,
          vocab: tuple[str, ...] | None = None) -> Program:
    """The Program for a config and a tag vocabulary of `num_classes` (the tags themselves
    where known; lowering for another topology needs only their number)."""
    mel_cfg = frontend_config(cfg.frontend)
    if mel_cfg.sample_rate != cfg.data.sample_rate:
        raise ConfigError(f"frontend preset {cfg.frontend.preset!r} expects {mel_cfg.sample_rate} "
                          f"Hz but data.sample_rate is {cfg.data.sample_rate}")
    try:
        aug_cfg = augment.AugmentConfig(**cfg.augment)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"augment config: {e}") from e
    if cfg.train.ema_decay and cfg.train.get("average_period", 0):
        raise ConfigError("train.ema_decay and train.average_period both keep averaged parameters; "
                          "set one of them to 0")
    if cfg.data.batch_size % cfg.train.grad_accum:
        raise ConfigError(f"data.batch_size={cfg.data.batch_size} is not divisible by "
                          f"train.grad_accum={cfg.train.grad_accum}")
    encoder = registry.resolve("models", cfg.model.name).build(
        {k: v for k, v in cfg.model.items() if k != "name"})
    if "objective" in cfg:
        raise ConfigError("config key 'objective' was replaced by 'objectives', a dict of weighted "
                          "objectives: objectives=dict(mtc=dict(weight=1.0))")
    ctx = objectives_lib.Context(num_classes=num_classes, vocab=tuple(vocab) if vocab else None,
                                 tokenizer=text_fields_lib.tokenizer_from_config(cfg),
                                 text_len=text_fields_lib.text_length(cfg), encoder=encoder,
                                 mel_cfg=mel_cfg)
    objectives = objectives_lib.build_all(cfg.objectives, ctx)
    fields = objectives_lib.text_fields(objectives)
    tx, schedule = optimizer.make(cfg.optimizer, cfg.train.steps)
    try:
        rules = mesh_lib.rules_from_config(cfg.get("sharding_rules"))
    except ValueError as e:
        raise ConfigError(str(e)) from e
    return Program(cfg=cfg, encoder=encoder, objectives=objectives, text_fields=fields,
                   mel_cfg=mel_cfg, aug_cfg=aug_cfg, tx=tx, schedule=schedule,
                   batch_spec=batch_spec(cfg, num_classes, fields), rules=rules)
