"""Transformer text decoder over the audio encoder's tokens, shared by PAR and captioning.

Pre-LN blocks of self-attention, cross-attention to the encoder tokens (padding patches
masked) and an MLP; learned token and position embeddings. One module serves both
decoding modes, chosen per example: autoregressive (causal self-attention over the
teacher-forced previous tokens) and parallel (CapPa: every input is the mask token and
self-attention is unrestricted, so the whole sequence is predicted at once).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from strongaudio_jax.models.base import ACT, EncoderOutput
from strongaudio_jax.parallel.mesh import constrain

SIZES = {  # width, depth, heads, mlp
    "mu": (64, 1, 2, 256),
    "xs": (128, 2, 4, 512),
    "s": (384, 4, 6, 1536),
    "b": (768, 6, 12, 3072),
}


def _init(logical):
    return nn.with_logical_partitioning(nn.initializers.xavier_uniform(), logical)


class DecoderBlock(nn.Module):
    width: int
    heads: int
    mlp: int

    @nn.compact
    def __call__(self, x, self_mask, enc_tokens, cross_mask):
        def attention(name):
            return nn.MultiHeadDotProductAttention(
                num_heads=self.heads, name=name, kernel_init=_init(("embed", "heads", "kv")),
                out_kernel_init=_init(("heads", "kv", "embed")))

        # The residual stream keeps the encoder's layout (batch over the data axes), as in
        # models/vit.py; without these pins XLA re-shards it to the weights' layout.
        y = nn.LayerNorm(name="ln_self")(x)
        x = constrain(x + attention("self_attn")(y, y, mask=self_mask), ACT)
        y = nn.LayerNorm(name="ln_cross")(x)
        x = constrain(x + attention("cross_attn")(y, enc_tokens, mask=cross_mask), ACT)
        y = nn.LayerNorm(name="ln_mlp")(x)
        y = nn.Dense(self.mlp, name="mlp_in", kernel_init=_init(("embed", "mlp")))(y)
        y = constrain(nn.gelu(y), ("batch", "length", "mlp"))
        y = nn.Dense(self.width, name="mlp_out", kernel_init=_init(("mlp", "embed")))(y)
        return constrain(x + y, ACT)


class Decoder(nn.Module):
    vocab_size: int
    max_len: int
    size: str = "xs"

    @nn.compact
    def __call__(self, inputs: jax.Array, parallel: jax.Array, enc: EncoderOutput) -> jax.Array:
        """Logits [B, L, V] for input ids [B, L]; `parallel` [B] bool picks each row's mode
        (True: full self-attention, else causal)."""
        width, depth, heads, mlp = SIZES[self.size]
        b, length = inputs.shape
        embed = nn.Embed(self.vocab_size, width, name="embed", embedding_init=nn.with_logical_partitioning(
            nn.initializers.normal(0.02), ("vocab", "embed")))
        pos = self.param("pos", nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                             ("length", "embed")), (self.max_len, width))
        # The table is gathered whole along 'embed' before the lookup (as FSDP does for every
        # weight at use): a lookup in a table split along 'embed' would leave the tokens split
        # that way, and XLA can only re-shard them to the batch layout by replicating them.
        table = constrain(embed.embedding, ("vocab", None))
        x = constrain(jnp.take(table, inputs, axis=0) + pos[None, :length], ACT)
        causal = jnp.tril(jnp.ones((length, length), bool))
        self_mask = (causal[None] | parallel[:, None, None])[:, None]  # [B, 1, L, L]
        cross_mask = jnp.broadcast_to(enc.mask[:, None, None, :], (b, 1, length, enc.mask.shape[1]))
        for i in range(depth):
            x = DecoderBlock(width, heads, mlp, name=f"block{i}")(x, self_mask, enc.tokens, cross_mask)
        x = nn.LayerNorm(name="ln_out")(x)
        logits = nn.Dense(self.vocab_size, name="logits", kernel_init=_init(("embed", "vocab")))(x)
        return constrain(logits, ("batch", "length", "vocab"))


def teacher_forcing(ids: jax.Array, mask: jax.Array, mask_id: int, parallel: jax.Array):
    """(inputs, targets, target weights) for token rows [CLS] pieces [SEP] [PAD]...:
    targets are the rows shifted left (the decoder predicts everything after [CLS]);
    inputs are the previous tokens (autoregressive rows) or all mask tokens (parallel rows)."""
    targets, weights = ids[:, 1:], mask[:, 1:]
    inputs = jnp.where(parallel[:, None], mask_id, ids[:, :-1])
    return inputs, targets, weights
