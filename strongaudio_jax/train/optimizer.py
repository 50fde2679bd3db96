"""Optax chains from the config: optimizer, learning-rate schedule, clipping, decay mask.

config.optimizer fields:
  name          adamw | lion | adafactor | scaled_adam (icefall's ScaledAdam, below)
  lr            peak learning rate
  schedule      cosine (warmup, then cosine to end_lr_frac * lr) | rsqrt (warmup, then
                lr * sqrt(warmup / step)) | constant (after warmup) | eden (icefall's, below)
  warmup_steps, end_lr_frac, weight_decay, b1, b2, clip_norm (0 = no clipping)
  eden:         lr_batches, lr_epochs, steps_per_epoch, warmup_start (warmup_steps as above)
  scaled_adam:  clipping_scale (2.0; 0 = none), scalar_lr_scale, param_min_rms, param_max_rms,
                scalar_max, size_update_period, clipping_update_period (icefall's defaults)
Weight decay never applies to biases, norm scales or other vectors (ndim < 2); ScaledAdam has
none.

ScaledAdam and Eden are the reference study's optimizer (AudenAI/Auden src/auden/optim, from
icefall's optim.py), written as optax transformations with the same arithmetic, step by step;
tests/test_optimizer.py checks them against hand-computed steps. What differs: icefall batches
same-shaped tensors for speed (no effect on the numbers) and lets modules scale their own
learning rate (`lr_scale` in get_parameter_groups_with_lrs; here every parameter gets lr);
the gradient-norm quartiles it logs are not logged.

Mind the initialisation under ScaledAdam: a tensor's step is proportional to its RMS (floored
at param_min_rms, 1e-5), so a tensor that starts at zero stays near zero. icefall's modules never
start at zero; flax's Dense biases and LayerNorm offsets do (they then stay ~0, as if fixed), and
a zero-initialised output layer (the MTC head's default) would block the encoder's gradient: the
reference configs initialise it as torch does (objectives.mtc.classifier_init="torch").
"""

from __future__ import annotations

from typing import NamedTuple

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
    if kind == "eden":
        return eden(peak, cfg.get("lr_batches", 7500), cfg.get("lr_epochs", 3.5),
                    cfg.get("steps_per_epoch", 10000), cfg.warmup_steps, cfg.get("warmup_start", 0.5))
    raise ConfigError(f"optimizer.schedule={kind!r} is not one of cosine, rsqrt, constant, eden")


def eden(base_lr: float, lr_batches: float = 7500, lr_epochs: float = 3.5,
         steps_per_epoch: float = 10000, warmup_batches: float = 500,
         warmup_start: float = 0.5) -> optax.Schedule:
    """icefall's Eden schedule with the epoch measured in steps (Auden's Eden3, which the
    reference's released scripts run: use_infinite_dataset, lr_steps_per_epoch=10000):

        lr = base_lr * ((b^2 + lr_batches^2) / lr_batches^2)^-0.25
                     * ((e^2 + lr_epochs^2) / lr_epochs^2)^-0.25 * warmup,   e = b / steps_per_epoch

    where warmup rises linearly from warmup_start to 1 over warmup_batches, then stays 1."""
    def lr(step):
        b = jnp.asarray(step, jnp.float32)
        e = b / steps_per_epoch
        factor = (((b ** 2 + lr_batches ** 2) / lr_batches ** 2) ** -0.25
                  * ((e ** 2 + lr_epochs ** 2) / lr_epochs ** 2) ** -0.25)
        warm = jnp.where(b >= warmup_batches, 1.0,
                         warmup_start + (1.0 - warmup_start) * b / max(warmup_batches, 1))
        return base_lr * factor * warm
    return lr


