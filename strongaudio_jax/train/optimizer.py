"""Optax chains from the config: optimizer, learning-rate schedule, clipping, decay mask.

config.optimizer fields:
  name          adamw | lion | adafactor
  lr            peak learning rate
  schedule      cosine (warmup, then cosine to end_lr_frac * lr) | rsqrt (warmup, then
                lr * sqrt(warmup / step)) | constant (after warmup)
  warmup_steps, end_lr_frac, weight_decay, b1, b2, clip_norm (0 = no clipping)
Weight decay never applies to biases, norm scales or other vectors (ndim < 2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from strongaudio_jax.config import ConfigError


def schedule(cfg, total_steps: int) -> optax.Schedule:
    warmup = min(cfg.warmup_steps, max(total_steps // 2, 0))
    peak, end = cfg.lr, cfg.lr * cfg.get("end_lr_frac", 0.02)
    kind = cfg.get("schedule", "cosine")
    if kind == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total_steps, 1), end)
    ramp = optax.linear_schedule(0.0, peak, max(warmup, 1))
    if kind == "rsqrt":
        decay = lambda s: peak * jnp.sqrt(max(warmup, 1) / jnp.maximum(s + warmup, 1))
        return optax.join_schedules([ramp, decay], [warmup])
    if kind == "constant":
        return optax.join_schedules([ramp, optax.constant_schedule(peak)], [warmup])
    raise ConfigError(f"optimizer.schedule={kind!r} is not one of cosine, rsqrt, constant")


def decay_mask(params):
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make(cfg, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    lr = schedule(cfg, total_steps)
    name = cfg.get("name", "adamw")
    b1, b2, wd = cfg.get("b1", 0.9), cfg.get("b2", 0.999), cfg.weight_decay
    if name == "adamw":
        opt = optax.adamw(lr, b1=b1, b2=b2, weight_decay=wd, mask=decay_mask)
    elif name == "lion":
        opt = optax.lion(lr, b1=b1, b2=b2, weight_decay=wd, mask=decay_mask)
    elif name == "adafactor":
        opt = optax.adafactor(lr, weight_decay_rate=wd or None, weight_decay_mask=decay_mask)
    else:
        raise ConfigError(f"optimizer.name={name!r} is not one of adamw, lion, adafactor")
    parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm else []
    return optax.chain(*parts, opt), lr
