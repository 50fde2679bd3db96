"""BERT-style text encoder in Flax (post-LN, as BERT and MiniLM), with sentence pooling.

Token + position embeddings -> LayerNorm -> `depth` blocks of [self-attention -> add ->
LayerNorm -> MLP (exact GELU) -> add -> LayerNorm]. Padding is masked as keys in attention
and excluded from pooling, so padding a text further never changes its embedding.
`sentence_embedding` is sentence-transformers' mean pooling (+ L2 normalisation).
Parameters carry logical axis names ('vocab', 'embed', 'heads', 'kv', 'mlp') and shard by
the same rules table as the audio encoder. No dropout: contrastive and captioning text
towers (CLIP, SigLIP) train without it, and it keeps the step deterministic.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from strongaudio_jax.config import ConfigError

SIZES = {  # width, depth, heads, mlp
    "tiny": (128, 2, 2, 512),
    "mini": (256, 4, 4, 1024),
    "minilm": (384, 6, 12, 1536),  # all-MiniLM-L6-v2's shape
    "base": (768, 12, 12, 3072),  # BERT-base's shape
}
LN_EPS = 1e-12  # BERT's LayerNorm epsilon (matters for parity with MiniLM's weights)


def _init(logical, std=0.02):
    return nn.with_logical_partitioning(nn.initializers.normal(std), logical)


class TextBlock(nn.Module):
    width: int
    heads: int
    mlp: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask):
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.heads, dtype=self.dtype, name="attn",
            kernel_init=_init(("embed", "heads", "kv")),
            out_kernel_init=_init(("heads", "kv", "embed")),
        )(x, x, mask=mask[:, None, None, :])  # padding masked as keys only, as BERT does
        x = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name="ln_attn")(x + y)
        y = nn.Dense(self.mlp, dtype=self.dtype, name="mlp_in", kernel_init=_init(("embed", "mlp")))(x)
        y = nn.gelu(y, approximate=False)
        y = nn.Dense(self.width, dtype=self.dtype, name="mlp_out", kernel_init=_init(("mlp", "embed")))(y)
        return nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name="ln_mlp")(x + y)


class TextEncoder(nn.Module):
    """ids int32 [B, L], mask bool [B, L] -> token states float32 [B, L, width]."""

    vocab_size: int
    size: str = "tiny"
    max_len: int = 512
    dtype: Any = jnp.float32

    @property
    def width(self) -> int:
        return SIZES[self.size][0]

    @nn.compact
    def __call__(self, ids: jax.Array, mask: jax.Array, train: bool = False) -> jax.Array:
        width, depth, heads, mlp = SIZES[self.size]
        if ids.shape[-1] > self.max_len:
            raise ValueError(f"text of {ids.shape[-1]} tokens is longer than the encoder's "
                             f"max_len={self.max_len}; tokenise with a smaller max_len")
        tok = self.param("token_embed", _init(("vocab", "embed")), (self.vocab_size, width))
        pos = self.param("pos_embed", _init(("length", "embed")), (self.max_len, width))
        x = jnp.take(tok, ids, axis=0) + pos[None, :ids.shape[-1]]
        x = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name="ln_embed")(x.astype(self.dtype))
        for i in range(depth):
            x = TextBlock(width, heads, mlp, self.dtype, name=f"block{i}")(x, mask)
        return x.astype(jnp.float32)


def sentence_embedding(tokens: jax.Array, mask: jax.Array, normalize: bool = True) -> jax.Array:
    """Mean of the real tokens' states (sentence-transformers' pooling), optionally L2-normed."""
    m = mask.astype(tokens.dtype)[..., None]
    emb = (tokens * m).sum(-2) / jnp.maximum(m.sum(-2), 1e-9)
    return l2_normalize(emb) if normalize else emb


def l2_normalize(x: jax.Array) -> jax.Array:
    """x / max(|x|, 1e-12) along the last axis, with a finite gradient at x = 0 (where
    the norm's own gradient is 0/0): an all-padding row must not poison the batch."""
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-24))


def build(cfg, vocab_size: int) -> TextEncoder:
    """From a config block with `size`, `max_len`, optional `dtype`."""
    fields = {f.name for f in dataclasses.fields(TextEncoder)} - {"parent", "name", "vocab_size"}
    unknown = set(cfg) - fields
    if unknown:
        raise ConfigError(f"text encoder option {sorted(unknown)[0]!r} is unknown; known: {sorted(fields)}")
    if cfg.get("size", "tiny") not in SIZES:
        raise ConfigError(f"text encoder size {cfg['size']!r} is not one of {sorted(SIZES)}")
    return TextEncoder(vocab_size=vocab_size, **{**cfg, "dtype": jnp.dtype(cfg.get("dtype", "float32"))})