class ScaledAdamState(NamedTuple):
    step: jax.Array  # int32 []
    delta: optax.Params  # the parameter change, with momentum (icefall's "delta")
    exp_avg_sq: optax.Params  # Adam's second moment of the (clipped) gradients
    param_rms: optax.Params  # [] per tensor, refreshed every size_update_period steps
    scale_exp_avg_sq: optax.Params  # [] per tensor: second moment of the scale gradient
    scale_grads: optax.Params  # [size_update_period] per tensor: sum(p * grad) of recent steps
    model_norms: jax.Array  # [clipping_update_period] recent scaled gradient norms
    threshold: jax.Array  # [] clipping threshold (< 0: not set yet)


def scaled_adam(learning_rate, clipping_scale: float | None = 2.0, b1: float = 0.9,
                b2: float = 0.98, scalar_lr_scale: float = 0.1, eps: float = 1e-8,
                param_min_rms: float = 1e-5, param_max_rms: float = 3.0, scalar_max: float = 10.0,
                size_update_period: int = 4,
                clipping_update_period: int = 100) -> optax.GradientTransformation:
    """icefall's ScaledAdam (Povey): Adam whose step for each tensor is scaled by the tensor's
    RMS, plus a learned overall scale per tensor (updated every size_update_period steps,
    kept within [param_min_rms, param_max_rms]); tensors of one element get plain Adam at
    lr * scalar_lr_scale and are clamped to +-scalar_max. Gradients are clipped to
    clipping_scale x the median of the recent RMS-scaled gradient norms (the median is
    re-estimated at steps 10, 20, 40 with a doubled threshold, then every
    clipping_update_period steps). No bias correction on the momentum, as in icefall.
    `learning_rate` is a float or an optax schedule of the step."""
    lr_of = learning_rate if callable(learning_rate) else (lambda _: learning_rate)
    sup, period = size_update_period, clipping_update_period
    irregular = [i for i in (10, 20, 40) if i < period]

    def rms(p):
        return jnp.sqrt(jnp.mean(jnp.square(p.astype(jnp.float32))))

    def init(params):
        values = _unbox(params)
        zeros = lambda x: jnp.zeros_like(x, jnp.float32)
        return ScaledAdamState(
            step=jnp.zeros([], jnp.int32),
            delta=jax.tree.map(zeros, params), exp_avg_sq=jax.tree.map(zeros, params),
            param_rms=jax.tree.map(rms, values),
            scale_exp_avg_sq=jax.tree.map(lambda p: jnp.zeros([], jnp.float32), values),
            scale_grads=jax.tree.map(lambda p: jnp.zeros([sup], jnp.float32), values),
            model_norms=jnp.zeros([period], jnp.float32), threshold=-jnp.ones([], jnp.float32))

    def clipping(grads, state):
        """icefall's _get_clipping_scale: (factor <= 1, model_norms, threshold)."""
        step = state.step
        sumsq = sum(jnp.sum(jnp.square(g)) * scalar_lr_scale ** 2 if g.size == 1
                    else jnp.sum(jnp.square(g * r))
                    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(state.param_rms)))
        norm = jnp.sqrt(sumsq)
        norms = jnp.where(step > 0, state.model_norms.at[step % period].set(norm), state.model_norms)
        is_irregular = jnp.any(jnp.asarray([step == i for i in irregular] or [False]))
        # median of the last `step` norms (irregular steps) or of all `period` of them
        count = jnp.where(is_irregular, step, period)
        index = period - count + jnp.minimum(count - 1, (count // 4) * 2)
        median = jnp.sort(norms)[index]
        estimate = (step > 0) & ((step % period == 0) | is_irregular)
        threshold = jnp.where(estimate, clipping_scale * median * jnp.where(is_irregular, 2.0, 1.0),
                              state.threshold)
        factor = jnp.where((step > 0) & (threshold >= 0),
                           jnp.minimum(1.0, threshold / (norm + 1e-20)), 1.0)
        factor = jnp.where(jnp.isnan(factor), 0.0, factor)
        return factor, norms, threshold

    def update(grads, state, params=None):
        if params is None:
            raise ValueError("scaled_adam needs the parameters (tx.update(grads, state, params))")
        step, lr = state.step, lr_of(state.step)
        grads = jax.tree.map(lambda g: g.astype(jnp.float32), grads)
        norms, threshold = state.model_norms, state.threshold
        if clipping_scale:
            factor, norms, threshold = clipping(grads, state)
            grads = jax.tree.map(lambda g: jnp.where(factor == 0, 0.0, g * factor), grads)
        bc2 = 1.0 - b2 ** (step.astype(jnp.float32) + 1)

        def one(p, g, delta, eas, p_rms, s_eas, s_grads):
            p32 = p.astype(jnp.float32)
            delta = delta * b1
            eas = eas * b2 + (1 - b2) * jnp.square(g)
            if p.size == 1:  # icefall's _step_scalar
                denom = jnp.sqrt(eas / bc2) + eps
                delta = delta - lr * scalar_lr_scale * (1 - b1) * g / denom
                update = jnp.clip(p32, -scalar_max, scalar_max) - p32 + delta
                return update, delta, eas, p_rms, s_eas, s_grads
            s_grads = s_grads.at[step % sup].set(jnp.sum(p32 * g))
            refresh = step % sup == sup - 1
            p_rms = jnp.where(refresh, rms(p32), p_rms)
            # _size_update: learn the tensor's overall scale
            b2_corr = b2 ** sup
            new_s_eas = s_eas * b2_corr + (1 - b2_corr) * jnp.mean(jnp.square(s_grads))
            size_step = ((step + 1) // sup).astype(jnp.float32)
            s_bc2 = 1.0 - b2_corr ** size_step
            scale_step = (-lr * scalar_lr_scale * jnp.sqrt(s_bc2) * jnp.sum(s_grads)
                          / (jnp.sqrt(new_s_eas) + eps))
            scale_step = jnp.where(p_rms < param_min_rms, 0.0, scale_step)
            scale_step = jnp.minimum(scale_step, (param_max_rms - p_rms) / p_rms)
            resize = refresh & (step > 0)
            delta = delta + jnp.where(resize, (1 - b1) * scale_step, 0.0) * p32
            s_eas = jnp.where(resize, new_s_eas, s_eas)
            # _step: Adam scaled by the tensor's RMS
            denom = jnp.sqrt(jnp.where(bc2 < 0.99, eas / bc2, eas)) + eps
            delta = delta - lr * (1 - b1) * jnp.maximum(p_rms, param_min_rms) * g / denom
            return delta, delta, eas, p_rms, s_eas, s_grads

        values = _unbox(params)
        treedef = jax.tree.structure(values)
        leaves = [jax.tree.leaves(t) for t in (values, grads, state.delta, state.exp_avg_sq,
                                               state.param_rms, state.scale_exp_avg_sq,
                                               state.scale_grads)]
        out = list(zip(*(one(*args) for args in zip(*leaves))))
        tree = lambda i: jax.tree.unflatten(treedef, out[i])
        updates = jax.tree.map(lambda u, g: u.astype(g.dtype), tree(0), _unbox(grads))
        return updates, ScaledAdamState(step=step + 1, delta=tree(1), exp_avg_sq=tree(2),
                                        param_rms=tree(3), scale_exp_avg_sq=tree(4),
                                        scale_grads=tree(5), model_norms=norms,
                                        threshold=threshold)

    return optax.GradientTransformation(init, update)


def _unbox(tree):
    """Parameter values without flax's logical-axis boxes (the per-tensor statistics of
    ScaledAdam have other shapes than the tensors, so they carry no axis names)."""
    import flax.linen as nn

    return nn.meta.unbox(tree)


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
    elif name == "scaled_adam":
        opt = scaled_adam(lr, clipping_scale=cfg.get("clipping_scale", 2.0) or None, b1=b1, b2=b2,
                          **{k: cfg[k] for k in ("scalar_lr_scale", "param_min_rms", "param_max_rms",
                                                 "scalar_max", "size_update_period",
                                                 "clipping_update_period") if k in cfg})
    else:
        raise ConfigError(f"optimizer.name={name!r} is not one of adamw, lion, adafactor, "
                          "scaled_adam")
    parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm else []
    return optax.chain(*parts, opt), lr
