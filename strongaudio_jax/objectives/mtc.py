"""MTC: multi-label tag classification over a tag vocabulary (the study's main objective).

Frame (token) logits are pooled over real tokens only, then binary cross-entropy against
the multi-hot tag targets. Pooling logits rather than embeddings follows the study; mean
pooling is the default, attention pooling (a softmax over tokens per tag, PANNs-style) the
option. Label smoothing moves targets toward 1/2; pos_weight scales the positive term
(tags are sparse: ~10 of K per clip).

The reference study's head (AudenAI/Auden audio_tag, loss=bce) as options: `dropout=0.1`
on the tokens before the per-frame linear layer, and `reduction="sum"`: the BCE summed over
classes and (valid) examples, as torch's BCEWithLogitsLoss(reduction="sum"), rather than
averaged. `classifier_init="torch"` starts the classifier as torch's nn.Linear does (weights
and bias uniform in +-1/sqrt(width)) rather than at zero weights and bias -2: ScaledAdam scales
each tensor's step by its RMS, so a zero-initialised classifier would stay at ~zero there and
pass the encoder no gradient. A summed loss scales with batch and vocabulary size: ScaledAdam (train/optimizer.py),
the reference's optimizer, is insensitive to that scale; Adam-style optimizers mostly are too,
but gradient clipping by norm is not.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from strongaudio_jax.config import ConfigError
from strongaudio_jax.models.base import EncoderOutput, masked_mean
from strongaudio_jax.objectives import options

DEFAULTS = dict(pooling="mean", label_smoothing=0.0, pos_weight=1.0, dropout=0.0, reduction="mean",
                classifier_init="zeros")


class MTC(nn.Module):
    num_classes: int
    pooling: str = "mean"  # "mean" | "attention"
    label_smoothing: float = 0.0
    pos_weight: float = 1.0
    dropout: float = 0.0  # on the tokens before the classifier (training only)
    reduction: str = "mean"  # "mean" over classes and examples | "sum" over both
    classifier_init: str = "zeros"  # "zeros" (weights 0, bias -2) | "torch" (nn.Linear's)

    @nn.compact
    def logits(self, enc: EncoderOutput, train: bool = False) -> jax.Array:
        """Clip-level tag logits [B, K]."""
        tokens = enc.tokens
        if self.dropout and train:
            tokens = nn.Dropout(self.dropout, deterministic=False)(tokens)
        if self.classifier_init == "torch":  # kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in))
            width = tokens.shape[-1]
            kernel_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
            bias_init = lambda key, shape, dtype=jnp.float32: jax.random.uniform(
                key, shape, dtype, -width ** -0.5, width ** -0.5)
        else:
            kernel_init, bias_init = nn.initializers.zeros_init(), nn.initializers.constant(-2.0)
        frame = nn.Dense(self.num_classes, name="classifier",
                         kernel_init=nn.with_logical_partitioning(kernel_init, ("embed", "classes")),
                         bias_init=bias_init)(tokens)
        if self.pooling == "mean":
            return masked_mean(frame, enc.mask)
        scores = nn.Dense(self.num_classes, name="attention",
                          kernel_init=nn.with_logical_partitioning(
                              nn.initializers.zeros_init(), ("embed", "classes")))(tokens)
        scores = jnp.where(enc.mask[..., None], scores, -1e9)
        return (jax.nn.softmax(scores, axis=1) * frame).sum(1)

    def __call__(self, enc: EncoderOutput, batch: dict, train: bool) -> tuple[jax.Array, dict]:
        """BCE averaged (or summed: reduction) over classes and valid examples
        (batch['valid'] marks real rows)."""
        logits = self.logits(enc, train)
        targets = batch["tags"]
        smoothed = targets * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        # The same expression as optax.sigmoid_binary_cross_entropy when pos_weight == 1.
        per_class = (-(self.pos_weight * smoothed) * jax.nn.log_sigmoid(logits)
                     - (1.0 - smoothed) * jax.nn.log_sigmoid(-logits))
        valid = batch["valid"].astype(jnp.float32)
        n = jnp.maximum(valid.sum(), 1.0)
        mean = (per_class.mean(-1) * valid).sum() / n
        loss = (per_class.sum(-1) * valid).sum() if self.reduction == "sum" else mean
        hits = (((logits > 0) == (targets > 0.5)).all(-1) * valid).sum() / n
        return loss, {"bce": mean, "exact_match": hits}


def build(cfg, ctx) -> MTC:
    opts = options(cfg, DEFAULTS, "mtc")
    if opts["pooling"] not in ("mean", "attention"):
        raise ConfigError(f"objectives.mtc.pooling={opts['pooling']!r}: use 'mean' or 'attention'")
    if opts["classifier_init"] not in ("zeros", "torch"):
        raise ConfigError(f"objectives.mtc.classifier_init={opts['classifier_init']!r}: use 'zeros' "
                          "or 'torch'")
    if opts["reduction"] not in ("mean", "sum"):
        raise ConfigError(f"objectives.mtc.reduction={opts['reduction']!r}: use 'mean' or 'sum'")
    if not 0.0 <= opts["dropout"] < 1.0:
        raise ConfigError(f"objectives.mtc.dropout={opts['dropout']} must be within [0, 1)")
    return MTC(num_classes=ctx.num_classes, **opts)
