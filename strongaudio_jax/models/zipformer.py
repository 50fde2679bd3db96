"""Zipformer-style encoder: Conformer blocks in stacks that run at different frame rates.

After Zipformer (Yao et al., ICLR 2024), as the reference study's Zipformer-M, kept legible:
- Convolutional subsampling: log-mel frames (100 Hz) -> 50 Hz, frequency folded into channels.
- Six stacks of Conformer-style layers (FF/2, self-attention with rotary positions,
  convolution module, FF/2, LayerNorm). Stack i runs at 50 Hz / downsampling[i] (learned
  softmax-weighted average of adjacent frames), then is repeated back to 50 Hz and mixed into
  its input through a learned per-channel bypass scale, as Zipformer's bypass does.
- Stacks have different widths: the residual stream is max(dims) wide and stack i reads and
  updates its first dims[i] channels (Zipformer's channel truncation / full-dim output).
- Output: a final 2x downsampling to 25 Hz, as Zipformer's output stage.
Simplifications: LayerNorm instead of BiasNorm, Swish instead of SwooshL/R, one attention and
one convolution module per layer, rotary instead of Zipformer's relative position encoding.

Padding is exact: padded frames are zeroed before every convolution and excluded from every
average, so a padded clip's real tokens equal those of the unpadded clip.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from strongaudio_jax.config import ConfigError
from strongaudio_jax.models.base import (ACT, ATTENTION, REMAT, EncoderOutput, SelfAttention,
                                         check_choice, compute_dtype, dense)
from strongaudio_jax.parallel.mesh import constrain

# Zipformer's published stack layouts (icefall); our simpler block gets wider feed-forward
# layers so the parameter counts match (s: 23M, m: 65M like the study's Zipformer-M).
SIZES = {
    "tiny": dict(layers=(1, 1), downsampling=(1, 2), dims=(32, 48), heads=(2, 2), ff=(64, 96),
                 kernels=(5, 3)),  # for tests
    "s": dict(layers=(2, 2, 2, 2, 2, 2), downsampling=(1, 2, 4, 8, 4, 2),
              dims=(192, 256, 256, 256, 256, 256), heads=(4, 4, 4, 8, 4, 4),
              ff=(1024, 1536, 1536, 1536, 1536, 1536), kernels=(31, 31, 15, 15, 15, 31)),
    "m": dict(layers=(2, 2, 3, 4, 3, 2), downsampling=(1, 2, 4, 8, 4, 2),
              dims=(192, 256, 384, 512, 384, 256), heads=(4, 4, 4, 8, 4, 4),
              ff=(1024, 1536, 2048, 2560, 2048, 1536), kernels=(31, 31, 15, 15, 15, 31)),
}


def downsample(x: jax.Array, mask: jax.Array, factor: int, logits: jax.Array):
    """Weighted average of each `factor` adjacent real frames (weights softmax(logits));
    a group is real when any of its frames is."""
    if factor == 1:
        return x, mask
    b, t, d = x.shape
    pad = -t % factor
    x = jnp.pad(x, ((0, 0), (0, pad), (0, 0))).reshape(b, -1, factor, d)
    m = jnp.pad(mask, ((0, 0), (0, pad))).reshape(b, -1, factor)
    w = jax.nn.softmax(logits.astype(jnp.float32))[None, None] * m  # [B, T/f, f]
    y = (x * w[..., None].astype(x.dtype)).sum(2) / jnp.maximum(w.sum(-1), 1e-9)[..., None].astype(x.dtype)
    return y, m.any(-1)


def depthwise_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Per-channel convolution over time with zero 'same' padding: x [B, T, D], kernel [K, D]
    (K odd). Written as K shifted products: XLA's SPMD partitioner mis-scales the kernel
    gradient of a grouped convolution on a (data, fsdp, tensor) mesh (x2 seen on 2x2x2)."""
    k, t = kernel.shape[0], x.shape[1]
    xp = jnp.pad(x, ((0, 0), (k // 2, k // 2), (0, 0)))
    return sum(xp[:, i:i + t] * kernel[i] for i in range(k))


class FeedForward(nn.Module):
    hidden: int
    dtype: Any

    @nn.compact
    def __call__(self, x):
        y = dense(self.hidden, ("embed", "mlp"), "ff_in", self.dtype)(x)
        y = constrain(nn.swish(y), ("batch", "length", "mlp"))
        return dense(x.shape[-1], ("mlp", "embed"), "ff_out", self.dtype)(y)


class ConvModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv over time, LayerNorm, Swish, pointwise conv."""

    kernel: int
    dtype: Any

    @nn.compact
    def __call__(self, x, mask):
        d = x.shape[-1]
        y = nn.glu(dense(2 * d, ("embed", None), "pointwise_in", self.dtype)(x))
        y = y * mask[..., None].astype(y.dtype)  # padding must not reach real frames
        kernel = self.param("depthwise", nn.with_logical_partitioning(
            nn.initializers.normal(self.kernel ** -0.5), ("conv", "embed")), (self.kernel, d))
        y = depthwise_conv(y, kernel.astype(y.dtype))
        y = nn.swish(nn.LayerNorm(dtype=self.dtype, name="ln")(y))
        return dense(d, (None, "embed"), "pointwise_out", self.dtype)(y)


class ConformerLayer(nn.Module):
    heads: int
    ff: int
    kernel: int
    dtype: Any = jnp.float32
    attention: str = "xla"

    @nn.compact
    def __call__(self, x, mask):
        ln = lambda name: nn.LayerNorm(dtype=self.dtype, name=name)
        x = x + 0.5 * FeedForward(self.ff, self.dtype, name="ff1")(ln("ln_ff1")(x))
        x = x + SelfAttention(self.heads, self.dtype, self.attention, rotary=True,
                              name="attn")(ln("ln_attn")(x), mask)
        x = x + ConvModule(self.kernel, self.dtype, name="conv")(ln("ln_conv")(x), mask)
        x = x + 0.5 * FeedForward(self.ff, self.dtype, name="ff2")(ln("ln_ff2")(x))
        return constrain(ln("ln_out")(x), ACT)


class Stack(nn.Module):
    """Layers at 1/factor of the input rate on the first `dim` channels, with bypass."""

    dim: int
    layers: int
    heads: int
    ff: int
    kernel: int
    factor: int
    dtype: Any = jnp.float32
    attention: str = "xla"
    remat: str = "none"

    @nn.compact
    def __call__(self, x, mask):
        src = x[..., :self.dim]
        logits = self.param("downsample_logits", nn.initializers.zeros, (self.factor,))
        y, m = downsample(src, mask, self.factor, logits)
        layer = ConformerLayer if self.remat == "none" else nn.remat(ConformerLayer,
                                                                      policy=REMAT[self.remat])
        for i in range(self.layers):
            y = layer(self.heads, self.ff, self.kernel, self.dtype, self.attention,
                      name=f"layer{i}")(y, m)
        y = jnp.repeat(y, self.factor, axis=1)[:, :x.shape[1]]  # back to the input rate
        scale = self.param("bypass_scale", nn.with_logical_partitioning(
            nn.initializers.constant(0.5), ("embed",)), (self.dim,))
        out = src + (y - src) * scale.astype(y.dtype)
        return constrain(jnp.concatenate([out, x[..., self.dim:]], -1), ACT)


class Zipformer(nn.Module):
    size: str = "m"
    num_mels: int = 80
    dtype: Any = jnp.float32
    attention: str = "xla"  # see models.base.attention
    remat: str = "none"  # per layer: "full", "dots", "dots_no_batch"

    @nn.compact
    def __call__(self, feats: jax.Array, frame_mask: jax.Array, train: bool = False) -> EncoderOutput:
        s = SIZES[self.size]
        if feats.shape[-1] != self.num_mels:
            raise ValueError(f"Zipformer expects {self.num_mels} mel bins, got features of "
                             f"shape {feats.shape}")
        width = max(s["dims"])
        mask = frame_mask

        # Convolutional subsampling to 50 Hz (time stride 2, frequency stride 4).
        def conv(x, features, strides, name):
            x = nn.Conv(features, (3, 3), strides, padding=((1, 1), (1, 1)), dtype=self.dtype,
                        name=name)(x)
            return nn.swish(x)

        x = (feats * mask[..., None])[..., None].astype(self.dtype)  # [B, T, F, 1]
        x = conv(x, 8, (1, 1), "embed_conv0") * mask[:, :, None, None]
        x = conv(x, 32, (2, 2), "embed_conv1")
        mask = mask[:, ::2]
        x = conv(x * mask[:, :, None, None], 128, (1, 2), "embed_conv2")
        b, t = x.shape[:2]
        x = dense(width, (None, "embed"), "embed_out", self.dtype)(x.reshape(b, t, -1))
        x = nn.LayerNorm(dtype=self.dtype, name="embed_ln")(x) * mask[..., None].astype(self.dtype)
        x = constrain(x, ACT)

        for i in range(len(s["layers"])):
            x = Stack(s["dims"][i], s["layers"][i], s["heads"][i], s["ff"][i], s["kernels"][i],
                      s["downsampling"][i], self.dtype, self.attention, self.remat,
                      name=f"stack{i}")(x, mask)

        # Output at 25 Hz.
        x, mask = downsample(x, mask, 2, self.param("out_downsample_logits", nn.initializers.zeros, (2,)))
        x = nn.LayerNorm(dtype=self.dtype, name="ln_out")(x)
        return EncoderOutput(tokens=x.astype(jnp.float32), mask=mask, grid=(x.shape[1], 1))


def build(cfg) -> Zipformer:
    """Model factory: the config's `model` block holds Zipformer's fields."""
    fields = {f.name for f in dataclasses.fields(Zipformer)} - {"parent", "name"}
    unknown = set(cfg) - fields
    if unknown:
        raise ConfigError(f"model.{sorted(unknown)[0]} is not a Zipformer option; "
                          f"known: {sorted(fields)}")
    check_choice("size", cfg.get("size", "m"), SIZES)
    check_choice("attention", cfg.get("attention", "xla"), ATTENTION)
    check_choice("remat", cfg.get("remat", "none"), REMAT)
    return Zipformer(**{**cfg, "dtype": compute_dtype(cfg.get("dtype", "float32"))})
