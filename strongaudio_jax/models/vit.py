"""Patch transformer (ViT family) over log-mel spectrograms.

Input: features [B, frames, mels] and a frame mask. Patches tile time x frequency
(AST-style 16x16, or Dasheng-style full-band time patches with patch_freq == mels).
Time and frequency positions have separate embeddings so a clip shorter than the
configured maximum just uses the first time positions; padding patches are masked in
attention and excluded from every pooling downstream (the returned `mask`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from strongaudio_jax.config import ConfigError

SIZES = {  # width, depth, heads, mlp
    "mu": (64, 2, 2, 256),
    "xs": (128, 4, 4, 512),
    "ti": (192, 12, 3, 768),
    "s": (384, 12, 6, 1536),
    "b": (768, 12, 12, 3072),
    "l": (1024, 24, 16, 4096),
}


@flax.struct.dataclass
class EncoderOutput:
    tokens: jax.Array  # [B, N, D]
    mask: jax.Array  # [B, N] bool, True for real (non-padding) patches
    grid: tuple[int, int] = flax.struct.field(pytree_node=False)  # (time, freq) patches


def _dense(features, logical, name, dtype):
    return nn.Dense(features, name=name, dtype=dtype,
                    kernel_init=nn.with_logical_partitioning(nn.initializers.xavier_uniform(), logical))


class Block(nn.Module):
    width: int
    heads: int
    mlp: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask):
        y = nn.LayerNorm(dtype=self.dtype, name="ln_attn")(x)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.heads, dtype=self.dtype, name="attn",
            kernel_init=nn.with_logical_partitioning(nn.initializers.xavier_uniform(),
                                                     ("embed", "heads", "kv")),
            out_kernel_init=nn.with_logical_partitioning(nn.initializers.xavier_uniform(),
                                                         ("heads", "kv", "embed")),
        )(y, y, mask=nn.make_attention_mask(mask, mask))
        x = x + y
        y = nn.LayerNorm(dtype=self.dtype, name="ln_mlp")(x)
        y = _dense(self.mlp, ("embed", "mlp"), "mlp_in", self.dtype)(y)
        y = nn.gelu(y)
        y = _dense(self.width, ("mlp", "embed"), "mlp_out", self.dtype)(y)
        return x + y


class ViT(nn.Module):
    size: str = "mu"
    patch_time: int = 16
    patch_freq: int = 16
    max_frames: int = 1024
    num_mels: int = 64
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, feats: jax.Array, frame_mask: jax.Array, train: bool = False) -> EncoderOutput:
        width, depth, heads, mlp = SIZES[self.size]
        b, t, f = feats.shape
        if f != self.num_mels or f % self.patch_freq:
            raise ValueError(f"ViT expects {self.num_mels} mel bins divisible by patch_freq="
                             f"{self.patch_freq}, got features of shape {feats.shape}")
        t = t - t % self.patch_time  # drop a partial last patch
        if t // self.patch_time > self.max_frames // self.patch_time:
            raise ValueError(f"clip has {t} frames, more than max_frames={self.max_frames}")
        nt, nf = t // self.patch_time, f // self.patch_freq
        x = feats[:, :t].reshape(b, nt, self.patch_time, nf, self.patch_freq)
        x = x.transpose(0, 1, 3, 2, 4).reshape(b, nt, nf, self.patch_time * self.patch_freq)
        x = _dense(width, ("patch", "embed"), "patch_embed", self.dtype)(x.astype(self.dtype))
        pos_t = self.param("pos_time", nn.with_logical_partitioning(
            nn.initializers.normal(0.02), ("length", "embed")), (self.max_frames // self.patch_time, width))
        pos_f = self.param("pos_freq", nn.with_logical_partitioning(
            nn.initializers.normal(0.02), ("freq", "embed")), (nf, width))
        x = x + pos_t[None, :nt, None].astype(self.dtype) + pos_f[None, None].astype(self.dtype)
        x = x.reshape(b, nt * nf, width)
        # A patch is real when all its frames are real: no padding leaks into its embedding.
        patch_mask = frame_mask[:, :t].reshape(b, nt, self.patch_time).all(-1)
        mask = jnp.repeat(patch_mask, nf, axis=1)
        for i in range(depth):
            x = Block(width, heads, mlp, self.dtype, name=f"block{i}")(x, mask)
        x = nn.LayerNorm(dtype=self.dtype, name="ln_out")(x)
        return EncoderOutput(tokens=x.astype(jnp.float32), mask=mask, grid=(nt, nf))


def masked_mean(tokens: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean over real tokens only; a clip with no real token gives zeros, not NaN."""
    m = mask.astype(tokens.dtype)[..., None]
    return (tokens * m).sum(-2) / jnp.maximum(m.sum(-2), 1.0)


def build(cfg) -> ViT:
    """Model factory: the config's `model` block holds ViT's fields."""
    fields = {f.name for f in dataclasses.fields(ViT)} - {"parent", "name"}
    unknown = set(cfg) - fields
    if unknown:
        raise ConfigError(f"model.{sorted(unknown)[0]} is not a ViT option; known: {sorted(fields)}")
    if cfg.get("size", "mu") not in SIZES:
        raise ConfigError(f"model.size={cfg['size']!r} is not one of {sorted(SIZES)}")
    try:
        dtype = jnp.dtype(cfg.get("dtype", "float32"))
    except TypeError as e:
        raise ConfigError(f"model.dtype={cfg['dtype']!r}: {e}") from None
    return ViT(**{**cfg, "dtype": dtype})
