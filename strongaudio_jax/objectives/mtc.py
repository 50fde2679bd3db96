"""MTC: multi-label tag classification over a tag vocabulary (the study's main objective).

Frame (token) logits are mean-pooled over real tokens only, then binary cross-entropy
against the multi-hot tag targets. Pooling logits rather than embeddings follows the study.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from strongaudio_jax.models.vit import EncoderOutput, masked_mean


class Head(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, enc: EncoderOutput) -> jax.Array:
        logits = nn.Dense(self.num_classes, name="classifier",
                          kernel_init=nn.with_logical_partitioning(
                              nn.initializers.zeros_init(), ("embed", "classes")),
                          bias_init=nn.initializers.constant(-2.0))(enc.tokens)
        return masked_mean(logits, enc.mask)


def loss_and_metrics(logits: jax.Array, batch: dict) -> tuple[jax.Array, dict]:
    """BCE averaged over classes and valid examples (batch['valid'] marks real rows)."""
    targets = batch["tags"]
    valid = batch["valid"].astype(jnp.float32)
    per_example = optax.sigmoid_binary_cross_entropy(logits, targets).mean(-1)
    n = jnp.maximum(valid.sum(), 1.0)
    loss = (per_example * valid).sum() / n
    pred = logits > 0
    hits = ((pred == (targets > 0.5)).all(-1) * valid).sum() / n
    return loss, {"mtc_bce": loss, "mtc_exact_match": hits}


def build(cfg, num_classes: int) -> Head:
    return Head(num_classes=num_classes)
