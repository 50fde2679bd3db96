"""MTC: multi-label tag classification over a tag vocabulary (the study's main objective).

Frame (token) logits are pooled over real tokens only, then binary cross-entropy against
the multi-hot tag targets. Pooling logits rather than embeddings follows the study; mean
pooling is the default, attention pooling (a softmax over tokens per tag, PANNs-style) the
option. Label smoothing moves targets toward 1/2; pos_weight scales the positive term
(tags are sparse: ~10 of K per clip).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from strongaudio_jax.config import ConfigError
from strongaudio_jax.models.base import EncoderOutput, masked_mean
from strongaudio_jax.objectives import options

DEFAULTS = dict(pooling="mean", label_smoothing=0.0, pos_weight=1.0)


class MTC(nn.Module):
    num_classes: int
    pooling: str = "mean"  # "mean" | "attention"
    label_smoothing: float = 0.0
    pos_weight: float = 1.0

    @nn.compact
    def logits(self, enc: EncoderOutput) -> jax.Array:
        """Clip-level tag logits [B, K]."""
        frame = nn.Dense(self.num_classes, name="classifier",
                         kernel_init=nn.with_logical_partitioning(
                             nn.initializers.zeros_init(), ("embed", "classes")),
                         bias_init=nn.initializers.constant(-2.0))(enc.tokens)
        if self.pooling == "mean":
            return masked_mean(frame, enc.mask)
        scores = nn.Dense(self.num_classes, name="attention",
                          kernel_init=nn.with_logical_partitioning(
                              nn.initializers.zeros_init(), ("embed", "classes")))(enc.tokens)
        scores = jnp.where(enc.mask[..., None], scores, -1e9)
        return (jax.nn.softmax(scores, axis=1) * frame).sum(1)

    def __call__(self, enc: EncoderOutput, batch: dict, train: bool) -> tuple[jax.Array, dict]:
        """BCE averaged over classes and valid examples (batch['valid'] marks real rows)."""
        logits = self.logits(enc)
        targets = batch["tags"]
        smoothed = targets * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        # The same expression as optax.sigmoid_binary_cross_entropy when pos_weight == 1.
        per_example = (-(self.pos_weight * smoothed) * jax.nn.log_sigmoid(logits)
                       - (1.0 - smoothed) * jax.nn.log_sigmoid(-logits)).mean(-1)
        valid = batch["valid"].astype(jnp.float32)
        n = jnp.maximum(valid.sum(), 1.0)
        loss = (per_example * valid).sum() / n
        hits = (((logits > 0) == (targets > 0.5)).all(-1) * valid).sum() / n
        return loss, {"bce": loss, "exact_match": hits}


def build(cfg, ctx) -> MTC:
    opts = options(cfg, DEFAULTS, "mtc")
    if opts["pooling"] not in ("mean", "attention"):
        raise ConfigError(f"objectives.mtc.pooling={opts['pooling']!r}: use 'mean' or 'attention'")
    return MTC(num_classes=ctx.num_classes, **opts)
